"""An attacker with only the bucket key (every function holds one; dns-failover answers the public web).

The attacker is a plain S3 client: no signing key, no age identity. Each attack of the records issue is
refused or alerted on the first health-probe run, and nothing acts on what the attacker wrote:

1. planted run records, a future-dated backup and a "passed" verification stop no scheduled work;
2. planted entries and markers never make retention delete (or stop protecting) a genuine backup;
3. deleting the newest backup, or only its data, is alerted naming it, and `restore latest` will not roll back;
4. (failover: test_dns_failover.py) a planted claim, site or replayed plan moves nothing;
5. planted evidence never makes the DR report say a test is done, nor silences its notification;
6. a malformed record of any type keeps health-probe and the scheduler running and alerting.

Plus the per-writer keys: dns-failover's key forges failover records at most.
"""

from __future__ import annotations

import datetime as dt
import json
import time
import uuid
from pathlib import Path
from typing import Any

import pytest

from conftest import keys
from drkit.cli import main
from drkit.core.deadline import Deadline
from drkit.functions import db_backup, health_probe, report, scheduler
from drkit.platform.runtime import handle
from drkit.policy import layout
from drkit.storage import records
from drkit.storage.state import BackupState, VerifyState
from drkit_dev.fakewhisk import FakeWhisk
from drkit_dev.keys import per_function_env, role_pair, store_of
from drkit_dev.pgserver import PgServer
from support.records import content, genuine_backup, mark_verified

FUTURE = "29991231T235959Z-abcdef"


def plant(s3_client: Any, bucket: str, key: str, body: Any) -> None:
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    s3_client.put_object(Bucket=bucket, Key=key, Body=data)


def probe(env: dict[str, str], at: dt.datetime | None = None) -> dict[str, Any]:
    result = health_probe.run({}, env, Deadline(50), **({"clock": lambda: at} if at else {}))
    assert result["ok"], result  # the monitor ran: what it found is the verdict, never a crash
    return result


def targets(result: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {t["name"]: t for t in result["targets"]}


@pytest.fixture
def app(make_env: Any, pg: PgServer, dbname: str) -> dict[str, str]:
    pg.execute("CREATE TABLE t AS SELECT g FROM generate_series(1, 100) g", dbname)
    return make_env({"app": pg.url(dbname)}, DRKIT_RETENTION="keep_last=24")


def backup(env: dict[str, str], **params: Any) -> dict[str, Any]:
    result = handle("db-backup", db_backup.run, params, None, env)
    assert result["ok"], result
    return result["databases"][0]


def test_planted_run_records_a_future_backup_and_a_fake_pass_stop_nothing(app: dict[str, str], s3_client: Any,
                                                                         bucket: str) -> None:
    whisk = FakeWhisk().start()
    try:
        env = {**app, **whisk.env(), "DRKIT_SCHEDULE": json.dumps(
            [{"job": j, "enabled": False} for j in ("health-probe", "config-backup", "restore-verify", "report", "backup-copy")])}
        at = dt.datetime(2026, 11, 30, 1, 10, tzinfo=dt.UTC)
        for name in ("db-backup/app", "config-backup", "restore-verify/app", "report"):
            plant(s3_client, bucket, f"state/schedule/runs/{name}.json",
                  {"cron_slot": "2999-12-31T23:59:00+00:00", "last_success": {"at": "2999-12-31T23:59:00+00:00"},
                   "state": "succeeded"})
        plant(s3_client, bucket, "status/schedule.json", {"at": at.isoformat(), "decision": "every job on schedule",
                                                          "jobs": []})
        plant(s3_client, bucket, layout.data_key("app", FUTURE), b"x")
        plant(s3_client, bucket, layout.manifest_key("app", FUTURE), {"id": FUTURE, "sha256": "0" * 64})
        plant(s3_client, bucket, "state/verify/app.json", {"last_success": {"at": at.isoformat(), "duration_s": 1}})
        tick = scheduler.run({}, env, Deadline(50), clock=lambda: at)
        assert [d["name"] for d in tick["dispatched"]] == ["db-backup/app"]  # the planted records stopped nothing
        assert tick["alerts"] >= 5 and "not believed" in tick["decision"] and "every job on schedule" not in tick["decision"]
        whisk.wait_idle()
        found = probe(env, at + dt.timedelta(minutes=1))
        got = targets(found)
        assert not got["backup-age:app"]["ok"] and "no complete backup" in got["backup-age:app"]["detail"]
        assert not got["catalog:app"]["ok"] and FUTURE in got["catalog:app"]["detail"]
        assert not got["verify-age:app"]["ok"] and "not believed" in got["verify-age:app"]["detail"]
        assert {"catalog:app", "verify-age:app"} <= set(found["down"])  # alerted on the first run
        assert got["scheduler"]["ok"]  # the scheduler's own, signed status
    finally:
        whisk.stop()
    assert whisk.violations == []


def test_planted_entries_never_make_retention_delete_a_genuine_backup(app: dict[str, str], s3_client: Any,
                                                                     bucket: str) -> None:
    now = dt.datetime.now(dt.UTC)
    genuine = [layout.new_id(now - dt.timedelta(hours=h, minutes=30)) for h in range(1, 21)]
    for bid in genuine:
        genuine_backup(app, "app", bid)
    mark_verified(app, "app", genuine[-1])  # the oldest genuine backup is the verified one
    planted = []
    for h in range(1, 39):  # later in each hour and each day than the genuine ones
        bid = layout.new_id(now - dt.timedelta(hours=h, minutes=5))
        plant(s3_client, bucket, layout.data_key("app", bid), b"x")
        plant(s3_client, bucket, layout.manifest_key("app", bid), {"id": bid, "database": "app", "sha256": "0" * 64})
        planted.append(bid)
    plant(s3_client, bucket, layout.marker_key("app", genuine[0], layout.VERIFIED_SUFFIX), {"verified_at": "x"})
    done = backup(app)
    ret = done["retention"]
    assert ret["deleted"] == [] and len(ret["untrusted"]) == 38 and "38 UNTRUSTED" in done["decision"]
    assert any("not believed" in p for p in ret["marker_problems"])
    listed = keys(s3_client, bucket, "db/app/")
    assert all(any(bid in k for k in listed) for bid in genuine + planted)  # nothing genuine deleted, nothing planted
    # keep_last=1: the newest, and the newest *verified* one stay; the planted marker protects nothing
    tight = dict(app, DRKIT_RETENTION="keep_last=1")
    ret = backup(tight)["retention"]
    kept = {d["id"] for d in ret["plan"] if d["verdict"] != "delete"}
    assert genuine[-1] in kept and genuine[0] in ret["deleted"] and not set(planted) & set(ret["deleted"])


def test_deleting_the_newest_backup_is_alerted_and_restore_will_not_roll_back(app: dict[str, str], s3_client: Any,
                                                                             bucket: str, pg: PgServer,
                                                                             age_keys: tuple[str, str], tmp_path: Path,
                                                                             capsys: pytest.CaptureFixture[str]) -> None:
    older = backup(app)
    time.sleep(1.1)  # ids carry seconds
    newest = backup(app)
    assert targets(probe(app))["catalog:app"]["ok"]  # the check exists, and passes while nothing is missing
    for k in keys(s3_client, bucket, "db/app/"):
        if newest["backup_id"] in k:
            s3_client.delete_object(Bucket=bucket, Key=k)
    found = probe(app)
    got = targets(found)
    assert "catalog:app" in found["down"] and newest["backup_id"] in got["catalog:app"]["detail"]
    assert got["backup-age:app"]["ok"]  # still inside the RPO: only the catalog sees it
    env_file = tmp_path / ".env"
    env_file.write_text("".join(f"{k}={v}\n" for k, v in app.items()))
    identity = tmp_path / "id.txt"
    identity.write_text(age_keys[0] + "\n")
    target = f"r_{uuid.uuid4().hex[:8]}"
    argv = ["--env-file", str(env_file), "restore", "--db", "app", "--target", pg.url(target), "--identity",
            str(identity)]
    assert main.main(argv) == 1
    err = capsys.readouterr().err
    assert newest["backup_id"] in err and "--accept-rollback" in err
    assert main.main([*argv, "--accept-rollback"]) == 0 and older["backup_id"] in capsys.readouterr().out
    pg.drop_database(target)
    # only the data object of the remaining one deleted: the catalog names it, health-probe says so
    s3_client.delete_object(Bucket=bucket, Key=layout.data_key("app", older["backup_id"]))
    got = targets(probe(app))
    assert older["backup_id"] in got["catalog:app"]["detail"] and not got["backup-age:app"]["ok"]
    # the next backup still reports both, and garbage collection keeps what the catalog names (evidence)
    ret = backup(app)["retention"]
    assert set(ret["missing"]) == {older["backup_id"], newest["backup_id"]}
    assert layout.manifest_key("app", older["backup_id"]) in keys(s3_client, bucket, "db/app/")


def test_a_rolled_back_catalog_head_is_seen(app: dict[str, str], s3_client: Any, bucket: str) -> None:
    backup(app)
    head_key = layout.catalog_key("app")
    old_head = s3_client.get_object(Bucket=bucket, Key=head_key)["Body"].read()
    time.sleep(1.1)
    backup(app)
    assert targets(probe(app))["catalog:app"]["ok"]  # health-probe has seen sequence 2
    plant(s3_client, bucket, head_key, old_head)  # the older signed head, replayed
    got = targets(probe(app))
    assert not got["catalog:app"]["ok"] and "rolled back" in got["catalog:app"]["detail"]


def test_planted_evidence_is_a_finding_and_never_silences_the_report(app: dict[str, str], s3_client: Any,
                                                                    bucket: str, webhook: Any) -> None:
    url, received = webhook
    env = dict(app, DRKIT_NOTIFY_WEBHOOK_URL=f"{url}/hook")
    backup(env)
    now = dt.datetime.now(dt.UTC)
    plant(s3_client, bucket, "state/verify/app.json", {"subject": "app", "consecutive_failures": 0,
                                                       "last_success": {"status": "passed", "at": now.isoformat()}})
    for action, details in (("failover.drill", {"outcome": "dry_run"}), ("restore.completed", {"database": "app"})):
        plant(s3_client, bucket, layout.audit_key(now, "dns-failover", action), {"action": action, "details": details})
    plant(s3_client, bucket, "reports/latest.json", {"findings": ["app: newest backup missing (RPO 75 min)"]})
    result = report.run({}, env, Deadline(100))
    assert result["ok"]
    findings = result["findings"]
    assert any(f.startswith("not believed: state/verify/app.json") for f in findings), findings
    assert any("failover.drill" in f for f in findings) and any("restore.completed" in f for f in findings)
    assert "Restore proof: app: overdue" in findings and "Failover rehearsal: overdue" in findings
    (_, _, body), = received  # the planted "last findings" did not make them old news
    assert any("not believed" in c for c in json.loads(body)["failed_checks"])


@pytest.mark.parametrize("key,body", [
    ("state/db/app.json", {"consecutive_failures": "x"}),
    ("state/health.json", {"targets": {"backup-age:app": {"failures": -1000000, "status": "healthy"}}}),
    ("state/verify/app.json", b"\x00\xffnot json"),
    ("status/schedule.json", {"at": "yesterday"}),
    ("status/notices.json", {"notices": [{"id": "x", "posted_at": "not a date"}]}),
    (layout.catalog_key("app"), {"seq": -1}),
])
def test_a_malformed_record_keeps_the_monitors_running_and_alerting(key: str, body: Any, app: dict[str, str],
                                                                    s3_client: Any, bucket: str, pg: PgServer) -> None:
    backup(app)
    plant(s3_client, bucket, key, body)
    env = dict(app, DRKIT_PROBES=json.dumps([{"name": "db", "type": "tcp", "host": "127.0.0.1", "port": pg.port}]),
               DRKIT_STATUS_PAGE=json.dumps({"title": "x", "services": [{"name": "DB", "targets": ["db"]}]}))
    found = probe(env)
    failing = [t for t in found["targets"] if not t["ok"]]
    assert failing and any("not believed" in t["detail"] for t in failing), found["targets"]
    assert not found["healthy"] and found["down"]  # alerted on this first run
    assert probe(env)["ok"]  # and again: the next run neither crashes nor goes quiet about it
    whisk = FakeWhisk().start()
    try:
        tick = scheduler.run({}, {**env, **whisk.env()}, Deadline(50))
        assert tick["ok"] and tick["dispatched"], tick
    finally:
        whisk.stop()


@pytest.mark.parametrize("name,body", [("db-backup/app", [1, 2, 3]), ("db-backup/app", {"last_slot": "2999"}),
                                       ("health-probe", b"\x00")])
def test_a_malformed_run_record_is_unknown_so_the_scheduler_dispatches_and_alerts(
        name: str, body: Any, app: dict[str, str], s3_client: Any, bucket: str) -> None:
    whisk = FakeWhisk().start()
    try:
        env = {**app, **whisk.env()}
        at = dt.datetime(2026, 11, 30, 1, 10, tzinfo=dt.UTC)
        plant(s3_client, bucket, f"state/schedule/runs/{name}.json", body)
        tick = scheduler.run({}, env, Deadline(50), clock=lambda: at)
        assert tick["ok"] and name in [d["name"] for d in tick["dispatched"]]
        assert tick["alerts"] >= 1 and "1 record(s) not believed" in tick["decision"]
        again = scheduler.run({}, env, Deadline(50), clock=lambda: at + dt.timedelta(minutes=1))
        assert again["alerts"] == 0  # once
    finally:
        whisk.stop()


def test_each_writer_signs_its_own_records_and_no_other(app: dict[str, str], s3_client: Any, bucket: str) -> None:
    """The deployed key model (per_function_env: what `drkit init` writes): dns-failover's key, stolen, forges
    failover records at most; a backup state or a verification signed with it is refused."""
    env = {k: v for k, v in app.items() if not k.startswith("DRKIT_SIGNING_KEY")} | per_function_env()
    env["DRKIT_SIGNING_KEY"] = role_pair("db-backup")[0]
    done = backup(env)
    now = dt.datetime.now(dt.UTC)
    stolen = store_of(env, "dns-failover")
    forged = BackupState("app")
    with pytest.raises(Exception, match="dns-failover may not write db-state"):
        records.write(stolen, layout.state_key("app"), forged, now)

    class Disguised(VerifyState):  # the same key, claiming the role it does not hold
        WRITERS = ("dns-failover",)

    records.write(stolen, layout.verify_state_key("app"), Disguised("app"), now)
    probe_env = dict(env, DRKIT_SIGNING_KEY=role_pair("health-probe")[0])
    got = targets(probe(probe_env))
    assert not got["verify-age:app"]["ok"] and "believed only from restore-verify" in got["verify-age:app"]["detail"]
    assert got["backup-age:app"]["ok"] and done["seq"] == 1
    assert content(s3_client, bucket, layout.state_key("app"))["last_success"]["id"] == done["backup_id"]


def test_another_functions_key_cannot_silence_a_roles_alerts(app: dict[str, str]) -> None:
    """Every role may sign alerts, but each role's outbox believes only its own: dns-failover's key, stolen,
    cannot pre-plant the scheduler's alert as "open and delivered" (raise_alert would then send nothing)."""
    from drkit.platform.notify import CHANNELS
    from drkit.storage import outbox

    env = {k: v for k, v in app.items() if not k.startswith("DRKIT_SIGNING_KEY")} | per_function_env()
    now = dt.datetime.now(dt.UTC)
    mine, stolen = store_of(env, "scheduler"), store_of(env, "dns-failover")
    condition = "schedule.overdue:db-backup/app"
    key = outbox.key_of(mine, condition)
    records.write(stolen, key, outbox.Alert(condition, {"event": "x"}, now, delivered={"open": tuple(CHANNELS)}), now)
    assert condition not in outbox.open_conditions(mine, now)  # not believed (and removed)
    records.write(stolen, key, outbox.Alert(condition, {"event": "x"}, now, delivered={"open": tuple(CHANNELS)}), now)
    assert outbox.raise_alert(mine, condition, {"event": "schedule.overdue"}, now)  # the real alert is raised
    got = records.read(mine, key, outbox.Alert, now)
    assert got is not None and got.writer == "scheduler" and got.value.delivered == {}
