"""The restore's object comparison (pure): what the backup's catalogs listed must all be in the restored copy."""

from __future__ import annotations

from drkit.postgres.inventory import LIMIT, compare

SOURCE = {"format": 1, "policies": [{"table": "public.orders", "name": "own", "command": "SELECT", "roles": "{app}"},
                                    {"table": "auth.users", "name": "self", "command": "ALL", "roles": "{public}"}],
          "rls_tables": ["public.orders", "auth.users"], "triggers": ["public.orders.touch"],
          "publication_members": ["supabase_realtime: public.orders"],
          "counts": {"policies": 2, "rls_tables": 2, "triggers": 1, "publication_members": 1}}


def test_identical_objects_pass_with_their_numbers() -> None:
    outcomes = {o.name: o for o in compare(SOURCE, SOURCE)}
    assert all(o.passed for o in outcomes.values())
    assert outcomes["policies"].detail == "2 identical" and outcomes["triggers"].value == "1"


def test_a_lost_policy_or_trigger_fails_and_is_named() -> None:
    restored = dict(SOURCE, policies=SOURCE["policies"][:1], triggers=[], rls_tables=["public.orders"])
    outcomes = {o.name: o for o in compare(SOURCE, restored)}
    assert not outcomes["policies"].passed
    assert outcomes["policies"].detail == "1 of 2 missing after the restore: auth.users: self"
    assert not outcomes["triggers"].passed and not outcomes["row-level security"].passed
    assert outcomes["publication members"].passed
    extra = dict(SOURCE, triggers=["public.orders.touch", "public.orders.new_one"])
    assert all(o.passed for o in compare(SOURCE, extra))  # objects added on staging are not a loss


def test_capped_lists_say_so_and_old_manifests_compare_nothing() -> None:
    big = dict(SOURCE, counts=dict(SOURCE["counts"], triggers=LIMIT + 10))
    outcome = {o.name: o for o in compare(big, SOURCE)}["triggers"]
    assert outcome.passed and f"compared the first {LIMIT} of {LIMIT + 10}" in outcome.detail
    assert compare({"format": 1}, SOURCE) == []  # a kind the manifest does not list is not compared
