"""Alert webhooks, tried as a hostile sender would (issue 14): strict JSON, exact credentials, schemas,
the body limit, one conditional-write probe per warm process, and duplicates answered cheaply.

Each refusal is checked for its status, its one-line reason, and that nothing changed: no DigitalOcean
request, no state or audit object in the bucket.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from typing import Any

import pytest
from test_dns_failover import BEARER, GRAFANA_SECRET, alert_batch, dns, dr_site, env, fake, signed, web  # noqa: F401

from conftest import keys
from drkit.functions import dns_failover
from drkit.platform.runtime import handle_web
from drkit_dev.fakedo import FakeDO
from drkit_dev.s3server import S3Server
from support.faultproxy import FaultProxy

AUTH = {"Authorization": f"Bearer {BEARER}"}


def unchanged(fake: FakeDO, s3_client: Any, bucket: str) -> bool:
    return fake.requests == [] and keys(s3_client, bucket, "state/") == [] and keys(s3_client, bucket, "audit/") == []


def grafana(body: bytes, ts: str | None = None, prefix: str = "") -> dict[str, str]:
    stamp = ts if ts is not None else str(int(time.time()))
    mac = hmac.new(GRAFANA_SECRET.encode(), stamp.encode() + b":" + body, hashlib.sha256).hexdigest()
    return {"X-Grafana-Alerting-Signature": prefix + mac, "X-Grafana-Alerting-Timestamp": stamp}


def grafana_batch(**changes: Any) -> bytes:
    return json.dumps(json.loads(alert_batch()) | {"orgId": 1, "version": "1"} | changes).encode()


BATCH = alert_batch().decode()
DUPLICATE_STATUS = BATCH.replace('"status": "firing"', '"status": "resolved", "status": "firing"', 1)


@pytest.mark.parametrize("body, message", [
    (b"\xef\xbb\xbf" + BATCH.encode(), "byte-order mark"),
    (BATCH.replace('"truncatedAlerts": 0', '"truncatedAlerts": NaN').encode(), "NaN is not JSON"),
    (BATCH.replace('"truncatedAlerts": 0', '"truncatedAlerts": Infinity').encode(), "Infinity is not JSON"),
    (DUPLICATE_STATUS.encode(), "duplicate key 'status'"),
    (BATCH.replace('"receiver": "drkit"', '"receiver": "drkit", "x": {"status": 1, "status": 2}').encode(),
     "duplicate key 'status'"),  # at any depth
    (BATCH.replace('"drkit"', '"dr\\ud800kit"', 1).encode(), "lone surrogate"),
    (BATCH.encode().replace(b'"drkit"', b'"dr\xffkit"', 1), "not valid UTF-8"),
    (b"[" * 100_000 + b"]" * 100_000, "nested deeper than 32"),
    (BATCH.replace('"truncatedAlerts": 0', '"truncatedAlerts": ' + "[" * 5000 + "]" * 5000).encode(), "nested deeper"),
    (b"[1, 2]", "must be a JSON object"),
    (b"{not json", "not JSON"),
    (BATCH.replace('"alerts": [', '"alerts": [], "x": [', 1).encode(), "alerts is empty"),
    (BATCH.replace('"version": "4"', '"version": "3"').encode(), "neither Alertmanager's 4 nor Grafana's 1"),
    (BATCH.replace('"receiver": "drkit", ', "").encode(), "alertmanager has no 'receiver'"),
    (BATCH.replace('"status": "firing", "alerts"', '"status": "pending", "alerts"').encode(),
     "status must be firing or resolved"),
    (BATCH.replace('"site": "primary"', '"site": 1', 1).encode(), "alerts[0].labels must be an object of strings"),
    (BATCH.replace('"commonLabels": {', '"commonLabels": {"n": null, ', 1).encode(), "commonLabels must be an object of strings"),
    (BATCH.replace('"fingerprint": "abc123"', '"fingerprint": 123').encode(), "fingerprint must be a string"),
    (BATCH.replace('"truncatedAlerts": 0', '"truncatedAlerts": true').encode(), "truncatedAlerts must be an integer"),
])
def test_an_authenticated_body_that_is_not_one_unambiguous_delivery_is_a_400(
        env: dict[str, str], fake: FakeDO, s3_client: Any, bucket: str, body: bytes, message: str) -> None:
    code, reply = web(env, body, AUTH, b64=True)
    assert code == 400 and message in reply["error"], reply
    assert "\n" not in reply["error"] and "Traceback" not in json.dumps(reply)
    assert unchanged(fake, s3_client, bucket)


def test_the_same_batch_parsed_strictly_still_fails_over(env: dict[str, str], fake: FakeDO) -> None:
    """The control for the table above: unknown extra fields are allowed, the valid batch acts."""
    body = json.dumps(json.loads(alert_batch()) | {"futureField": {"any": ["thing"]}}).encode()
    code, reply = web(env, body, AUTH)
    assert code == 200 and reply["outcome"] == "applied", reply
    assert dns(fake)["erp"] == "198.51.100.20"


@pytest.mark.parametrize("make_headers, status, message", [
    (lambda b: grafana(b, prefix="sha256="), 401, "expected 64 lowercase hex digits"),
    (lambda b: {k: v.upper() if "Signature" in k else v for k, v in grafana(b).items()}, 401, "lowercase hex"),
    (lambda b: grafana(b, ts="nan"), 401, "whole Unix seconds"),
    (lambda b: grafana(b, ts=f"{int(time.time())}.5"), 401, "whole Unix seconds"),
    (lambda b: grafana(b, ts=f"+{int(time.time())}"), 401, "whole Unix seconds"),
    (lambda b: grafana(b, ts=f"{int(time.time())}e0"), 401, "whole Unix seconds"),
    (lambda b: grafana(b, ts=str(int(time.time()) - 301)), 403, "outside ±300s"),
    (lambda b: {**signed(b), "X-Drkit-Signature": signed(b)["X-Drkit-Signature"].upper()}, 401, "sha256=<64 lowercase"),
    (lambda b: {**signed(b), "X-Drkit-Signature": signed(b)["X-Drkit-Signature"][7:]}, 401, "sha256=<64 lowercase"),
    (lambda b: {**signed(b), "X-Drkit-Timestamp": "nan"}, 401, "whole Unix seconds"),
    (lambda b: {"Authorization": f"Bearer  {BEARER} extra"}, 401, "malformed Authorization"),
    (lambda b: {"Authorization": f"Bearer\t{BEARER}"}, 401, "malformed Authorization"),
    (lambda b: {"Authorization": "Bearer"}, 401, "malformed Authorization"),
    (lambda b: {"Authorization": f"Token {BEARER}"}, 401, "unsupported Authorization scheme"),
    (lambda b: {"Authorization": "Basic " + base64.b64encode("grafana:\udcff".encode(errors="surrogateescape")).decode()},
     401, "malformed Basic"),
])
def test_credentials_are_accepted_only_in_their_exact_format(
        env: dict[str, str], fake: FakeDO, s3_client: Any, bucket: str, make_headers: Any, status: int,
        message: str) -> None:
    body = grafana_batch()
    code, reply = web(env, body, make_headers(body))
    assert code == status and message in reply["error"], reply
    assert unchanged(fake, s3_client, bucket)


@pytest.mark.parametrize("scheme", ["Bearer", "bearer", "BEARER"])
def test_the_authorization_scheme_is_case_insensitive(env: dict[str, str], fake: FakeDO, scheme: str) -> None:
    code, reply = web(env, alert_batch(), {"Authorization": f"{scheme} {BEARER}"})
    assert code == 200 and reply["outcome"] == "applied"


def test_an_unauthenticated_malformed_body_is_a_401_not_a_400(env: dict[str, str], fake: FakeDO, s3_client: Any,
                                                              bucket: str) -> None:
    for body, headers, b64 in [(b"{not json", {}, False), (b"\xef\xbb\xbf{}", {}, True),
                               (b"[" * 100_000, {"Authorization": "Bearer wrong-token-0123456789"}, True),
                               (b"{}", {"X-Drkit-Signature": "sha256=" + "0" * 64,
                                        "X-Drkit-Timestamp": str(int(time.time()))}, False)]:
        code, reply = web(env, body, headers, b64=b64)
        assert code in (401, 403), (body[:20], reply)
    reply = handle_web("dns-failover", dns_failover.run_web, dns_failover.run,
                       {"http": {"method": "POST", "headers": {}, "body": "***", "isBase64Encoded": True}}, None, env)
    assert reply["statusCode"] == 401
    assert unchanged(fake, s3_client, bucket)


def test_the_body_limit_is_configurable_and_checked_before_the_body_is_read(
        env: dict[str, str], fake: FakeDO, s3_client: Any, bucket: str) -> None:
    batch = json.loads(alert_batch())
    batch["alerts"] = [dict(batch["alerts"][0], fingerprint=f"fp{i:05d}", annotations={"detail": "x" * 300})
                       for i in range(900)]
    big = json.dumps(batch).encode()
    assert 300 * 1024 < len(big) < 1024 * 1024  # over the old fixed 256 KiB, under the new default
    code, reply = web(dict(env, DRKIT_WEBHOOK_MAX_BODY="262144"), big, AUTH)
    assert code == 413 and "over the 262144 byte limit" in reply["error"]
    # a declared Content-Length over the limit is refused before anything is decoded or verified
    code, reply = web(env, b"{}", {**AUTH, "Content-Length": str(2 << 20)})
    assert code == 413
    assert unchanged(fake, s3_client, bucket)
    code, reply = web(dict(env, DRKIT_WEBHOOK_MAX_BODY="nonsense"), big, AUTH)
    assert code == 500 and "misconfigured" in reply["error"]
    code, reply = web(env, big, AUTH, b64=True)
    assert code == 200 and reply["outcome"] == "applied", reply


def test_duplicates_are_answered_from_the_idempotency_record_alone(
        env: dict[str, str], fake: FakeDO, s3_server: S3Server) -> None:
    """A replay reads its record and nothing else: not the plan, not the DO API; and the conditional-write
    capability is probed once per warm process, not per call."""
    from drkit.storage import signed as signed_objects
    from drkit.storage import store as store_module
    from drkit_dev.keys import store_of

    store_module._CONDITIONAL.clear()  # a cold process: the next call probes once
    proxy = FaultProxy(s3_server.endpoint).start()
    try:
        e = dict(env, DRKIT_SPACES_ENDPOINT=proxy.endpoint, DRKIT_FAILOVER_PLAN_KEY="plans/failover.json")
        signed_objects.put_bytes(store_of(e), "plans/failover.json", e.pop("DRKIT_FAILOVER_PLAN").encode())
        proxy.seen.clear()
        body = alert_batch()
        code, reply = web(e, body, AUTH)
        assert code == 200 and reply["outcome"] == "applied"
        first = list(proxy.seen)
        assert sum("conditional-probe" in r for r in first) == 3  # PUT, PUT (412), DELETE: once
        assert any("plans/failover.json" in r for r in first)
        do_requests = len(fake.requests)
        for _ in range(3):
            proxy.seen.clear()
            code, reply = web(e, body, AUTH)
            assert code == 200 and reply["duplicate"] is True
            assert [r.split(" ")[0] for r in proxy.seen] == ["PUT", "GET"], proxy.seen  # claim refused, record read
            assert all("state/idempotency/dns-failover/" in r for r in proxy.seen)
        assert len(fake.requests) == do_requests
        # a new delivery in the same warm process: no second probe
        proxy.seen.clear()
        code, reply = web(e, alert_batch(fingerprint="other"), AUTH)
        assert code == 200 and not any("conditional-probe" in r for r in proxy.seen)
    finally:
        proxy.stop()
