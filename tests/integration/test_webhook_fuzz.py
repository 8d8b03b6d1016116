"""Property-based fuzzing of dns-failover's web path (parse and authenticate), through handle_web.

Random bytes, mutated valid deliveries and mutated credentials, sent as DigitalOcean delivers them:
never a 2xx without valid credentials, never a 5xx, and no state change (no DigitalOcean request,
no object in the bucket) for anything refused. The bucket is the real S3 server; the examples are
bounded (a few hundred, a few seconds).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from dataclasses import dataclass
from typing import Any

from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from test_dns_failover import (  # noqa: F401
    BEARER,
    GRAFANA_SECRET,
    HMAC_SECRET,
    alert_batch,
    dr_site,
    env,
    fake,
)

from drkit.functions import dns_failover
from drkit.platform.runtime import handle_web
from drkit_dev.fakedo import FakeDO

FUZZ = settings(max_examples=250, deadline=None,
                suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
REFUSED_UNAUTHENTICATED = {401, 403, 405, 413}
VALID_BATCH = alert_batch()
VALID_COMMAND = json.dumps({"action": "status", "reason": "fuzz"}).encode()


@st.composite
def mutated(draw: st.DrawFn, data: bytes) -> bytes:
    """`data` with a few byte flips, insertions, deletions or duplicated slices (always changed)."""
    out = bytearray(data)
    for _ in range(draw(st.integers(1, 4))):
        op = draw(st.sampled_from(["flip", "insert", "delete", "duplicate"]))
        i = draw(st.integers(0, max(0, len(out) - 1)))
        if op == "flip" and out:
            out[i] = draw(st.integers(0, 255))
        elif op == "insert":
            out[i:i] = draw(st.binary(min_size=1, max_size=8))
        elif op == "delete" and out:
            del out[i:i + draw(st.integers(1, 16))]
        else:
            out[i:i] = out[i:i + draw(st.integers(1, 32))]
    result = bytes(out)
    assume(result != data)
    return result


def changed_text(original: str) -> st.SearchStrategy[str]:
    """A credential that is not the valid one: random text, or the valid one altered."""
    return st.one_of(st.text(max_size=80),
                     mutated(original.encode()).map(lambda b: b.decode("utf-8", "replace"))).filter(
        lambda s: s != original)


@dataclass
class Request:
    method: str
    headers: dict[str, str]
    body: bytes
    b64: bool
    authenticated: bool  # carries a credential the function accepts, unaltered


@st.composite
def requests(draw: st.DrawFn) -> Request:
    body = draw(st.one_of(st.binary(max_size=1024), mutated(VALID_BATCH), mutated(VALID_COMMAND),
                          st.just(VALID_BATCH)))
    ts = str(int(time.time()))
    drkit_mac = hmac.new(HMAC_SECRET.encode(), ts.encode() + b"." + body, hashlib.sha256).hexdigest()
    grafana_mac = hmac.new(GRAFANA_SECRET.encode(), ts.encode() + b":" + body, hashlib.sha256).hexdigest()
    kind = draw(st.sampled_from(["none", "bearer", "basic", "drkit", "grafana", "garbage"]))
    headers: dict[str, str] = {}
    if kind == "bearer":
        headers["Authorization"] = draw(st.sampled_from(["Bearer", "bearer"])) + " " + draw(changed_text(BEARER))
    elif kind == "basic":
        headers["Authorization"] = "Basic " + draw(st.one_of(
            changed_text(base64.b64encode(b"grafana:" + BEARER.encode()).decode()), st.text(max_size=40)))
    elif kind == "drkit":
        headers["X-Drkit-Signature"] = "sha256=" + draw(changed_text(drkit_mac))
        headers["X-Drkit-Timestamp"] = draw(st.one_of(st.just(ts), changed_text(ts)))
    elif kind == "grafana":
        headers["X-Grafana-Alerting-Signature"] = draw(st.one_of(changed_text(grafana_mac),
                                                                st.just("sha256=" + grafana_mac)))
        headers["X-Grafana-Alerting-Timestamp"] = draw(st.one_of(st.just(ts), changed_text(ts), st.just("nan")))
    elif kind == "garbage":
        headers = draw(st.dictionaries(st.sampled_from(["Authorization", "X-Drkit-Signature", "X-Drkit-Timestamp",
                                                        "X-Grafana-Alerting-Signature", "Content-Length",
                                                        "X-Grafana-Alerting-Timestamp"]),
                                       st.text(max_size=60), max_size=4))
        headers = {k: v for k, v in headers.items() if v not in (f"Bearer {BEARER}", f"bearer {BEARER}")}
    method = draw(st.sampled_from(["POST", "POST", "POST", "GET", "PUT", "DELETE", ""]))
    return Request(method, headers, body, draw(st.booleans()), authenticated=False)


@st.composite
def authenticated_requests(draw: st.DrawFn) -> Request:
    """A valid Bearer token with a body that is not a valid delivery (random, or a mutated one)."""
    body = draw(st.one_of(st.binary(max_size=1024), mutated(VALID_BATCH)))
    return Request("POST", {"Authorization": f"Bearer {BEARER}"}, body, True, authenticated=True)


def send(env: dict[str, str], r: Request) -> tuple[int, dict[str, Any]]:
    raw = base64.b64encode(r.body).decode() if r.b64 else r.body.decode("utf-8", "surrogateescape")
    event = {"http": {"method": r.method, "headers": r.headers, "path": "", "body": raw, "isBase64Encoded": r.b64}}
    reply = handle_web("dns-failover", dns_failover.run_web, dns_failover.run, event, None, env)
    return int(reply["statusCode"]), reply["body"]


def bucket_keys(s3_client: Any, bucket: str) -> list[str]:
    return sorted(o["Key"] for o in s3_client.list_objects_v2(Bucket=bucket).get("Contents", []))


def test_without_valid_credentials_nothing_gets_through_and_nothing_changes(
        env: dict[str, str], fake: FakeDO, s3_client: Any, bucket: str) -> None:
    seen: dict[int, int] = {}

    @FUZZ
    @given(requests())
    def check(r: Request) -> None:
        before = bucket_keys(s3_client, bucket)
        code, body = send(env, r)
        seen[code] = seen.get(code, 0) + 1
        assert code in REFUSED_UNAUTHENTICATED, (code, body, r)
        assert isinstance(body.get("error"), str) and "\n" not in body["error"]
        assert BEARER not in json.dumps(body) and HMAC_SECRET not in json.dumps(body)
        assert fake.requests == [] and bucket_keys(s3_client, bucket) == before

    check()
    assert {401, 405} <= set(seen), seen  # the generator reaches both the transport and the credential checks


def test_with_valid_credentials_a_malformed_body_is_a_400_that_changes_nothing(
        env: dict[str, str], fake: FakeDO, s3_client: Any, bucket: str) -> None:
    @FUZZ
    @given(authenticated_requests())
    def check(r: Request) -> None:
        before = bucket_keys(s3_client, bucket)
        requests_before = len(fake.requests)
        code, body = send(env, r)
        assert code < 500, (code, body, r)
        if code >= 300:
            assert code == 400 and "\n" not in body["error"], (code, body)
            assert len(fake.requests) == requests_before and bucket_keys(s3_client, bucket) == before
        else:  # a mutation that left a valid delivery (e.g. inside an annotation) is processed as one
            assert body["ok"] is True

    check()
