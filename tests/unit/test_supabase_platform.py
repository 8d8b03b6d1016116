"""Supabase's platform tables (pure): every table today's migrations create is classified, placement checks
privileges before anything starts, copies are disarmed, and known restore failures say what to do next."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from drkit.core.errors import ConfigError
from drkit.postgres import disarm, hints, platform
from drkit.postgres.placement import SUBSCRIPTION, USER_MAPPING, Entry, Placement

SHAPE = Path(__file__).resolve().parents[2] / "lib" / "drkit_dev" / "data" / "supabase" / "platform-shape.json"


def shape() -> dict[str, Any]:
    return dict(json.loads(SHAPE.read_text()))


def unclassified(tables: list[str]) -> list[str]:
    return [t for t in tables if platform.classify(t) is None]


def test_every_table_of_todays_platform_migrations_is_user_data_or_skipped_by_name() -> None:
    """The fixture's shape comes from the newest supabase/auth and supabase/storage migrations
    (PROVENANCE.md): a table the platform adds must be classified here before a restore meets it."""
    data = shape()
    tables = [f"{schema}.{name}" for schema, found in data["schemas"].items() for name in found]
    assert len(tables) >= 30 and {"storage.buckets_vectors", "auth.webauthn_credentials"} <= set(tables)
    assert unclassified(tables) == [], ("platform tables drkit does not classify: add each to "
                                        "lib/drkit/postgres/platform.py USER_DATA or PLATFORM_DATA with its reason")
    # the check is real: a table the next release might add is caught
    assert unclassified([*tables, "storage.buckets_graph", "auth.passkey_attestations"]) == [
        "storage.buckets_graph", "auth.passkey_attestations"]


def test_the_user_data_list_names_only_tables_upstream_has() -> None:
    """A declared user-data table that upstream dropped or renamed is a stale entry (its rows would be looked for)."""
    data = shape()
    tables = {f"{schema}.{name}" for schema, found in data["schemas"].items() for name in found}
    assert set(platform.USER_DATA) - tables == set()


def test_the_platform_schemas_mirror_the_supabase_clis_dump_exclusions() -> None:
    for schema in ("auth", "storage", "realtime", "vault", "cron", "net", "pgmq", "supabase_functions",
                   "supabase_migrations", "graphql", "pgsodium", "extensions", "_realtime", "_analytics"):
        assert platform.is_platform_schema(schema), schema
    assert platform.is_platform_schema("_timescaledb_internal") and not platform.is_platform_schema("public")
    assert not platform.is_platform_schema("auth", present={"storage"})


def test_reasons_say_why_each_known_trap_is_skipped() -> None:
    assert "duplicate keys" in platform.skip_reason("auth.schema_migrations")  # type: ignore[operator]
    assert "duplicate keys" in platform.skip_reason("storage.migrations")  # type: ignore[operator]
    assert "permission denied" in platform.skip_reason("storage.buckets_vectors")  # type: ignore[operator]
    assert "root key" in platform.skip_reason("vault.secrets")  # type: ignore[operator]
    assert "root key" in platform.skip_reason("pgsodium.key")  # type: ignore[operator]
    assert "cron.schedule()" in platform.skip_reason("cron.job")  # type: ignore[operator]
    assert "webhook" in platform.skip_reason("net.http_request_queue")  # type: ignore[operator]
    assert platform.skip_reason("realtime.messages_2026_12_08") == platform.PLATFORM_DATA["realtime.*"]
    assert platform.skip_reason("auth.users") is None and platform.skip_reason("storage.objects") is None
    assert platform.skip_reason("storage.brand_new") == platform.UNKNOWN


SOURCE: dict[str, Any] = {"supabase": True, "extensions": [], "roles": [], "counts": {"cron_jobs": 2},
                          "foreign_servers": [{"name": "stripe_server", "wrapper": "stripe_wrapper",
                                               "extension": "wrappers"}],
                          "replication_slots": ["etl_slot (logical, pgoutput)"], "subscriptions": ["from_legacy"]}
TABLES = ("auth.users", "auth.identities", "auth.schema_migrations", "storage.objects", "storage.buckets_vectors",
          "storage.brand_new", "public.todos", "cron.job")


def project(**over: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "available_extensions": {"wrappers"}, "installed_extensions": {"wrappers"}, "roles": {"postgres"},
        "schemas": {"public", "auth", "storage", "cron"}, "triggers": set(), "policies": set(), "functions": set(),
        "rls_tables": set(), "event_triggers": set(), "publications": set(), "superuser": False, "createrole": True,
        "user": "postgres", "supabase": True, "default_acls": [],
        "tables": {"auth|users", "auth|identities", "auth|schema_migrations", "storage|objects",
                   "storage|buckets_vectors", "storage|brand_new", "cron|job"},
        "writable": {"auth|users", "auth|identities", "storage|objects"}, "writable_sequences": set()}
    return base | over


def test_a_project_takes_declared_user_data_and_skips_every_other_platform_table_by_name() -> None:
    p = Placement("supabase", SOURCE, project(), TABLES)
    assert p.user_data == ["auth.users", "auth.identities", "storage.objects"]
    assert p.decide(Entry("TABLE DATA", "storage", "buckets_vectors")) == (
        "platform data: " + platform.PLATFORM_DATA["storage.buckets_vectors"])
    assert p.decide(Entry("TABLE DATA", "storage", "brand_new")) == "platform data: " + platform.UNKNOWN
    assert p.decide(Entry("TABLE DATA", "cron", "job")) == "platform data: " + platform.PLATFORM_DATA["cron.job"]
    assert p.decide(Entry("TABLE DATA", "auth", "identities")) is None
    assert p.decide(Entry("TABLE DATA", "public", "todos")) is None
    plan = " ".join(p.lines())
    assert "writes the users' rows of 3 platform tables" in plan and "storage.buckets_vectors" in plan
    assert "2 pg_cron jobs in the backup" in plan and "etl_slot" in plan and "from_legacy" in plan


def test_a_user_data_table_the_project_role_may_not_write_is_refused_before_anything_starts() -> None:
    with pytest.raises(ConfigError) as exc:
        Placement("supabase", SOURCE, project(writable={"auth|users"}), TABLES)
    assert "postgres may not write auth.identities, storage.objects" in str(exc.value)
    assert "nothing was changed" in str(exc.value)


def test_a_sequence_of_user_data_the_project_role_may_not_set_is_refused_too() -> None:
    facts = project(owned_sequences={"auth|refresh_tokens_id_seq": "auth.identities"}, writable_sequences=set())
    with pytest.raises(ConfigError, match="may not write auth.refresh_tokens_id_seq"):
        Placement("supabase", SOURCE, facts, TABLES)
    facts["writable_sequences"] = {"auth|refresh_tokens_id_seq"}
    p = Placement("supabase", SOURCE, facts, TABLES)
    assert p.decide(Entry("SEQUENCE SET", "auth", "refresh_tokens_id_seq")) is None
    assert p.decide(Entry("SEQUENCE SET", "storage", "other_seq")) == "platform data: the project has its own"


def test_a_user_data_table_the_project_lacks_is_refused_with_the_names() -> None:
    with pytest.raises(ConfigError, match="has no auth.identities.*older platform version"):
        Placement("supabase", SOURCE, project(tables={"auth|users", "storage|objects"}), TABLES)


def test_user_mappings_and_subscriptions_are_left_out_of_a_copy_unless_asked() -> None:
    mapping = Entry("USER MAPPING", None, "USER MAPPING postgres SERVER stripe_server")
    sub = Entry("SUBSCRIPTION", "public", "from_legacy")
    p = Placement("supabase", SOURCE, project(), TABLES)
    assert p.decide(mapping) == USER_MAPPING and p.decide(sub) == SUBSCRIPTION
    assert p.decide(Entry("SERVER", None, "stripe_server")) is None  # credentials dropped inside the transaction
    kept = Placement("supabase", SOURCE, project(create_subscription=True), TABLES, keep_jobs=True)
    assert kept.decide(mapping) is None and kept.decide(sub) is None
    assert "keeps jobs armed" in " ".join(kept.lines())


def test_a_foreign_server_whose_wrapper_staging_lacks_is_skipped_with_its_logins() -> None:
    facts = project(available_extensions=set(), installed_extensions=set(), supabase=False, superuser=True)
    p = Placement("plain", {**SOURCE, "extensions": [{"name": "wrappers", "schema": "extensions"}]}, facts, TABLES)
    why = "needs extension wrappers, which this server does not have"
    assert p.decide(Entry("SERVER", None, "stripe_server")) == why
    assert p.decide(Entry("USER MAPPING", None, "USER MAPPING postgres SERVER stripe_server")) == why


def test_the_disarm_block_counts_come_back_from_psqls_notice() -> None:
    block = disarm.statement()
    assert block.startswith("DO $drkit$") and "cron.job" in block and "net.http_request_queue" in block
    assert "true" in block.split("mine constant boolean := ", 1)[1][:5]
    assert "false" in disarm.statement(own_transaction=False).split("mine constant boolean := ", 1)[1][:6]
    tail = ('psql:<stdin>:912: NOTICE:  drkit-disarmed {"cron_jobs" : 2, "net_requests" : 0, '
            '"server_credentials" : 1, "user_mappings" : 0, "subscriptions" : 0}')
    got = disarm.parse("some other line\n" + tail)
    assert got == disarm.Disarmed(cron_jobs=2, server_credentials=1)
    assert got is not None and got.sentence() == ("disarmed: 2 pg_cron job(s) deactivated, 1 foreign-server "
                                                  "credential option(s) dropped")
    assert disarm.parse("nothing here") is None
    assert "nothing to disarm" in disarm.Disarmed().sentence()


def test_known_restore_failures_name_the_fix() -> None:
    unqualified = ('psql:<stdin>:88: ERROR:  relation "allowed_words" does not exist\nLINE 1: select exists(select 1 '
                   'from allowed_words where word = t)\nCONTEXT:  SQL function "task_allowed" during inlining\n'
                   'COPY todos, line 1')
    fix = hints.advice(unqualified)
    assert fix is not None and "empty search_path" in fix and "task_allowed" in fix
    check = ('psql:<stdin>:90: ERROR:  new row for relation "todos" violates check constraint "todos_known_user"\n'
             'DETAIL:  Failing row contains (1, x).\nCONTEXT:  COPY todos, line 1')
    fix = hints.advice(check)
    assert fix is not None and "todos_known_user" in fix and "immutable" in fix
    assert hints.advice('ERROR:  duplicate key value violates unique constraint "x"') is None
