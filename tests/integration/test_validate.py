"""`drkit validate`: the recovery validation checklist on the stand-ins (a database with its backup, an HTTP probe,
two DNS resolvers on loopback, the scheduler's status), passing, then failing for each reason it names."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterator
from typing import Any

import pytest

from conftest import keys
from drkit.functions import db_backup
from drkit.platform.runtime import handle
from drkit.storage import jobs, records
from drkit_dev import probeservers
from drkit_dev.fakedns import FakeDns
from drkit_dev.keys import store_of
from drkit_dev.pgserver import PgServer
from support.clirun import cli_with_env
from support.records import content

PLAN = {"sites": ["primary", "dr"], "records": [{"domain": "example.net", "name": "erp", "type": "A", "ttl": 60,
                                                 "values": {"primary": "203.0.113.10", "dr": "198.51.100.20"}}]}


@pytest.fixture
def resolvers() -> Iterator[tuple[FakeDns, FakeDns]]:
    with FakeDns() as a, FakeDns() as b:
        for r in (a, b):
            r.answers[("erp.example.net", "A")] = ["203.0.113.10"]
        yield a, b


@pytest.fixture
def env(make_env: Any, pg: PgServer, dbname: str, age_keys: tuple[str, str]) -> Iterator[dict[str, str]]:
    pg.execute("CREATE TABLE orders AS SELECT g AS id FROM generate_series(1, 50) g", dbname)
    server, port = probeservers.serve(probeservers.Behaviour())
    out: dict[str, str] = make_env(
        {"odoo": pg.url(dbname)}, DRKIT_DB_ODOO_COUNT_TABLES="*",
        DRKIT_DB_ODOO_CHECKS=json.dumps([{"name": "orders exist", "sql": "SELECT count(*) FROM orders",
                                          "expect": "> 0"}]),
        DRKIT_PROBES=json.dumps([{"name": "erp-web", "type": "http", "url": f"http://127.0.0.1:{port}/health"}]),
        DRKIT_FAILOVER_PLAN=json.dumps(PLAN))
    assert handle("db-backup", db_backup.run, {}, None, out)["ok"]
    now = dt.datetime.now(dt.UTC)
    records.write(store_of(out, "scheduler"), jobs.KEY, jobs.ScheduleStatus(now, now, "dispatched 1"), now)
    yield out
    probeservers.stop(server)


def validate(env: dict[str, str], capsys: pytest.CaptureFixture[str], resolvers: tuple[FakeDns, FakeDns]
             ) -> tuple[int, str, dict[str, str]]:
    """Exit code, the words printed, and each check's `PASS|FAIL evidence` from the --json run."""
    argv = ("validate", "--resolver", resolvers[0].address, "--resolver", resolvers[1].address)
    code, out = cli_with_env(env, capsys, *argv)
    _, raw = cli_with_env(env, capsys, *argv, "--json")
    checks = {c["check"]: ("PASS " if c["ok"] else "FAIL ") + c["detail"] for c in json.loads(raw)["checks"]}
    return code, out, checks


def test_a_recovery_that_works_passes_every_automatic_check_and_lists_the_rest(
        env: dict[str, str], resolvers: tuple[FakeDns, FakeDns], capsys: pytest.CaptureFixture[str],
        s3_client: Any, bucket: str) -> None:
    code, out, checks = validate(env, capsys, resolvers)
    assert code == 0 and "every automatic check passed" in out and "FAIL" not in out, out
    assert checks["odoo: connects"].startswith("PASS PostgreSQL") and checks["odoo: orders exist"].startswith("PASS")
    assert "none with fewer rows than backup" in checks["odoo: tables of the newest backup"]
    assert checks["erp-web"].startswith("PASS") and checks["scheduler ticks"].startswith("PASS last tick")
    assert checks["erp.example.net A on primary"].startswith("PASS every resolver")
    assert checks["odoo: newest backup within RPO"].startswith("PASS taken")
    assert "[ ] a real user logs in" in out  # what only a person can check
    assert resolvers[0].queries and resolvers[1].queries  # both were asked
    events = [content(s3_client, bucket, k) for k in keys(s3_client, bucket, "audit/") if "recovery.validated" in k]
    assert len(events) == 2 and all(e["details"]["failed"] == 0 and e["details"]["passed"] == 9 for e in events)


def test_each_failure_is_named_and_the_exit_code_says_not_done(
        env: dict[str, str], resolvers: tuple[FakeDns, FakeDns], pg: PgServer, dbname: str,
        capsys: pytest.CaptureFixture[str]) -> None:
    resolvers[1].answers[("erp.example.net", "A")] = ["198.51.100.20"]  # one resolver still has the old answer
    pg.execute("DROP TABLE orders", dbname)
    old = dt.datetime.now(dt.UTC) - dt.timedelta(hours=2)
    records.write(store_of(env, "scheduler"), jobs.KEY, jobs.ScheduleStatus(old, old, "dispatched 1"), old)
    env = dict(env, DRKIT_SCHEDULE=json.dumps([{"job": "db-backup", "enabled": False}]))
    code, out, checks = validate(env, capsys, resolvers)
    assert code == 1 and "automatic checks failed: the recovery is not done" in out, out
    assert checks["odoo: tables of the newest backup"] == "FAIL missing: public.orders"
    assert 'relation "orders" does not exist' in checks["odoo: orders exist"]
    assert checks["erp.example.net A on primary"].startswith(
        f"FAIL {resolvers[1].address} answers 198.51.100.20 (want 203.0.113.10")
    assert "silent; check its trigger" in checks["scheduler ticks"]
    assert checks["scheduled again"] == "FAIL switched off in DRKIT_SCHEDULE: db-backup odoo (re-enable them)"


def test_scenario_one_ends_with_validate_and_the_incident_record(
        env: dict[str, str], resolvers: tuple[FakeDns, FakeDns], pg: PgServer, dbname: str, tmp_path: Any,
        age_keys: tuple[str, str], capsys: pytest.CaptureFixture[str]) -> None:
    """Database loss, as the runbook rehearses it: detected by health-probe, a notice, the restore, the
    validation; then the record says when, how long against the RTO, how much data against the RPO, and who."""
    from drkit.functions import health_probe
    from drkit.health import notices
    from drkit.storage import audit

    start = dt.datetime.now(dt.UTC) - dt.timedelta(seconds=2)
    down = dict(env, DRKIT_PROBES=json.dumps([{"name": "erp-db", "type": "tcp", "host": "127.0.0.1", "port": 1,
                                               "failure_threshold": 1, "timeout_s": 1}]))
    assert not handle("health-probe", health_probe.run, {}, None, down)["healthy"]  # detected: a transition
    notices.post(store_of(env, "operator"), "Orders are unavailable", "we are restoring the database", "major",
                 who="cli:test", now=dt.datetime.now(dt.UTC))
    identity = tmp_path / "id.txt"
    identity.write_text(age_keys[0] + "\n")
    code, out = cli_with_env(env, capsys, "restore", "--db", "odoo", "--target", pg.url(f"{dbname}_new"),
                             "--identity", str(identity))
    assert code == 0, out
    code, out = cli_with_env(env, capsys, "validate", "--resolver", resolvers[0].address, "--resolver",
                             resolvers[1].address)
    assert code == 0, out
    # a record no one rightful signed: health-probe's key writing a restore
    audit.record(store_of(env, "health-probe"), "cli", "restore.completed", {"database": "odoo", "backup_id": "x"})
    code, out = cli_with_env(env, capsys, "incident", "record", "--since", start.isoformat(), "--scenario", "1",
                             "--title", "odoo lost", "--out", str(tmp_path / "incident.md"))
    assert code == 0, out
    text = (tmp_path / "incident.md").read_text()
    assert "# Post-incident record: odoo lost" in text and "scenario: Database loss (RTO 2 h 00 min)" in text
    assert "- **Detected**:" in text and "erp-db DOWN" in text
    assert "**within** the RTO of 2 h 00 min" in text
    assert "older than the incident's start (within the RPO of 1 h 00 min)" in text
    assert "status page: posted Orders are unavailable" in text and "restored odoo backup" in text
    assert "recovery validated: 9 automatic checks passed, 0 failed" in text
    assert "## Records not believed" in text and "restore.completed signed by health-probe" in text
    assert "People who acted" in text and "cli:" in text
    pg.drop_database(f"{dbname}_new")
