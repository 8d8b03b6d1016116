"""dns-failover against a spec-checked fake DO API (HTTPS on 127.0.0.1) and the real S3 server."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from conftest import keys
from drkit.functions import dns_failover
from drkit.platform.runtime import handle_web
from drkit_dev.fakedo import FakeDO
from drkit_dev.probeservers import Behaviour, serve, stop
from drkit_dev.s3server import S3Server
from support.faultproxy import FaultProxy
from support.records import content

BEARER = "alertmanager-Token-0123456789"
HMAC_SECRET = "drkit-Signing-Secret-0123456789"
GRAFANA_SECRET = "grafana-Signing-Secret-0123456789"


@pytest.fixture
def fake() -> Iterator[FakeDO]:
    f = FakeDO().start()
    f.add_record("example.net", "A", "erp", "203.0.113.10", 60)
    f.add_record("example.net", "A", "bi", "203.0.113.11", 60)
    f.add_record("example.net", "TXT", "erp", "unrelated", 3600)
    f.droplets |= {1111, 2222}
    f.reserved_ips["203.0.113.50"] = {"ip": "203.0.113.50", "droplet": {"id": 1111}, "region": {"slug": "fra1"}}
    f.apps["app-1"] = []
    yield f
    f.stop()
    assert f.violations == [], f.violations  # every request the fake received matched the DO API spec


@pytest.fixture
def dr_site() -> Iterator[Behaviour]:
    b = Behaviour()
    server, port = serve(b)
    b.port = port  # type: ignore[attr-defined]
    yield b
    stop(server)


def plan(dr_site: Behaviour, **extra: Any) -> str:
    port = dr_site.port  # type: ignore[attr-defined]
    return json.dumps({
        "sites": ["primary", "dr"],
        "records": [
            {"domain": "example.net", "name": "erp", "type": "A", "ttl": 60,
             "values": {"primary": "203.0.113.10", "dr": "198.51.100.20"}},
            {"domain": "example.net", "name": "bi", "type": "A", "ttl": 60,
             "values": {"primary": "203.0.113.11", "dr": "198.51.100.21"}}],
        "reserved_ips": [{"ip": "203.0.113.50", "droplets": {"primary": 1111, "dr": 2222}}],
        "apps": [{"id": "app-1", "redeploy_on": ["dr"]}],
        "health": {"dr": f"http://127.0.0.1:{port}/health"},
        "trigger": {"labels": {"alertname": "PrimarySiteDown"}},
        "min_hold": "30m", **extra})


@pytest.fixture
def env(make_env: Any, fake: FakeDO, dr_site: Behaviour) -> dict[str, str]:
    e = make_env({})
    e.pop("DRKIT_DATABASES")
    e.update({"DRKIT_DO_TOKEN": fake.token, "DRKIT_DO_ENDPOINT": fake.endpoint, "DRKIT_DO_CA_FILE": fake.ca_file,
              "DRKIT_FAILOVER_PLAN": plan(dr_site), "DRKIT_WEBHOOK_BEARER": BEARER,
              "DRKIT_WEBHOOK_HMAC": f"old-Secret-Rotated-0000 {HMAC_SECRET}", "DRKIT_GRAFANA_HMAC": GRAFANA_SECRET,
              "DRKIT_GRAFANA_TIMESTAMP_HEADER": "X-Grafana-Alerting-Timestamp"})
    return e


def invoke(env: dict[str, str], **params: Any) -> dict[str, Any]:
    return handle_web("dns-failover", dns_failover.run_web, dns_failover.run, params, None, env)


def web(env: dict[str, str], body: bytes, headers: dict[str, str], method: str = "POST", b64: bool = False) -> tuple[int, dict[str, Any]]:
    http = {"method": method, "headers": headers, "path": "",
            "body": base64.b64encode(body).decode() if b64 else body.decode(), "isBase64Encoded": b64}
    reply = handle_web("dns-failover", dns_failover.run_web, dns_failover.run, {"http": http}, None, env)
    return reply["statusCode"], reply["body"]


def alert_batch(status: str = "firing", name: str = "PrimarySiteDown", fingerprint: str = "abc123") -> bytes:
    """An Alertmanager (v0.27) webhook delivery, every field it sends."""
    labels = {"alertname": name, "site": "primary"}
    return json.dumps({
        "receiver": "drkit", "status": status,
        "alerts": [{"status": status, "labels": labels, "annotations": {"summary": "primary site down"},
                    "startsAt": "2026-11-26T03:00:00Z",
                    "endsAt": "2026-11-26T03:10:00Z" if status == "resolved" else "0001-01-01T00:00:00Z",
                    "generatorURL": "http://prometheus:9090/graph?g0.expr=up", "fingerprint": fingerprint}],
        "groupLabels": {"alertname": name}, "commonLabels": labels, "commonAnnotations": {"summary": "primary site down"},
        "externalURL": "http://alertmanager:9093", "version": "4", "groupKey": f'{{}}:{{alertname="{name}"}}',
        "truncatedAlerts": 0}).encode()


def signed(body: bytes, secret: str = HMAC_SECRET, ts: float | None = None) -> dict[str, str]:
    stamp = str(int(ts if ts is not None else time.time()))
    mac = hmac.new(secret.encode(), stamp.encode() + b"." + body, hashlib.sha256).hexdigest()
    return {"Content-Type": "application/json", "X-Drkit-Timestamp": stamp, "X-Drkit-Signature": f"sha256={mac}"}


def dns(fake: FakeDO) -> dict[str, str]:
    return {r["name"]: r["data"] for r in fake.records["example.net"] if r["type"] == "A"}


def test_operator_status_dry_run_drill_failover_failback(env: dict[str, str], fake: FakeDO, s3_client: Any,
                                                         bucket: str) -> None:
    r = invoke(env, action="status")
    assert r["ok"] and r["decision"].startswith("on primary since the start") and "DNS and IPs match" in r["decision"]
    r = invoke(env, action="failover", dry_run="true")
    assert r["status"] == "dry_run" and "A erp.example.net 203.0.113.10 -> 198.51.100.20 (ttl 60)" in r["decision"]
    r = invoke(env, action="drill")
    assert r["status"] == "dry_run" and len(r["changes"]) == 3
    assert fake.writes() == [] and dns(fake)["erp"] == "203.0.113.10"
    r = invoke(env, action="failover", reason="primary region outage")
    assert r["ok"] and r["status"] == "applied" and r["generation"] == 1
    assert dns(fake) == {"erp": "198.51.100.20", "bi": "198.51.100.21"}
    assert fake.reserved_ips["203.0.113.50"]["droplet"] == {"id": 2222} and len(fake.apps["app-1"]) == 1
    assert {r["data"] for r in fake.records["example.net"] if r["type"] == "TXT"} == {"unrelated"}
    writes = len(fake.writes())
    r = invoke(env, action="failover")
    assert r["status"] == "noop" and "already on dr" in r["decision"] and len(fake.writes()) == writes
    r = invoke(env, action="failback", reason="primary is back")
    assert r["status"] == "applied" and dns(fake)["erp"] == "203.0.113.10" and len(fake.apps["app-1"]) == 1
    state = content(s3_client, bucket, "state/failover.json")
    assert state["site"] == "primary" and state["generation"] == 2 and state["reason"] == "primary is back"
    actions = [k.split("-dns-failover-")[1].rsplit("-", 1)[0] for k in keys(s3_client, bucket, "audit/")]
    assert actions.count("failover.transition") == 2 and "failover.drill" in actions and "failover.dry_run" in actions


def test_unhealthy_dr_site_is_refused_unless_forced(env: dict[str, str], fake: FakeDO, dr_site: Behaviour) -> None:
    dr_site.health_status = 503
    r = invoke(env, action="failover")
    assert r["status"] == "refused" and "dr is not healthy" in r["decision"] and fake.writes() == []
    r = invoke(env, action="failover", force="true")
    assert r["status"] == "applied"


@pytest.mark.parametrize("headers, status, message", [
    ({}, 401, "no credentials"),
    ({"Authorization": "Bearer wrong-token-0123456789"}, 401, "unknown bearer token"),
    ({"Authorization": "Basic " + base64.b64encode(b"grafana:nope").decode()}, 401, "unknown user"),
    ({"Authorization": "Basic !!!"}, 401, "malformed Authorization"),
    ({"Authorization": "Basic " + base64.b64encode(b"no-colon").decode()}, 401, "malformed Basic"),
    ({"X-Drkit-Signature": "sha256=" + "0" * 64, "X-Drkit-Timestamp": "TS"}, 403, "signature does not match"),
    ({"X-Drkit-Signature": "md5=abc", "X-Drkit-Timestamp": "TS"}, 401, "malformed X-Drkit-Signature"),
    ({"X-Drkit-Signature": "sha256=" + "0" * 64}, 401, "missing X-Drkit-Timestamp"),
    ({"X-Grafana-Alerting-Signature": "0" * 64, "X-Grafana-Alerting-Timestamp": "TS"}, 403, "does not match"),
])
def test_refused_credentials_change_nothing(env: dict[str, str], fake: FakeDO, headers: dict[str, str], status: int,
                                            message: str, s3_client: Any, bucket: str) -> None:
    headers = {k: v.replace("TS", str(int(time.time()))) for k, v in headers.items()}
    code, body = web(env, alert_batch(), headers)
    assert code == status and message in body["error"]
    assert fake.requests == [] and keys(s3_client, bucket, "state/") == []
    assert BEARER not in json.dumps(body) and HMAC_SECRET not in json.dumps(body)


def test_transport_errors(env: dict[str, str], fake: FakeDO) -> None:
    auth = {"Authorization": f"Bearer {BEARER}"}
    assert web(env, alert_batch(), auth, method="GET")[0] == 405
    assert web(env, b"{" + b" " * (1 << 20) + b"}", auth)[0] == 413
    code, body = web(env, b"{not json", auth)
    assert code == 400 and "not JSON" in body["error"]
    code, body = web(env, json.dumps({"hello": 1}).encode(), auth)
    assert code == 400 and "unrecognised payload" in body["error"]
    code, body = web(env, json.dumps({"action": "failover"}).encode(), auth)
    assert code == 403 and "commands must be signed" in body["error"]
    reply = handle_web("dns-failover", dns_failover.run_web, dns_failover.run,
                       {"http": {"method": "POST", "headers": auth, "body": "***", "isBase64Encoded": True}}, None, env)
    assert reply["statusCode"] == 400
    assert fake.requests == []


def test_stale_and_future_timestamps_are_refused(env: dict[str, str], fake: FakeDO) -> None:
    body = json.dumps({"action": "failover"}).encode()
    for skew in (-400, 400):
        code, reply = web(env, body, signed(body, ts=time.time() + skew))
        assert code == 403 and "outside ±300s" in reply["error"]
    assert fake.requests == []


def test_alertmanager_failover_replay_and_resolved(env: dict[str, str], fake: FakeDO) -> None:
    auth = {"Authorization": f"Bearer {BEARER}", "Content-Type": "application/json"}
    t0 = time.monotonic()
    code, body = web(env, alert_batch(), auth, b64=True)
    assert time.monotonic() - t0 < 10  # the web path answers well under DO's 30 s
    assert code == 200 and body["outcome"] == "applied" and dns(fake)["erp"] == "198.51.100.20"
    writes = len(fake.writes())
    code, body = web(env, alert_batch(), auth)
    assert code == 200 and body["duplicate"] and len(fake.writes()) == writes
    code, body = web(env, alert_batch(status="resolved"), auth)
    assert code == 200 and "resolved alerts never fail back" in body["decision"] and dns(fake)["erp"] == "198.51.100.20"
    code, body = web(env, alert_batch(name="DiskAlmostFull", fingerprint="x"), auth)
    assert code == 200 and "no firing alert matches" in body["decision"]


def test_grafana_hmac_and_signed_commands_with_rotated_secrets(env: dict[str, str], fake: FakeDO) -> None:
    body = alert_batch()
    grafana = json.loads(body) | {"orgId": 1, "version": "1"}
    raw = json.dumps(grafana).encode()
    ts = str(int(time.time()))
    mac = hmac.new(GRAFANA_SECRET.encode(), ts.encode() + b":" + raw, hashlib.sha256).hexdigest()
    code, reply = web(env, raw, {"X-Grafana-Alerting-Signature": mac, "X-Grafana-Alerting-Timestamp": ts})
    assert code == 200 and reply["outcome"] == "applied"
    command = json.dumps({"action": "failback", "reason": "drill over"}).encode()
    code, reply = web(env, command, signed(command, secret="old-Secret-Rotated-0000"))  # the older secret still works
    assert code == 200 and reply["outcome"] == "applied" and dns(fake)["erp"] == "203.0.113.10"


def test_flap_guard_and_no_automatic_failback(env: dict[str, str], fake: FakeDO) -> None:
    auth = {"Authorization": f"Bearer {BEARER}"}
    assert web(env, alert_batch(fingerprint="one"), auth)[1]["outcome"] == "applied"
    assert invoke(env, action="failback")["status"] == "applied"  # operators may always move
    code, body = web(env, alert_batch(fingerprint="two"), auth)
    assert code == 200 and "flap guard" in body["decision"] and dns(fake)["erp"] == "203.0.113.10"


def test_fifty_concurrent_identical_webhooks_make_one_transition(env: dict[str, str], fake: FakeDO, s3_client: Any,
                                                                 bucket: str) -> None:
    auth = {"Authorization": f"Bearer {BEARER}"}
    body = alert_batch()
    codes: list[int] = []
    threads = [threading.Thread(target=lambda: codes.append(web(env, body, auth)[0])) for _ in range(50)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(set(codes)) <= [200, 202] and len(codes) == 50
    patches = [r for r in fake.writes() if r[0] == "PATCH"]
    assert len(patches) == 2  # erp and bi: one set of DNS writes
    assert len([r for r in fake.writes() if "/reserved_ips/" in r[1]]) == 1 and len(fake.apps["app-1"]) == 1
    assert keys(s3_client, bucket, "state/failover/") == ["state/failover/generation-000001.json"]


def test_without_conditional_writes_duplicates_are_harmless(env: dict[str, str], fake: FakeDO,
                                                            s3_server: S3Server) -> None:
    proxy = FaultProxy(s3_server.endpoint, strip_headers=("if-none-match",)).start()
    try:
        e = dict(env, DRKIT_SPACES_ENDPOINT=proxy.endpoint)
        from drkit.platform.config import spaces_from_env
        from drkit.storage.store import Store

        assert Store(spaces_from_env(e)).conditional_writes() is False  # detected
        auth = {"Authorization": f"Bearer {BEARER}"}
        results: list[int] = []
        threads = [threading.Thread(target=lambda: results.append(web(e, alert_batch(), auth)[0])) for _ in range(10)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    finally:
        proxy.stop()
    assert set(results) <= {200, 202}
    assert dns(fake) == {"erp": "198.51.100.20", "bi": "198.51.100.21"}  # the same outcome, however many ran
    assert fake.reserved_ips["203.0.113.50"]["droplet"] == {"id": 2222}


def test_do_api_429_and_5xx_mid_failover_then_recovery(env: dict[str, str], fake: FakeDO, dr_site: Behaviour) -> None:
    env = dict(env, DRKIT_FAILOVER_PLAN=plan(dr_site, min_hold="1s"))  # no flap guard in the way here
    fake.fail("GET", r"/records$", 429, times=1, retry_after=1)
    fake.fail("PATCH", r"/records/", 500, times=1)  # idempotent: retried
    r = invoke(env, action="failover")
    assert r["status"] == "applied" and dns(fake)["erp"] == "198.51.100.20"
    # now a persistent failure half-way: the failover is recorded, the rest is reported and finished later
    invoke(env, action="failback")
    time.sleep(1.1)
    fake.faults.clear()
    fake.fail("PATCH", r"/records/\d+$", 503, times=None)
    auth = {"Authorization": f"Bearer {BEARER}"}
    code, body = web(env, alert_batch(fingerprint="late"), auth)
    assert code == 500 and "NOT applied (next call retries)" in body["decision"]
    status = invoke(env, action="status")
    assert "MIXED" in status["decision"] and status["state"]["site"] == "dr"
    fake.faults.clear()
    code, body = web(env, alert_batch(fingerprint="late"), auth)  # Alertmanager's retry of the same delivery
    assert code == 200 and dns(fake) == {"erp": "198.51.100.20", "bi": "198.51.100.21"}
    assert "DNS and IPs match" in invoke(env, action="status")["decision"]


def test_post_5xx_is_not_retried_blindly(env: dict[str, str], fake: FakeDO) -> None:
    fake.fail("POST", r"/reserved_ips/.*/actions", 500, times=1)
    r = invoke(env, action="failover")
    assert r["status"] == "partial" and "HTTP 500" in r["decision"]
    assert len([x for x in fake.requests if x[0] == "POST" and "/reserved_ips/" in x[1]]) == 1
    r = invoke(env, action="failover")  # the next call finishes it
    assert r["status"] == "applied" and fake.reserved_ips["203.0.113.50"]["droplet"] == {"id": 2222}


def test_bad_plan_is_refused_before_any_call(env: dict[str, str], fake: FakeDO, dr_site: Behaviour) -> None:
    bad = json.loads(plan(dr_site))
    bad["records"][0]["ttl"] = 10
    bad["records"][1]["values"] = {"primary": "1.1.1.1"}
    r = invoke(dict(env, DRKIT_FAILOVER_PLAN=json.dumps(bad)), action="status")
    assert r["status"] == "invalid_config" and len(r["problems"]) == 2
    assert "at least 30" in r["problems"][0]
    assert fake.requests == []


def test_older_ow_event_shape_and_a_signed_plan_from_the_bucket(env: dict[str, str], fake: FakeDO, dr_site: Behaviour,
                                                                s3_client: Any, bucket: str, tmp_path: Path,
                                                                capsys: pytest.CaptureFixture[str]) -> None:
    """The plan in the bucket is believed only when a trusted key signed it (`drkit failover plan push`):
    anyone with the bucket key (every function, one of them a public endpoint) could write it."""
    from drkit.cli import main

    key = "config/failover-plan.json"
    e = {k: v for k, v in env.items() if k != "DRKIT_FAILOVER_PLAN"} | {"DRKIT_FAILOVER_PLAN_KEY": key}
    body = alert_batch()
    event = {"__ow_method": "post", "__ow_headers": {"authorization": f"Bearer {BEARER}"},
             "__ow_body": base64.b64encode(body).decode()}
    # an attacker's plan, planted: refused before any DNS change
    evil = json.loads(plan(dr_site))
    evil["records"][0]["values"]["dr"] = "192.0.2.66"
    s3_client.put_object(Bucket=bucket, Key=key, Body=json.dumps(evil).encode())
    reply = handle_web("dns-failover", dns_failover.run_web, dns_failover.run, event, None, e)
    assert reply["statusCode"] == 502 and "not signed by a trusted key" in reply["body"]["error"], reply
    assert fake.writes() == []
    # the operator's plan, checked, signed and pushed
    plan_file = tmp_path / "plan.json"
    plan_file.write_text(plan(dr_site))
    env_file = tmp_path / "op.env"
    env_file.write_text("".join(f"{k}={v}\n" for k, v in e.items() if "\n" not in v))
    assert main.main(["--env-file", str(env_file), "failover", "plan", "push", str(plan_file)]) == 0, capsys.readouterr()
    assert "signed and stored" in capsys.readouterr().out
    # ... and altered afterwards: one record added, the signature no longer matches
    data = json.loads(s3_client.get_object(Bucket=bucket, Key=key)["Body"].read())
    data["records"].append({**data["records"][0], "name": "www"})
    s3_client.put_object(Bucket=bucket, Key=key, Body=json.dumps(data).encode())
    reply = handle_web("dns-failover", dns_failover.run_web, dns_failover.run, event, None, e)
    assert reply["statusCode"] == 502 and "signature does not match" in reply["body"]["error"] and fake.writes() == []
    assert main.main(["--env-file", str(env_file), "failover", "plan", "push", str(plan_file)]) == 0
    capsys.readouterr()
    reply = handle_web("dns-failover", dns_failover.run_web, dns_failover.run, event, None, e)
    assert reply["statusCode"] == 200 and reply["body"]["outcome"] == "applied"
    assert dns(fake)["erp"] == "198.51.100.20"


def test_record_lists_are_read_past_the_first_page(fake: FakeDO) -> None:
    from drkit.core.secret import Secret
    from drkit.digitalocean.api import DoApi

    for i in range(450):
        fake.add_record("example.net", "TXT", f"t{i}", f"v{i}")
    api = DoApi(Secret(fake.token), endpoint=fake.endpoint, ca_file=fake.ca_file)
    records = api.list_records("example.net")
    assert len(records) == 453 and len({r["id"] for r in records}) == 453
    pages = [r for r in fake.requests if r[0] == "GET" and r[1].endswith("/records")]
    assert len(pages) == 3  # 200 + 200 + 53


def test_the_cli_shows_rehearses_and_moves_traffic_with_the_functions_rules(
        env: dict[str, str], fake: FakeDO, tmp_path: Path, capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    from drkit.cli import main

    env_file = tmp_path / ".env"
    env_file.write_text("".join(f"{k}={v}\n" for k, v in env.items()))
    run = ["--env-file", str(env_file), "failover"]
    assert main.main([*run, "status"]) == 0
    assert "on primary" in capsys.readouterr().out
    assert main.main([*run, "dry-run", "--reason", "rehearsal"]) == 0
    out = capsys.readouterr().out
    assert "dns A erp.example.net: 203.0.113.10 -> 198.51.100.20" in out and "(planned)" in out and fake.writes() == []
    monkeypatch.setattr("builtins.input", lambda prompt: "no")
    assert main.main([*run, "failover", "--reason", "region outage"]) == 1  # not confirmed: nothing moves
    assert fake.writes() == [] and "nothing changed" in capsys.readouterr().out
    assert main.main([*run, "failover", "--reason", "region outage", "--yes"]) == 0
    assert dns(fake)["erp"] == "198.51.100.20" and "(applied)" in capsys.readouterr().out
    assert main.main([*run, "failover", "--yes"]) == 0 and "already on dr" in capsys.readouterr().out
    assert main.main([*run, "failback", "--reason", "primary is back", "--yes", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["status"] == "applied" and dns(fake)["erp"] == "203.0.113.10"


def test_planted_failover_state_and_claims_move_nothing_and_block_nothing(env: dict[str, str], fake: FakeDO,
                                                                         dr_site: Behaviour, s3_client: Any,
                                                                         bucket: str) -> None:
    """An attacker with the bucket key: a planted `site: dr` moves no DNS (and skips no health check); a planted
    generation claim does not block a real, signed alert."""
    auth = {"Authorization": f"Bearer {BEARER}"}
    s3_client.put_object(Bucket=bucket, Key="state/failover.json", Body=json.dumps(
        {"site": "dr", "generation": 5, "since": "2026-11-01T00:00:00+00:00", "reason": "x", "who": "x"}).encode())
    dr_site.health_status = 500
    status = invoke(env, action="status")
    assert status["state"]["site"] == "primary" and "NOT BELIEVED" in status["decision"]
    code, body = web(env, alert_batch(fingerprint="one"), auth)
    assert code == 200 and body["outcome"] == "refused" and "not healthy" in body["decision"]
    assert dns(fake) == {"erp": "203.0.113.10", "bi": "203.0.113.11"} and fake.writes() == []
    dr_site.health_status = 200
    s3_client.put_object(Bucket=bucket, Key="state/failover/generation-000001.json", Body=json.dumps(
        {"site": "primary", "generation": 1}).encode())
    code, body = web(env, alert_batch(fingerprint="two"), auth)
    assert code == 200 and body["outcome"] == "applied", body
    assert dns(fake) == {"erp": "198.51.100.20", "bi": "198.51.100.21"}
    assert any("failover.claim.forged" in k for k in keys(s3_client, bucket, "audit/"))
    assert content(s3_client, bucket, "state/failover/generation-000001.json")["site"] == "dr"  # the real claim


def test_a_replayed_older_plan_is_refused(env: dict[str, str], fake: FakeDO, dr_site: Behaviour, s3_client: Any,
                                          bucket: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from drkit.cli import main

    key = "config/failover-plan.json"
    e = {k: v for k, v in env.items() if k != "DRKIT_FAILOVER_PLAN"} | {"DRKIT_FAILOVER_PLAN_KEY": key,
                                                                        "DRKIT_FAILOVER_PLAN": ""}
    env_file = tmp_path / "op.env"
    env_file.write_text("".join(f"{k}={v}\n" for k, v in e.items() if "\n" not in v and v))
    first, second = tmp_path / "v1.json", tmp_path / "v2.json"
    first.write_text(plan(dr_site, min_hold="1s"))
    newer = json.loads(plan(dr_site, min_hold="1s"))
    newer["records"][0]["values"]["dr"] = "198.51.100.99"  # the DR site moved; the old address is gone
    second.write_text(json.dumps(newer))
    assert main.main(["--env-file", str(env_file), "failover", "plan", "push", str(first)]) == 0
    old = {suffix: s3_client.get_object(Bucket=bucket, Key=key + suffix)["Body"].read() for suffix in ("", ".minisig")}
    assert main.main(["--env-file", str(env_file), "failover", "plan", "push", str(second)]) == 0
    assert "version 2" in capsys.readouterr().out
    assert invoke(e, action="failover")["status"] == "applied" and dns(fake)["erp"] == "198.51.100.99"
    time.sleep(1.1)
    assert invoke(e, action="failback")["status"] == "applied" and dns(fake)["erp"] == "203.0.113.10"
    for suffix, data in old.items():  # the attacker's replay: the older plan, with its own valid signature
        s3_client.put_object(Bucket=bucket, Key=key + suffix, Body=data)
    time.sleep(1.1)
    r = invoke(e, action="failover")
    assert r["status"] == "refused" and "older than version 2" in r["decision"], r
    assert dns(fake)["erp"] == "203.0.113.10"
    # an operator's push of an explicitly older version is refused before anything is written
    stale = tmp_path / "stale.json"
    stale.write_text(json.dumps(json.loads(plan(dr_site)) | {"version": 1}))
    assert main.main(["--env-file", str(env_file), "failover", "plan", "push", str(stale)]) == 2
    assert "is not newer than the plan in the bucket" in capsys.readouterr().err
