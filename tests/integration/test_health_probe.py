"""health-probe with real sockets on 127.0.0.1 and a real S3 server."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterator
from typing import Any

import pytest

from conftest import keys
from drkit.functions import db_backup, health_probe
from drkit.health import probe
from drkit.platform.runtime import handle
from drkit.policy import layout
from drkit_dev.pgserver import PgServer
from drkit_dev.probeservers import Behaviour, self_signed, serve, stop
from drkit_dev.s3server import free_port
from support.records import content, genuine_backup


@pytest.fixture
def web() -> Iterator[tuple[Behaviour, int]]:
    b = Behaviour()
    server, port = serve(b)
    yield b, port
    stop(server)


def one(target: dict[str, Any]) -> probe.Result:
    (t,) = probe.parse_targets(json.dumps([target]))
    return probe.run_all([t])[0]


def test_http_conditions(web: tuple[Behaviour, int]) -> None:
    b, port = web
    base = f"http://127.0.0.1:{port}"
    r = one({"name": "ok", "type": "http", "url": f"{base}/health", "body_contains": "UP",
             "json_path": "db.ok", "json_equals": True, "max_response_ms": 2000})
    assert r.ok and r.detail.startswith("HTTP 200") and r.metrics["http_status_code"] == 200
    r = one({"name": "wrong", "type": "http", "url": f"{base}/health", "json_path": "status", "json_equals": "DOWN"})
    assert not r.ok and "status is 'UP', expected 'DOWN'" in r.detail
    r = one({"name": "body", "type": "http", "url": f"{base}/health", "body_contains": "maintenance"})
    assert not r.ok and "does not contain" in r.detail
    b.health_status = 503
    r = one({"name": "down", "type": "http", "url": f"{base}/health"})
    assert not r.ok and "status 503 not in [200]" in r.detail
    assert one({"name": "any", "type": "http", "url": f"{base}/health", "status": [200, 503]}).ok
    r = one({"name": "hdr", "type": "http", "url": f"{base}/needs-header", "headers": {"X-Probe": "yes"}})
    assert r.ok
    assert not one({"name": "nohdr", "type": "http", "url": f"{base}/needs-header"}).ok


def test_http_redirects_slowness_and_refusal(web: tuple[Behaviour, int]) -> None:
    _, port = web
    base = f"http://127.0.0.1:{port}"
    r = one({"name": "redir", "type": "http", "url": f"{base}/redirect"})
    assert r.ok and r.metrics["redirects"] == 1
    r = one({"name": "noredir", "type": "http", "url": f"{base}/redirect", "follow_redirects": False})
    assert not r.ok and "302" in r.detail
    r = one({"name": "loop", "type": "http", "url": f"{base}/loop", "max_redirects": 4})
    assert not r.ok and "more than 4 redirects" in r.detail
    r = one({"name": "slow", "type": "http", "url": f"{base}/slow", "timeout_s": 0.5})
    assert not r.ok and "ReadTimeout" in r.detail  # the answer (after 2 s) was not waited for
    r = one({"name": "refused", "type": "http", "url": f"http://127.0.0.1:{free_port()}/"})
    assert not r.ok and "ConnectionError" in r.detail
    r = one({"name": "tcp-refused", "type": "tcp", "host": "127.0.0.1", "port": free_port()})
    assert not r.ok and "refused" in r.detail.lower()
    assert one({"name": "tcp", "type": "tcp", "host": "127.0.0.1", "port": port}).ok


@pytest.mark.parametrize("days, ok, warned", [(60, True, False), (10, True, True), (3, False, False)])
def test_tls_days_left(days: int, ok: bool, warned: bool) -> None:
    ctx, pem = self_signed(days)
    server, port = serve(Behaviour(), ctx)
    try:
        r = one({"name": "cert", "type": "tls", "host": "localhost", "port": port, "ca_pem": pem,
                 "warn_days": 21, "fail_days": 7})
        assert r.ok is ok and (r.warning is not None) is warned, r
        assert abs(r.metrics["tls_days_left"] - days) < 0.1
        https = one({"name": "https", "type": "http", "url": f"https://localhost:{port}/health", "ca_pem": pem})
        assert https.ok
    finally:
        stop(server)


def test_tls_untrusted_and_expired_certificates_fail() -> None:
    ctx, pem = self_signed(-1)
    server, port = serve(Behaviour(), ctx)
    try:
        r = one({"name": "expired", "type": "tls", "host": "localhost", "port": port, "ca_pem": pem})
        assert not r.ok and "expired" in r.detail
        _, other_pem = self_signed(30)
        r = one({"name": "untrusted", "type": "tls", "host": "localhost", "port": port, "ca_pem": other_pem})
        assert not r.ok and "certificate verify failed" in r.detail
        r = one({"name": "insecure", "type": "http", "url": f"https://localhost:{port}/health", "tls_verify": False})
        assert r.ok
    finally:
        stop(server)


def test_dns() -> None:
    r = one({"name": "localhost", "type": "dns", "host": "localhost", "family": "ipv4", "expect": ["127.0.0.1"]})
    assert r.ok, r
    r = one({"name": "moved", "type": "dns", "host": "localhost", "family": "ipv4", "expect": ["203.0.113.7"]})
    assert not r.ok and "expected 203.0.113.7" in r.detail
    r = one({"name": "nx", "type": "dns", "host": "does-not-exist.invalid", "timeout_s": 3})
    assert not r.ok


def test_targets_are_probed_concurrently(web: tuple[Behaviour, int]) -> None:
    b, port = web
    b.delay_s = 1.0
    targets = probe.parse_targets(json.dumps([{"name": f"t{i}", "type": "http", "url": f"http://127.0.0.1:{port}/health"}
                                              for i in range(20)]))
    results = probe.run_all(targets)
    assert all(r.ok for r in results) and [r.name for r in results] == [f"t{i}" for i in range(20)]
    # the requests overlapped (sequential probing would show 1; wall-time figures: scripts/bench_probe)
    assert b.max_in_flight >= 15


@pytest.fixture
def health_env(make_env: Any, web: tuple[Behaviour, int]) -> Any:
    _, port = web

    def make(targets: list[dict[str, Any]] | None = None, **extra: str) -> dict[str, str]:
        env = make_env({})
        env.pop("DRKIT_DATABASES")
        env["DRKIT_PROBES"] = json.dumps(targets if targets is not None else [
            {"name": "erp", "type": "http", "url": f"http://127.0.0.1:{port}/health", "failover": True}])
        env.update(extra)
        return env

    return make


def probe_run(env: dict[str, str], **params: Any) -> dict[str, Any]:
    return handle("health-probe", health_probe.run, params, None, env)


def test_transitions_across_invocations_alert_once(health_env: Any, web: tuple[Behaviour, int], s3_client: Any,
                                                   bucket: str) -> None:
    b, _ = web
    env = health_env()
    assert probe_run(env)["healthy"]
    b.health_status = 500
    r1, r2, r3, r4 = (probe_run(env) for _ in range(4))
    assert r1["healthy"] and r2["healthy"] and not r1["changed"] and not r2["changed"]  # below the threshold
    assert r3["ok"] and not r3["healthy"] and "error" not in r3 and r3["changed"] == [{"target": "erp", "type": "http", "event": "down",
                                               "detail": "status 500 not in [200]"}]
    assert r3["failover"]["requested_for"] == ["erp"] and r3["failover"]["performed"] is False
    assert not r4["changed"] and "erp since" in r4["decision"]  # no repeated alert
    b.health_status = 200
    r5, r6 = probe_run(env), probe_run(env)
    assert not r5["changed"] and r6["changed"][0]["event"] == "recovered" and r6["healthy"]
    status = content(s3_client, bucket, "status/health.json")
    assert status["healthy"] == ["erp"] and status["targets"][0]["status"] == "healthy"
    prom = content(s3_client, bucket, "status/health.prom")["text"]
    assert 'drkit_probe_healthy{target="erp",type="http"} 1' in prom
    assert any("failover.requested" in k for k in keys(s3_client, bucket, "audit/"))


def test_prometheus_format_and_hostile_config(health_env: Any, web: tuple[Behaviour, int], s3_client: Any,
                                              bucket: str) -> None:
    b, port = web
    r = probe_run(health_env(), format="prometheus")
    assert r["ok"] and r["prometheus"].startswith("# HELP drkit_probe_success")
    before = b.requests
    bad = health_env([{"name": "erp", "type": "http", "url": f"http://127.0.0.1:{port}/health", "timeout_s": -5},
                      {"name": "x", "type": "http", "url": "not-a-url"},
                      {"name": "y", "type": "http", "url": f"http://127.0.0.1:{port}/", "expect_status": 200}])
    r = probe_run(bad)
    assert r["status"] == "invalid_config" and len(r["problems"]) == 3
    assert "unknown key 'expect_status'" in " ".join(r["problems"])
    assert b.requests == before  # nothing was probed
    assert probe_run(health_env(), format="xml")["status"] == "invalid_config"


def test_backup_freshness_from_the_bucket(health_env: Any, pg: PgServer, dbname: str, make_env: Any,
                                          s3_client: Any, bucket: str) -> None:
    env = health_env([], DRKIT_DATABASES="fresh,stale,none,failing",
                     DRKIT_DB_FRESH_URL=pg.url(dbname), DRKIT_DB_FAILING_URL=pg.url(dbname, password="bad-pw-1234"))
    pg.execute("CREATE TABLE t AS SELECT 1 AS x", dbname)
    backup_env = dict(env, DRKIT_DATABASES="fresh,failing")
    handle("db-backup", db_backup.run, {}, None, backup_env)  # fresh: ok; failing: a failed run
    genuine_backup(env, "stale", layout.new_id(dt.datetime.now(dt.UTC) - dt.timedelta(hours=5)))
    results = {t["name"]: t for t in probe_run(env)["targets"]}
    assert results["backup-age:fresh"]["ok"] and results["backup-failures:fresh"]["ok"]
    assert not results["backup-age:stale"]["ok"] and "5.0 h old (RPO limit 75 min)" in results["backup-age:stale"]["detail"]
    assert not results["backup-age:none"]["ok"] and "no complete backup" in results["backup-age:none"]["detail"]
    assert not results["backup-failures:failing"]["ok"]
    assert "password authentication failed" in results["backup-failures:failing"]["detail"]
    assert "bad-pw-1234" not in json.dumps(results)
    assert not results["verify-age:fresh"]["ok"] and "no passed restore verification" in results["verify-age:fresh"]["detail"]
    # thresholds apply to data-protection probes too: the third run turns them unhealthy, once
    probe_run(env)
    third = probe_run(env)
    assert {"backup-age:stale", "backup-age:none", "backup-failures:failing"} <= set(third["down"])
    per_db = {e["target"] for e in third["changed"] if e["event"] == "down"}
    assert "backup-age:stale" in per_db and "backup-age:fresh" not in per_db


def test_automatic_failover_runs_dns_failover_in_process(health_env: Any, web: tuple[Behaviour, int]) -> None:
    from drkit_dev.fakedo import FakeDO

    b, port = web
    fake = FakeDO().start()
    try:
        fake.add_record("example.net", "A", "erp", "203.0.113.10", 60)
        dr = Behaviour()
        dr_server, dr_port = serve(dr)
        failover_env = {"DRKIT_DO_TOKEN": fake.token, "DRKIT_DO_ENDPOINT": fake.endpoint,
                        "DRKIT_DO_CA_FILE": fake.ca_file, "DRKIT_FAILOVER_PLAN": json.dumps({
                            "sites": ["primary", "dr"], "health": {"dr": f"http://127.0.0.1:{dr_port}/health"},
                            "records": [{"domain": "example.net", "name": "erp", "type": "A", "ttl": 60,
                                         "values": {"primary": "203.0.113.10", "dr": "198.51.100.20"}}]})}
        off = health_env(**failover_env)
        b.health_status = 500
        results = [probe_run(off) for _ in range(3)]
        assert results[2]["failover"]["performed"] is False and "DRKIT_AUTO_FAILOVER" in results[2]["failover"]["reason"]
        assert fake.records["example.net"][0]["data"] == "203.0.113.10"
        b.health_status = 200
        probe_run(off), probe_run(off)  # recovered
        on = health_env(DRKIT_AUTO_FAILOVER="true", **failover_env)
        b.health_status = 500
        results = [probe_run(on) for _ in range(3)]
        assert results[2]["failover"]["performed"] is True, results[2]["failover"]
        assert fake.records["example.net"][0]["data"] == "198.51.100.20" and fake.violations == []
        stop(dr_server)
    finally:
        fake.stop()
