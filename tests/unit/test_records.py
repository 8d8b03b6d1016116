"""The record layer (pure parts): strict fields, role-bound trust, and the signed envelope.

Every way a record can be wrong is a RecordError naming the key and the reason, never another exception:
random bytes, wrong types, huge values, a copy under another key, a replay under another type, a writer
signing for a role it does not hold, a record from the future.
"""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from drkit.core.errors import ConfigError
from drkit.core.fields import FieldError, Fields
from drkit.core.secret import Secret
from drkit.crypto import signing
from drkit.crypto.trust import LEGACY_ROLES, Signer, Trust
from drkit.health.memory import HealthState
from drkit.scheduling.runs import Attempt, JobRecord
from drkit.storage import records
from drkit.storage.records import RecordError
from drkit.storage.state import BackupState, RunInfo, VerifyState

NOW = dt.datetime(2026, 12, 7, 12, 0, tzinfo=dt.UTC)
KEYS = {role: signing.generate() for role in ("db-backup", "restore-verify", "dns-failover", "health-probe")}


def signer(role: str, as_role: str | None = None) -> Signer:
    return Signer(as_role or role, Secret(KEYS[role][0]))


def trust(*roles: str) -> Trust:
    return Trust.parse(" ".join(f"{r}={KEYS[r][1]}" for r in roles))


ALL = trust(*KEYS)
STATE = BackupState("odoo", RunInfo("ok", NOW, id="20261207T110700Z-abcdef", duration_s=8.1, bytes_out=10, seq=4),
                    RunInfo("ok", NOW, id="20261207T110700Z-abcdef"), 0)


def test_a_record_round_trips_and_names_its_writer() -> None:
    data = records.encode(STATE, "state/db/odoo.json", signer("db-backup"), NOW)
    got = records.decode(data, "state/db/odoo.json", BackupState, ALL, NOW)
    assert got.value == STATE and got.writer == "db-backup" and got.at == NOW
    envelope = json.loads(data)
    assert set(envelope) == {"format", "signed", "signature"}  # one object: no record beside another's signature
    # standard tools verify it: the signed text is minisign-signed
    assert signing.verify(envelope["signed"].encode(), envelope["signature"], [ALL.keys()[0]], "x")


def test_a_key_is_believed_only_for_its_role() -> None:
    forged = records.encode(STATE, "state/db/odoo.json", signer("dns-failover", as_role="db-backup"), NOW)
    with pytest.raises(RecordError, match="claims db-backup wrote it, but it is signed by key .* .dns-failover."):
        records.decode(forged, "state/db/odoo.json", BackupState, ALL, NOW)

    class Sneaky(BackupState):  # restore-verify's key, honestly naming itself, on a record only db-backup writes
        WRITERS = ("restore-verify",)

    own = records.encode(Sneaky("odoo"), "state/db/odoo.json", signer("restore-verify"), NOW)
    with pytest.raises(RecordError, match="written by restore-verify; db-state records are believed only from db-backup"):
        records.decode(own, "state/db/odoo.json", BackupState, ALL, NOW)
    with pytest.raises(Exception, match="dns-failover may not write db-state"):
        records.encode(STATE, "state/db/odoo.json", signer("dns-failover"), NOW)


def test_a_copy_under_another_key_or_type_is_refused() -> None:
    data = records.encode(STATE, "state/db/odoo.json", signer("db-backup"), NOW)
    with pytest.raises(RecordError, match="copied or replayed under another name"):
        records.decode(data, "state/db/superset.json", BackupState, ALL, NOW)
    with pytest.raises(RecordError, match="copied or replayed under another name or type"):
        records.decode(data, "state/db/odoo.json", VerifyState, ALL, NOW)


def test_unsigned_future_and_unknown_versions_are_refused() -> None:
    with pytest.raises(RecordError, match="not a signed drkit record"):
        records.decode(json.dumps(STATE.to_json()).encode(), "state/db/odoo.json", BackupState, ALL, NOW)
    future = records.encode(STATE, "state/db/odoo.json", signer("db-backup"), NOW + dt.timedelta(days=365 * 900))
    with pytest.raises(RecordError, match="in the future"):
        records.decode(future, "state/db/odoo.json", BackupState, ALL, NOW)
    with pytest.raises(RecordError, match="no trusted signing key"):
        records.decode(records.encode(STATE, "k", signer("db-backup"), NOW), "k", BackupState, Trust(), NOW)

    class Newer(BackupState):
        VERSION = 2

    newer = records.encode(Newer("odoo"), "k", signer("db-backup"), NOW)
    with pytest.raises(RecordError, match="version 2 of db-state; this drkit reads up to 1"):
        records.decode(newer, "k", BackupState, ALL, NOW)


@pytest.mark.parametrize("bad", [{"consecutive_failures": "x"}, {"consecutive_failures": -1000000},
                                 {"consecutive_failures": True}, {"consecutive_failures": 10**12},
                                 {"last_run": {"status": "ok", "at": "2026-12-07T12:00:00"}},  # no zone
                                 {"last_run": {"status": "ok", "at": NOW.isoformat(), "bytes_out": 1.5}},
                                 {"surprise": 1}])
def test_malformed_content_signed_by_the_right_key_is_still_refused(bad: dict[str, Any]) -> None:
    class Loose(BackupState):
        def to_json(self) -> dict[str, Any]:
            return super().to_json() | bad

    data = records.encode(Loose("odoo"), "state/db/odoo.json", signer("db-backup"), NOW)
    with pytest.raises(RecordError, match=r"signed by db-backup, but malformed: \$"):
        records.decode(data, "state/db/odoo.json", BackupState, ALL, NOW)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=2000))
def test_random_bytes_are_a_record_error(data: bytes) -> None:
    with pytest.raises(RecordError):
        records.decode(data, "state/health.json", HealthState, ALL, NOW)


JSONISH = st.recursive(st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=30),
                       lambda c: st.lists(c, max_size=4) | st.dictionaries(st.text(max_size=10), c, max_size=4),
                       max_leaves=20)


@settings(max_examples=300, deadline=None)
@given(st.dictionaries(st.sampled_from(["updated_at", "targets", "catalog", "x"]), JSONISH, max_size=4))
def test_any_signed_content_either_parses_strictly_or_is_a_record_error(content: dict[str, Any]) -> None:
    class Anything(HealthState):
        def to_json(self) -> dict[str, Any]:
            return content

    data = records.encode(Anything(NOW), "state/health.json", signer("health-probe"), NOW)
    try:
        got = records.decode(data, "state/health.json", HealthState, ALL, NOW)
    except RecordError:
        return
    for t in got.value.targets.values():
        assert t["status"] in ("healthy", "unhealthy") and 0 <= t["failures"] <= 10**7
    assert all(isinstance(v, int) and v >= 0 for v in got.value.catalog.values())


@settings(max_examples=200, deadline=None)
@given(st.dictionaries(st.sampled_from(["job", "subject", "slot", "attempt", "owner", "state", "claimed_at", "manual",
                                        "missed", "dispatch_ref", "duration_ms", "alerted", "activation_id"]),
                       JSONISH, max_size=13))
def test_scheduler_records_parse_strictly(content: dict[str, Any]) -> None:
    for cls in (Attempt, JobRecord):
        try:
            f = Fields(content)
            cls.from_fields(f)
            f.done()
        except FieldError:
            continue


def test_fields_name_the_path() -> None:
    f = Fields({"targets": {"web": {"failures": "x"}}})
    with pytest.raises(FieldError, match=r"^\$\.targets\.web\.failures: must be a whole number"):
        f.mapping("targets")["web"].integer("failures", lo=0, hi=10)
    with pytest.raises(FieldError, match=r"unknown key 'b'"):
        g = Fields({"a": 1, "b": 2})
        g.integer("a", lo=0, hi=9)
        g.done()


def test_trust_entries_bind_roles_and_bare_keys_keep_their_old_meaning() -> None:
    t = Trust.parse(f"db-backup={KEYS['db-backup'][1]}, {KEYS['dns-failover'][1]}")
    db = signing.parse_public(KEYS["db-backup"][1])
    legacy = signing.parse_public(KEYS["dns-failover"][1])
    assert t.roles_of(db) == {"db-backup"} and t.roles_of(legacy) == set(LEGACY_ROLES)
    assert t.legacy() == [legacy] and t.keys_for(["health-probe"]) == []
    with pytest.raises(ConfigError, match="'db-bakup' is not a role"):
        Trust.parse(f"db-bakup={KEYS['db-backup'][1]}", roles=("db-backup",))
