"""The scheduler against a spec-checked Functions API stand-in and the real S3 server, on a simulated clock."""

from __future__ import annotations

import datetime as dt
import json
import threading
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from conftest import ROOT, fill_rich, keys
from drkit.core.deadline import Deadline
from drkit.functions import db_backup, scheduler
from drkit.platform.runtime import handle
from drkit.policy import schedule
from drkit_dev.fakewhisk import SPEC, FakeWhisk
from drkit_dev.pgserver import PgServer
from support.records import content

DAY = dt.datetime(2026, 11, 30, tzinfo=dt.UTC)  # a Monday: the weekly restore proof is due at 03:17
POLICIES = json.dumps([{"tag": "dr:snapshot", "schedule": "0 4 * * *", "retention": "keep_last=7"}])


@pytest.fixture
def whisk() -> Iterator[FakeWhisk]:
    f = FakeWhisk().start()
    yield f
    f.stop()
    assert f.violations == [], f.violations  # every request matched OpenWhisk's API description


@pytest.fixture
def env(make_env: Any, whisk: FakeWhisk) -> dict[str, str]:
    e = make_env({"odoo": "postgresql://x@127.0.0.1/odoo", "superset": "postgresql://x@127.0.0.1/superset"})
    return {**e, **whisk.env(), "DRKIT_SNAPSHOT_POLICIES": POLICIES}


def tick(env: dict[str, str], at: dt.datetime, **params: Any) -> dict[str, Any]:
    return scheduler.run(params, env, Deadline(50), clock=lambda: at)


def params(inv: Any) -> dict[str, Any]:
    """What the function was asked to do (the scheduler adds its dispatch_ref to every invoke)."""
    assert isinstance(inv.params.get("dispatch_ref"), str)
    return {k: v for k, v in inv.params.items() if k != "dispatch_ref"}


def test_the_vendored_spec_is_the_shared_one() -> None:
    shared = ROOT.parent / "shared" / "openwhisk-api" / "apiv1swagger.json"
    if not shared.exists():
        pytest.skip("../shared/openwhisk-api is not beside this checkout (CI has it)")
    assert SPEC.read_bytes() == shared.read_bytes(), "copy ../shared/openwhisk-api/apiv1swagger.json to " + str(SPEC)


def test_a_day_of_ticks_dispatches_every_slot_exactly_once(env: dict[str, str], whisk: FakeWhisk) -> None:
    env = dict(env, DRKIT_SCHEDULE=json.dumps([{"job": "health-probe", "cron": "*/30 * * * *"}]))
    deployed = tick(env, DAY - dt.timedelta(minutes=1))  # a fresh deploy runs each job's latest slot at once
    assert len(deployed["dispatched"]) == 9
    whisk.wait_idle()
    before = Counter((i.action, json.dumps(params(i), sort_keys=True)) for i in whisk.invoked())
    seen: Counter[tuple[str, str]] = Counter()
    at = DAY
    while at < DAY + dt.timedelta(days=1):
        result = tick(env, at)
        assert result["ok"], result
        for d in result["dispatched"]:
            seen[(d["name"], d["slot"])] += 1
        whisk.wait_idle()
        at += dt.timedelta(minutes=5)
    assert max(seen.values()) == 1  # nothing twice
    per_job = Counter(name for name, _ in seen)
    assert per_job == {"health-probe": 48, "db-backup/odoo": 24, "db-backup/superset": 24, "config-backup": 1,
                       "snapshot-rotate/dr:snapshot": 1, "restore-verify/odoo": 1, "restore-verify/superset": 1,
                       "report": 1, "backup-copy": 29}
    hours = sorted(dt.datetime.fromisoformat(s).hour for n, s in seen if n == "db-backup/odoo")
    assert hours == list(range(24))
    # the off-site copy: once after each backup slot (both databases' successes claim one run), from the one
    # before the day's first tick on, and its own catch-up every 6 hours
    copies = sorted(dt.datetime.fromisoformat(s) for n, s in seen if n == "backup-copy")
    followed = {s for n, s in seen if n == "db-backup/odoo"} | {(DAY - dt.timedelta(minutes=53)).isoformat()}
    assert {c.isoformat() for c in copies if c.minute == 7} == followed
    assert [c.hour for c in copies if c.minute == 37] == [0, 6, 12, 18]
    invoked = Counter((i.action, json.dumps(params(i), sort_keys=True)) for i in whisk.invoked()) - before
    assert invoked[("dr/db-backup", '{"database": "odoo"}')] == 24
    assert invoked[("dr/restore-verify", '{"backup": "latest", "database": "superset"}')] == 1
    assert invoked[("dr/snapshot-rotate", '{"tag": "dr:snapshot"}')] == 1
    last = tick(env, at)  # every activation succeeded: nothing is failing or overdue
    assert "every job on schedule" in last["decision"], last["decision"]


def test_twenty_concurrent_duplicate_ticks_dispatch_each_slot_once(env: dict[str, str], whisk: FakeWhisk) -> None:
    at = DAY.replace(hour=3, minute=20)
    results: list[dict[str, Any]] = []
    barrier = threading.Barrier(20)

    def one() -> None:
        barrier.wait()
        results.append(tick(env, at))

    threads = [threading.Thread(target=one) for _ in range(20)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    dispatched = [d for r in results for d in r["dispatched"] if d["state"] == "dispatched"]
    names = Counter(d["name"] for d in dispatched)
    assert set(names.values()) == {1}, names
    assert len(whisk.invoked()) == len(names) == 9  # a first tick: the latest slot of each of the 9 job subjects


def test_after_six_hours_down_each_job_runs_once_and_says_what_it_replaced(env: dict[str, str],
                                                                           whisk: FakeWhisk) -> None:
    tick(env, DAY.replace(hour=0, minute=10))
    whisk.wait_idle()
    before = len(whisk.invoked("db-backup"))
    result = tick(env, DAY.replace(hour=6, minute=30))
    backups = [d for d in result["dispatched"] if d["name"].startswith("db-backup/")]
    assert [(d["slot"], d["missed"]) for d in backups] == [(DAY.replace(hour=6, minute=7).isoformat(), 5)] * 2
    assert len(whisk.invoked("db-backup")) == before + 2
    assert "caught up" in result["decision"] and "missed slot" in result["decision"]


def test_failed_timed_out_and_lost_activations_are_alerted_once(env: dict[str, str], whisk: FakeWhisk,
                                                               s3_client: Any, bucket: str) -> None:
    env = dict(env, DRKIT_SCHEDULE=json.dumps([{"job": "health-probe", "enabled": False},
                                                {"job": "restore-verify", "enabled": False},
                                                {"job": "report", "enabled": False}, {"job": "backup-copy", "enabled": False}]))
    whisk.outcomes.update({"db-backup": "failed", "config-backup": "timed_out", "snapshot-rotate": "lost"})
    at = DAY.replace(hour=4, minute=10)
    first = tick(env, at)
    assert {d["name"] for d in first["dispatched"]} == {"db-backup/odoo", "db-backup/superset", "config-backup",
                                                       "snapshot-rotate/dr:snapshot"}
    whisk.wait_idle()
    second = tick(env, at + dt.timedelta(minutes=1))
    states = {w["name"]: w["state"] for w in second["watched"]}
    assert states == {"db-backup/odoo": "failed", "db-backup/superset": "failed", "config-backup": "timed_out"}
    assert second["alerts"] == 3 and second["ok"]  # the tick itself worked
    assert tick(env, at + dt.timedelta(minutes=2))["alerts"] == 0  # once
    late = tick(env, at + dt.timedelta(minutes=25))  # no record 20 minutes after dispatch
    assert [(w["name"], w["state"]) for w in late["watched"]] == [("snapshot-rotate/dr:snapshot", "lost")]
    assert late["alerts"] == 1
    status = content(s3_client, bucket, "status/schedule.json")
    jobs = {j["name"]: j for j in status["jobs"]}
    assert jobs["db-backup/odoo"]["state"] == "failed" and jobs["db-backup/odoo"]["failures_in_a_row"] == 1
    assert jobs["db-backup/odoo"]["activation_id"] and "injected failure" in jobs["db-backup/odoo"]["error"]
    assert "failing or overdue: db-backup/odoo" in status["decision"]
    assert any("schedule.failed" in k for k in keys(s3_client, bucket, "audit/"))


def test_429_is_retried_after_retry_after_and_a_5xx_is_never_resent(env: dict[str, str], whisk: FakeWhisk) -> None:
    env = dict(env, DRKIT_DATABASES="odoo", DRKIT_SNAPSHOT_POLICIES="",
               DRKIT_SCHEDULE=json.dumps([{"job": j, "enabled": False}
                                          for j in ("health-probe", "config-backup", "restore-verify", "report", "backup-copy")]))
    whisk.fail_next(429, times=2, retry_after=1)
    at = DAY.replace(hour=1, minute=10)
    result = tick(env, at)
    assert [d["state"] for d in result["dispatched"]] == ["dispatched"]
    assert len([r for r in whisk.requests if r[0] == "POST"]) == 3 and len(whisk.invoked()) == 1
    whisk.fail_next(500, times=1)
    result = tick(env, at + dt.timedelta(hours=1))
    assert [d["state"] for d in result["dispatched"]] == ["uncertain"] and "may have started" in result["dispatched"][0]["error"]
    assert len([r for r in whisk.requests if r[0] == "POST"]) == 4  # sent once, not again
    assert tick(env, at + dt.timedelta(hours=1, minutes=5))["dispatched"] == []  # the slot stays claimed
    # 20 minutes on, no activation carries its dispatch_ref: it never started. Alerted once, and (the slot's
    # window runs until 03:07) started again as the slot's second attempt
    lost = tick(env, at + dt.timedelta(hours=1, minutes=25))
    assert [(w["name"], w["state"]) for w in lost["watched"]] == [("db-backup/odoo", "lost")] and lost["alerts"] == 1
    assert [(d["state"], d["attempt"]) for d in lost["dispatched"]] == [("dispatched", 2)]
    assert len(whisk.invoked()) == 2


def test_a_hundred_databases_stay_inside_the_namespace_limits(env: dict[str, str], whisk: FakeWhisk) -> None:
    names = [f"db{i:03d}" for i in range(100)]
    env = dict(env, DRKIT_DATABASES=",".join(names), DRKIT_SNAPSHOT_POLICIES="",
               DRKIT_SCHEDULE=json.dumps([{"job": "config-backup", "enabled": False},
                                          {"job": "restore-verify", "enabled": False},
                                          {"job": "report", "enabled": False}, {"job": "backup-copy", "enabled": False}]))
    whisk.outcomes["db-backup"] = "lost"  # they stay in flight (no record) for the whole test
    at = DAY.replace(hour=1, minute=7)
    first = tick(env, at)
    assert len(first["dispatched"]) == scheduler.MAX_PER_TICK and len(first["deferred"]) == 1
    whisk.wait_idle()
    assert len([i for i in whisk.invoked() if i.record is None]) == 99  # the backups, still running
    second = tick(env, at + dt.timedelta(minutes=1))  # one place left: the backup that waited takes it
    assert [d["name"] for d in second["dispatched"]] == ["db-backup/db099", "health-probe"]  # the probe: headroom
    third = tick(env, at + dt.timedelta(minutes=2))  # 100 backups in flight: only the short probe still starts
    assert [d["name"] for d in third["dispatched"]] == ["health-probe"] and third["deferred"] == []
    assert len([i for i in whisk.invoked("db-backup") if i.record is None]) == 100 == scheduler.MAX_IN_FLIGHT
    assert scheduler.MAX_IN_FLIGHT < scheduler.PROBE_IN_FLIGHT < 120
    assert scheduler.MAX_PER_TICK <= 600


def test_dry_run_and_run_now(env: dict[str, str], whisk: FakeWhisk) -> None:
    at = DAY.replace(hour=2, minute=20)
    dry = tick(env, at, dry_run="true")
    assert dry["status"] == "dry_run" and "db-backup/odoo (slot 2026-11-30 02:07)" in dry["due"]
    assert whisk.invoked() == []
    now = tick(env, at, job="db-backup", database="superset")
    assert [d["name"] for d in now["dispatched"]] == ["db-backup/superset"]
    assert [params(i) for i in whisk.invoked()] == [{"database": "superset"}]
    regular = tick(env, at)  # a manual run does not use up the scheduled slot
    assert "db-backup/superset" in [d["name"] for d in regular["dispatched"]]
    with pytest.raises(Exception, match="nothing to run for db-backup/nope"):
        tick(env, at, job="db-backup", database="nope")


def test_a_two_database_backup_runs_as_two_activations(make_env: Any, whisk: FakeWhisk, pg: PgServer,
                                                       dbname: str, s3_client: Any, bucket: str) -> None:
    fill_rich(pg, dbname)
    backup_env = make_env({"odoo": pg.url(dbname), "superset": pg.url(dbname)})
    whisk.runner = lambda action, params: handle(action, db_backup.run, params, None, backup_env)
    env = {**backup_env, **whisk.env(), "DRKIT_SCHEDULE": json.dumps(
        [{"job": j, "enabled": False} for j in ("health-probe", "config-backup", "restore-verify", "report", "backup-copy")])}
    at = dt.datetime.now(dt.UTC)
    first = scheduler.run({}, env, Deadline(50))
    assert sorted(d["name"] for d in first["dispatched"]) == ["db-backup/odoo", "db-backup/superset"]
    whisk.wait_idle(120)
    second = scheduler.run({}, env, Deadline(50), clock=lambda: at + dt.timedelta(minutes=1))
    assert sorted((w["name"], w["state"]) for w in second["watched"]) == [("db-backup/odoo", "succeeded"),
                                                                        ("db-backup/superset", "succeeded")]
    assert [params(i) for i in sorted(whisk.invoked(), key=lambda i: i.params["database"])] == [
        {"database": "odoo"}, {"database": "superset"}]
    for name in ("odoo", "superset"):
        assert [k for k in keys(s3_client, bucket, f"db/{name}/") if k.endswith(".manifest.json")]


def test_the_scheduler_holds_the_only_trigger() -> None:
    import yaml

    project = yaml.safe_load((ROOT / "project.yml").read_text())
    triggers = [(f["name"], t) for p in project["packages"] for f in p["functions"] for t in f.get("triggers", [])]
    assert [(name, t["sourceDetails"]["cron"]) for name, t in triggers] == [("scheduler", "* * * * *")]
    assert Path(ROOT / "packages" / "dr" / "scheduler" / "__main__.py").exists()
    assert schedule.JOBS == ("health-probe", "db-backup", "config-backup", "snapshot-rotate", "restore-verify", "report",
                             "backup-copy")


def test_health_probe_counts_failed_jobs_and_a_silent_scheduler(env: dict[str, str], whisk: FakeWhisk) -> None:
    from drkit.functions import health_probe

    env = dict(env, DRKIT_SCHEDULE=json.dumps([{"job": "health-probe", "enabled": False},
                                                {"job": "restore-verify", "enabled": False},
                                                {"job": "report", "enabled": False}, {"job": "backup-copy", "enabled": False}]))
    whisk.outcomes["db-backup"] = "failed"
    at = DAY.replace(hour=4, minute=10)
    tick(env, at)
    whisk.wait_idle()
    tick(env, at + dt.timedelta(minutes=1))
    port = int(whisk.host.rsplit(":", 1)[1])
    probe_env = {k: v for k, v in env.items() if k != "DRKIT_DATABASES"} | {"DRKIT_PROBES": json.dumps(
        [{"name": "functions-api", "type": "tcp", "host": "127.0.0.1", "port": port}])}

    def targets(when: dt.datetime) -> dict[str, dict[str, Any]]:
        result = health_probe.run({}, probe_env, Deadline(50), clock=lambda: when)
        return {t["name"]: t for t in result["targets"]}

    now = targets(at + dt.timedelta(minutes=2))
    assert now["scheduler"]["ok"] and now["schedule:config-backup"]["ok"]
    assert not now["schedule:db-backup/odoo"]["ok"] and "injected failure" in now["schedule:db-backup/odoo"]["detail"]
    later = targets(at + dt.timedelta(minutes=30))  # no tick for 29 minutes
    assert not later["scheduler"]["ok"] and "the scheduler is silent" in later["scheduler"]["detail"]


def test_the_cli_shows_the_schedule_and_runs_a_job_now(env: dict[str, str], whisk: FakeWhisk, tmp_path: Path,
                                                       capsys: pytest.CaptureFixture[str]) -> None:
    from drkit.cli import main

    env_file = tmp_path / ".env"
    env_file.write_text("".join(f"{k}={v}\n" for k, v in env.items()))
    argv = ["--env-file", str(env_file)]
    assert main.main([*argv, "schedule", "status"]) == 2  # nothing ticked yet: says so
    assert "the scheduler has not ticked yet" in capsys.readouterr().err
    assert main.main([*argv, "schedule", "run", "db-backup", "--db", "odoo"]) == 0
    assert [params(i) for i in whisk.invoked()] == [{"database": "odoo"}]
    whisk.wait_idle()
    capsys.readouterr()
    code = main.main([*argv, "schedule", "status"])
    out = capsys.readouterr().out
    assert "last tick" in out and "db-backup" in out and "odoo" in out and "dispatched" in out
    assert code == 0


def test_each_backup_slot_is_followed_by_one_copy_and_a_failed_copy_is_alerted_once(env: dict[str, str],
                                                                                     whisk: FakeWhisk) -> None:
    """db-backup's success starts backup-copy at once (both databases' successes claim the same run); a copy
    that fails is alerted once, and the next backup's copy resolves it."""
    env = dict(env, DRKIT_SNAPSHOT_POLICIES="", DRKIT_SCHEDULE=json.dumps(
        [{"job": j, "enabled": False} for j in ("health-probe", "config-backup", "restore-verify", "report")]))
    at = DAY.replace(hour=1, minute=7)
    tick(env, at)  # the backups of 01:07 start (and the copy's catch-up slot of 00:37)
    whisk.wait_idle()
    assert len(whisk.invoked("backup-copy")) == 1
    whisk.outcomes["backup-copy"] = "failed"
    after = tick(env, at + dt.timedelta(minutes=3))  # both backups succeeded: one copy for the slot
    assert [d["name"] for d in after["dispatched"]] == ["backup-copy"]
    assert after["dispatched"][0]["slot"] == at.isoformat()
    whisk.wait_idle()
    assert len(whisk.invoked("backup-copy")) == 2
    failed = tick(env, at + dt.timedelta(minutes=6))
    assert [(w["name"], w["state"]) for w in failed["watched"]] == [("backup-copy", "failed")] and failed["alerts"] == 1
    assert tick(env, at + dt.timedelta(minutes=9))["alerts"] == 0  # once
    whisk.outcomes["backup-copy"] = "succeeded"
    tick(env, at + dt.timedelta(hours=1))  # the 02:07 backups
    whisk.wait_idle()
    tick(env, at + dt.timedelta(hours=1, minutes=3))  # their copy
    whisk.wait_idle()
    resolved = tick(env, at + dt.timedelta(hours=1, minutes=6))
    assert ("backup-copy", "succeeded") in [(w["name"], w["state"]) for w in resolved["watched"]]
    assert resolved["resolved"] >= 1, resolved
