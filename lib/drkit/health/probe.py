"""Probe targets: strict parsing (pure) and the HTTP, TLS, DNS and TCP probe runners.

Targets are a JSON list (DRKIT_PROBES), each an object with `name`, `type`
and the keys of its type (docs/health-probe.md). Unknown keys, bad URLs and
out-of-range numbers are refused before any probe runs. Every probe has its
own timeout; `run_all` probes concurrently in a bounded pool, so N targets
take about the slowest timeout, not the sum.
"""

from __future__ import annotations

import json
import re
import socket
import ssl
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from drkit.core.errors import ConfigError
from drkit.platform.config import json_list, secure_url

MAX_TARGETS = 500
MAX_WORKERS = 128  # one wave for typical target counts: total time ~ the slowest timeout
# health-probe runs every minute with a 55 s limit; the probes must leave time for the data checks, the
# records, the status page and the alerts: a target may wait at most this long, and every wave of them
# together at most PROBE_BUDGET_S (a probe still running then is a failure of that target, not a killed run)
MAX_TIMEOUT_S = 20.0
PROBE_BUDGET_S = 30.0
NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,79}$")
COMMON = {"name", "type", "timeout_s", "failure_threshold", "success_threshold", "failover"}
KEYS = {
    "http": COMMON | {"url", "method", "headers", "body", "status", "max_response_ms", "body_contains",
                      "json_path", "json_equals", "follow_redirects", "max_redirects", "tls_verify", "ca_pem",
                      "plain_http"},
    "tls": COMMON | {"host", "port", "warn_days", "fail_days", "ca_pem", "server_name"},
    "dns": COMMON | {"host", "expect", "family"},
    "tcp": COMMON | {"host", "port"},
}


@dataclass(frozen=True)
class Target:
    name: str
    type: str
    timeout_s: float = 5.0
    failure_threshold: int = 3
    success_threshold: int = 2
    failover: bool = False
    url: str = ""
    method: str = "GET"
    headers: tuple[tuple[str, str], ...] = ()
    body: str | None = None
    status: tuple[int, ...] = (200,)
    max_response_ms: int | None = None
    body_contains: str | None = None
    json_path: str | None = None
    json_equals: Any = None
    follow_redirects: bool = True
    max_redirects: int = 5
    tls_verify: bool = True
    ca_pem: str | None = None
    host: str = ""
    port: int = 443
    warn_days: int = 21
    fail_days: int = 7
    server_name: str | None = None
    expect: tuple[str, ...] = ()
    family: str = "any"  # any | ipv4 | ipv6


@dataclass
class Result:
    name: str
    type: str
    ok: bool
    detail: str
    duration_s: float
    warning: str | None = None
    metrics: dict[str, float] = field(default_factory=dict)
    threshold: int | None = None  # failures in a row before it is unhealthy, when not the target's own (1: at once)

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "type": self.type, "ok": self.ok, "detail": self.detail,
                "duration_s": round(self.duration_s, 4), "warning": self.warning, "metrics": self.metrics}


def parse_targets(text: str, where: str = "DRKIT_PROBES") -> list[Target]:
    items = json_list(text, where, items="targets", limit=MAX_TARGETS)
    problems: list[str] = []
    out: list[Target] = []
    names: set[str] = set()
    for n, item in enumerate(items, 1):
        label = f"{where} item {n}" + (f" ({item.get('name')!r})" if isinstance(item, dict) and "name" in item else "")
        try:
            target = _target(item, label)
        except ValueError as exc:
            problems.append(str(exc))
            continue
        if target.name in names:
            problems.append(f"{label}: name {target.name!r} is used twice")
        names.add(target.name)
        out.append(target)
    if problems:
        raise ConfigError(problems)
    return out


def _target(item: Any, label: str) -> Target:
    if not isinstance(item, dict):
        raise ValueError(f"{label} must be an object")
    kind = item.get("type")
    if kind not in KEYS:
        raise ValueError(f"{label}: type must be one of {', '.join(sorted(KEYS))}, not {kind!r}")
    unknown = sorted(set(item) - KEYS[kind])
    if unknown:
        raise ValueError(f"{label}: unknown key{'s' if len(unknown) > 1 else ''} {', '.join(map(repr, unknown))} "
                         f"for a {kind} probe (known: {', '.join(sorted(KEYS[kind]))})")
    name = item.get("name")
    if not isinstance(name, str) or not NAME_RE.match(name):
        raise ValueError(f"{label}: name must be 1-80 of A-Z a-z 0-9 _ . : - (it becomes a metric label)")
    args: dict[str, Any] = {"name": name, "type": kind}
    args["timeout_s"] = _number(item, "timeout_s", 5.0, 0.05, MAX_TIMEOUT_S, label)
    args["failure_threshold"] = int(_number(item, "failure_threshold", 3, 1, 100, label))
    args["success_threshold"] = int(_number(item, "success_threshold", 2, 1, 100, label))
    args["failover"] = _bool(item, "failover", False, label)
    if kind == "http":
        url = item.get("url")
        parts = urlsplit(url) if isinstance(url, str) else None
        if parts is None or parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"{label}: url must be an http:// or https:// URL with a host, not {url!r}")
        if not secure_url(str(url)) and not _bool(item, "plain_http", False, label):
            raise ValueError(f"{label}: {url} is plain http:// (what answers is not authenticated, and headers travel "
                             "in clear text); probe https://, or say \"plain_http\": true to check it on purpose")
        args["url"] = url
        method = str(item.get("method", "GET")).upper()
        if method not in ("GET", "HEAD", "POST", "PUT", "OPTIONS"):
            raise ValueError(f"{label}: method {method!r} is not GET, HEAD, POST, PUT or OPTIONS")
        args["method"] = method
        headers = item.get("headers", {})
        if not isinstance(headers, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in headers.items()):
            raise ValueError(f"{label}: headers must be an object of strings")
        args["headers"] = tuple(sorted(headers.items()))
        if "body" in item and not isinstance(item["body"], str):
            raise ValueError(f"{label}: body must be a string")
        args["body"] = item.get("body")
        status = item.get("status", [200])
        status = [status] if isinstance(status, int) else status
        if not isinstance(status, list) or not status or not all(isinstance(s, int) and 100 <= s <= 599 for s in status):
            raise ValueError(f"{label}: status must be a code or a list of codes 100-599")
        args["status"] = tuple(status)
        if "max_response_ms" in item:
            args["max_response_ms"] = int(_number(item, "max_response_ms", 0, 1, 600_000, label))
        for key in ("body_contains", "json_path"):
            if key in item and (not isinstance(item[key], str) or not item[key]):
                raise ValueError(f"{label}: {key} must be a non-empty string")
            args[key] = item.get(key)
        if ("json_path" in item) != ("json_equals" in item):
            raise ValueError(f"{label}: json_path and json_equals go together")
        args["json_equals"] = item.get("json_equals")
        args["follow_redirects"] = _bool(item, "follow_redirects", True, label)
        args["max_redirects"] = int(_number(item, "max_redirects", 5, 0, 30, label))
        args["tls_verify"] = _bool(item, "tls_verify", True, label)
        args["ca_pem"] = _pem(item, label)
    elif kind in ("tls", "tcp", "dns"):
        host = item.get("host")
        if not isinstance(host, str) or not re.match(r"^[A-Za-z0-9.:_-]{1,253}$", host):
            raise ValueError(f"{label}: host must be a host name or address, not {host!r}")
        args["host"] = host
        if kind in ("tls", "tcp"):
            if kind == "tcp" and "port" not in item:
                raise ValueError(f"{label}: a tcp probe needs a port")
            args["port"] = int(_number(item, "port", 443, 1, 65535, label))
        if kind == "tls":
            args["warn_days"] = int(_number(item, "warn_days", 21, 0, 3650, label))
            args["fail_days"] = int(_number(item, "fail_days", 7, 0, 3650, label))
            if args["fail_days"] > args["warn_days"]:
                raise ValueError(f"{label}: fail_days must not exceed warn_days")
            args["ca_pem"] = _pem(item, label)
            if "server_name" in item and not isinstance(item["server_name"], str):
                raise ValueError(f"{label}: server_name must be a string")
            args["server_name"] = item.get("server_name")
        if kind == "dns":
            expect = item.get("expect", [])
            if not isinstance(expect, list) or not all(isinstance(x, str) for x in expect):
                raise ValueError(f"{label}: expect must be a list of addresses")
            args["expect"] = tuple(sorted(expect))
            family = item.get("family", "any")
            if family not in ("any", "ipv4", "ipv6"):
                raise ValueError(f"{label}: family must be any, ipv4 or ipv6")
            args["family"] = family
    return Target(**args)


def _number(item: dict[str, Any], key: str, default: float, lo: float, hi: float, label: str) -> float:
    value = item.get(key, default)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not lo <= value <= hi:
        raise ValueError(f"{label}: {key} must be a number from {lo:g} to {hi:g}, not {value!r}")
    return float(value)


def _bool(item: dict[str, Any], key: str, default: bool, label: str) -> bool:
    value = item.get(key, default)
    if not isinstance(value, bool):
        raise ValueError(f"{label}: {key} must be true or false")
    return value


def _pem(item: dict[str, Any], label: str) -> str | None:
    pem = item.get("ca_pem")
    if pem is not None and (not isinstance(pem, str) or "BEGIN CERTIFICATE" not in pem):
        raise ValueError(f"{label}: ca_pem must be PEM text (-----BEGIN CERTIFICATE-----)")
    return pem


# -- runners ---------------------------------------------------------------------------

def run_all(targets: Sequence[Target], budget_s: float | None = None) -> list[Result]:
    """Probe every target concurrently (bounded pool); results in target order. With `budget_s`, a probe that
    has not answered by then is that target's failure (a server that trickles its answer cannot make the whole
    run overrun its limit)."""
    if not targets:
        return []
    if any(t.type == "http" and not t.tls_verify for t in targets):
        import urllib3

        # tls_verify: false is the operator's explicit choice: do not repeat urllib3's warning every minute
        urllib3.disable_warnings(urllib3.exceptions.InsecureRequestWarning)
    from concurrent.futures import wait

    pool = ThreadPoolExecutor(max_workers=min(MAX_WORKERS, len(targets)), thread_name_prefix="probe")
    try:
        futures = [pool.submit(run_one, t) for t in targets]
        wait(futures, timeout=budget_s)
        return [f.result() if f.done() else
                Result(t.name, t.type, False, f"no answer within the run's probe budget ({budget_s:g} s)",
                       budget_s or 0.0) for f, t in zip(futures, targets, strict=True)]
    finally:
        pool.shutdown(wait=False, cancel_futures=True)


def check_budget(targets: Sequence[Target]) -> list[str]:
    """Whether every wave of targets fits PROBE_BUDGET_S with its slowest timeout (configuration problems)."""
    waves = -(-len(targets) // MAX_WORKERS)
    worst = waves * max((t.timeout_s for t in targets), default=0.0)
    if worst > PROBE_BUDGET_S:
        return [f"DRKIT_PROBES: {len(targets)} targets in {waves} wave(s) of {MAX_WORKERS} with timeouts up to "
                f"{max(t.timeout_s for t in targets):g} s may take {worst:g} s; health-probe gives its probes "
                f"{PROBE_BUDGET_S:g} s of its 55 s: lower timeout_s or split the targets"]
    return []


def run_one(target: Target) -> Result:
    t0 = time.monotonic()
    try:
        runner = {"http": _http, "tls": _tls, "dns": _dns, "tcp": _tcp}[target.type]
        ok, detail, warning, metrics = runner(target)
    except Exception as exc:  # noqa: BLE001 - any failure of a probe is its result
        ok, detail, warning, metrics = False, _describe(exc), None, {}
    return Result(target.name, target.type, ok, detail, time.monotonic() - t0, warning, metrics)


def _describe(exc: BaseException) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    return f"{type(exc).__name__}: {text[:300]}"


Outcome = tuple[bool, str, str | None, dict[str, float]]


def _http(t: Target) -> Outcome:
    import requests

    session = requests.Session()
    session.max_redirects = t.max_redirects
    verify: bool | str = t.tls_verify
    ca_file = None
    if t.ca_pem and t.tls_verify:
        import tempfile

        ca_file = tempfile.NamedTemporaryFile("w", suffix=".pem", delete=False)
        ca_file.write(t.ca_pem)
        ca_file.close()
        verify = ca_file.name
    try:
        t0 = time.monotonic()
        resp = session.request(t.method, t.url, headers=dict(t.headers), data=t.body, timeout=t.timeout_s,
                               allow_redirects=t.follow_redirects, verify=verify, stream=True)
        body = resp.raw.read(1_000_000, decode_content=True) if t.method != "HEAD" else b""
        elapsed_ms = (time.monotonic() - t0) * 1000
    except requests.TooManyRedirects:
        return False, f"more than {t.max_redirects} redirects (a loop?)", None, {}
    finally:
        session.close()
        if ca_file is not None:
            import os

            os.unlink(ca_file.name)
    metrics = {"http_status_code": float(resp.status_code), "response_ms": round(elapsed_ms, 1),
               "redirects": float(len(resp.history))}
    problems = []
    if resp.status_code not in t.status:
        problems.append(f"status {resp.status_code} not in {list(t.status)}")
    if t.max_response_ms is not None and elapsed_ms > t.max_response_ms:
        problems.append(f"response {elapsed_ms:.0f} ms > {t.max_response_ms} ms")
    text = body.decode(resp.encoding or "utf-8", "replace")
    if t.body_contains is not None and t.body_contains not in text:
        problems.append(f"body does not contain {t.body_contains!r}")
    if t.json_path is not None:
        try:
            value: Any = json.loads(text)
            for part in t.json_path.split("."):
                value = value[int(part)] if isinstance(value, list) else value[part]
            if value != t.json_equals:
                problems.append(f"{t.json_path} is {value!r}, expected {t.json_equals!r}")
        except (ValueError, KeyError, IndexError, TypeError):
            problems.append(f"body has no JSON field {t.json_path!r}")
    summary = f"HTTP {resp.status_code} in {elapsed_ms:.0f} ms"
    return (not problems, "; ".join(problems) if problems else summary, None, metrics)


def _tls(t: Target) -> Outcome:
    ctx = ssl.create_default_context(cadata=t.ca_pem) if t.ca_pem else ssl.create_default_context()
    with socket.create_connection((t.host, t.port), timeout=t.timeout_s) as sock, \
            ctx.wrap_socket(sock, server_hostname=t.server_name or t.host) as tls:
        cert = tls.getpeercert()
    if not cert:
        return False, "the server presented no certificate", None, {}
    not_after = ssl.cert_time_to_seconds(str(cert["notAfter"]))
    days = (not_after - time.time()) / 86400
    metrics = {"tls_days_left": round(days, 2), "tls_not_after": float(not_after)}
    if days < t.fail_days:
        return False, f"certificate expires in {days:.1f} days (< {t.fail_days})", None, metrics
    warning = f"certificate expires in {days:.1f} days (< {t.warn_days})" if days < t.warn_days else None
    return True, f"certificate valid, {days:.0f} days left", warning, metrics


def _dns(t: Target) -> Outcome:
    family = {"any": socket.AF_UNSPEC, "ipv4": socket.AF_INET, "ipv6": socket.AF_INET6}[t.family]
    # getaddrinfo has no timeout of its own: wait for it in a thread, and do not wait for a hung one
    one = ThreadPoolExecutor(max_workers=1, thread_name_prefix="dns")
    try:
        future = one.submit(socket.getaddrinfo, t.host, None, family, socket.SOCK_STREAM)
        try:
            infos = future.result(timeout=t.timeout_s)
        except TimeoutError:
            return False, f"no answer within {t.timeout_s:g} s", None, {}
    finally:
        one.shutdown(wait=False)
    addresses = tuple(sorted({str(info[4][0]) for info in infos}))
    if t.expect and tuple(sorted(set(t.expect))) != addresses:
        return False, f"resolves to {', '.join(addresses)}, expected {', '.join(t.expect)}", None, {}
    return True, f"resolves to {', '.join(addresses)}", None, {"addresses": float(len(addresses))}


def _tcp(t: Target) -> Outcome:
    t0 = time.monotonic()
    with socket.create_connection((t.host, t.port), timeout=t.timeout_s):
        ms = (time.monotonic() - t0) * 1000
    return True, f"connected in {ms:.0f} ms", None, {"connect_ms": round(ms, 1)}
