"""The off-site copy's pure decisions: what a run copies, keeps longer and lets go; which version a reader believes."""

from __future__ import annotations

import datetime as dt

from drkit.offsite.plan import Want, decide, default_lock_days, window_days
from drkit.policy import layout
from drkit.policy.retention import parse_policy
from drkit.storage.copies import Copied
from drkit.storage.versioned import Version, choose

NOW = dt.datetime(2026, 12, 8, 12, 0, tzinfo=dt.UTC)
OLD, NEW = "20261101T010700Z-aaaaaa", "20261208T110700Z-bbbbbb"


def held(key: str, *, days_ago: float, keep_days: float, locked: bool = True, sha: str = "s") -> Copied:
    at = NOW - dt.timedelta(days=days_ago)
    keep = at + dt.timedelta(days=keep_days)
    return Copied(10, sha, "v1", at, keep, keep if locked else None)


def backup_keys(db: str, backup_id: str) -> list[str]:
    m = layout.manifest_key(db, backup_id)
    return [layout.data_key(db, backup_id), m + ".minisig", m]


def test_the_default_lock_is_the_retention_window_plus_a_margin() -> None:
    assert window_days(parse_policy("keep_within_hourly=7d keep_within_daily=30d")) == 30
    assert window_days(parse_policy("keep_daily=7 keep_monthly=12")) == 12 * 31
    assert default_lock_days("") == 37 and default_lock_days("keep_last=24") == 8
    assert default_lock_days("not a policy") == 37  # backup-copy never fails on db-backup's setting


def test_new_objects_are_copied_in_a_backups_order_and_heads_last() -> None:
    data, sig, manifest = backup_keys("odoo", NEW)
    wanted = [Want(layout.catalog_key("odoo"), 100, "h1", "catalog", 9), Want(manifest, 50, "m", f"db:odoo:{NEW}", 2),
              Want(data, 10, "d", f"db:odoo:{NEW}", 0), Want(sig, None, None, f"db:odoo:{NEW}", 1),
              Want("files/s/blobs/b1", 5, None, "files:s", 0)]
    plan = decide(wanted, {}, NOW, 37)
    assert [w.key for w in plan.copy] == [data, sig, manifest, "files/s/blobs/b1", layout.catalog_key("odoo")]


def test_what_the_copy_holds_is_not_copied_again_unless_it_differs() -> None:
    data, sig, manifest = backup_keys("odoo", NEW)
    ledger = {data: held(data, days_ago=0, keep_days=37, sha="d"), sig: held(sig, days_ago=0, keep_days=37),
              manifest: held(manifest, days_ago=0, keep_days=37, sha="m"),
              layout.catalog_key("odoo"): held(layout.catalog_key("odoo"), days_ago=0, keep_days=37, sha="h1")}
    same = [Want(data, 10, "d", "g", 0), Want(sig, None, None, "g", 1), Want(manifest, None, "m", "g", 2),
            Want(layout.catalog_key("odoo"), 100, "h1", "catalog", 9)]
    assert decide(same, ledger, NOW, 37).copy == [] and decide(same, ledger, NOW, 37).present == 4
    moved = [*same[:3], Want(layout.catalog_key("odoo"), 120, "h2", "catalog", 9)]  # the head moved on
    assert [w.key for w in decide(moved, ledger, NOW, 37).copy] == [layout.catalog_key("odoo")]
    wrong = [Want(data, 10, "other", "g", 0), *same[1:]]  # recorded, but not as the signed manifest says
    assert [w.key for w in decide(wrong, ledger, NOW, 37).copy] == [data]


def test_retention_lets_go_only_of_what_is_past_its_keep_date_and_unlocked_never_the_newest() -> None:
    old, new = backup_keys("odoo", OLD), backup_keys("odoo", NEW)
    ledger = {k: held(k, days_ago=40, keep_days=37) for k in old} | {k: held(k, days_ago=0, keep_days=37) for k in new}
    plan = decide([], ledger, NOW, 37)  # the primary lost both (retention, or an attacker): the copy's own rule
    assert plan.expire == [old[2], old[1], old[0]]  # the manifest first, then the signature, then the data
    still_locked = dict(ledger) | {old[0]: Copied(10, "s", "v1", NOW - dt.timedelta(days=40),
                                                   NOW - dt.timedelta(days=3), NOW + dt.timedelta(days=1))}
    assert old[0] not in decide([], still_locked, NOW, 37).expire
    only_old = {k: held(k, days_ago=400, keep_days=37) for k in old}
    assert decide([], only_old, NOW, 37).expire == []  # the newest copied backup of a database always stays


def test_blobs_still_named_are_kept_longer_and_never_let_go() -> None:
    blob = "files/supabase/blobs/abc"
    ledger = {blob: held(blob, days_ago=30, keep_days=37)}
    plan = decide([Want(blob, 10, "s", "files:supabase", 0)], ledger, NOW, 37)
    assert plan.extend == [blob] and plan.expire == []
    gone = {blob: held(blob, days_ago=40, keep_days=37, locked=False)}
    assert decide([], gone, NOW, 37).expire == [blob]


def version(key: str, minutes: int, *, deleted: bool = False) -> Version:
    return Version(key, f"v{minutes}", 0 if deleted else 10, NOW + dt.timedelta(minutes=minutes), "e", deleted)


def test_a_reader_believes_the_original_of_a_written_once_key_and_the_newest_record() -> None:
    data = layout.data_key("odoo", NEW)
    found = [version(data, 0), version(data, 5), version(data, 9, deleted=True)]  # overwritten, then deleted
    assert choose(data, found, None).version_id == "v0"
    head = layout.catalog_key("odoo")
    heads = [version(head, 0), version(head, 5), version(head, 9)]
    assert choose(head, heads, None).version_id == "v9"
    assert choose(head, heads, NOW + dt.timedelta(minutes=6)).version_id == "v5"  # as of before a forged head
    assert choose(data, [version(data, 7)], NOW + dt.timedelta(minutes=6)) is None  # written after: not there then
    assert layout.changes_in_place("files/s/catalog.json") and layout.changes_in_place("files/s/catalog.json.minisig")
    assert not layout.changes_in_place("files/s/blobs/catalog.json.x")
