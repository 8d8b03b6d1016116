"""Authenticated alert webhooks (pure: no I/O).

Transport: DO web functions deployed `web: raw` deliver the exact body bytes in
`http.body` (base64 when `http.isBase64Encoded`), or in the older `__ow_*`
fields. Checks, in order, each refusing with a status code and changing nothing:
405 not POST, 413 body over 256 KiB, 401 no or unknown credentials, 403 bad
signature or timestamp outside ±5 min, 400 malformed body.

Credentials (several of each accepted at once, for rotation; constant-time):
* `Authorization: Bearer <token>` / `Basic <user:pass>` (Alertmanager, Grafana),
* Grafana HMAC: hex HMAC-SHA256 over `<timestamp>:<body>` (or the body when no
  timestamp header is configured) in a configurable header,
* drkit's generic signature: `X-Drkit-Signature: sha256=<hex HMAC-SHA256 of
  "<X-Drkit-Timestamp>.<body>">` (the format drkit's own notifications use).

Payloads: Alertmanager (version 4) and Grafana alert batches, or a generic
command `{"action": "failover"|"failback"|"status"|"drill", "site", "reason",
"dry_run", "force"}` (signed only). Each yields an idempotency key: for alert
batches groupKey + status + every alert's fingerprint/startsAt; for commands
the signature.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from drkit.core.secret import Secret
from drkit.platform.web import HttpRequest, WebError

MAX_BODY = 256 * 1024
MAX_SKEW_S = 300
ACTIONS = ("status", "failover", "failback", "drill")


@dataclass(frozen=True)
class AuthConfig:
    bearer: tuple[Secret, ...] = ()
    basic: tuple[tuple[str, Secret], ...] = ()
    hmac: tuple[Secret, ...] = ()
    grafana: tuple[Secret, ...] = ()
    grafana_header: str = "x-grafana-alerting-signature"
    grafana_timestamp_header: str | None = None

    @property
    def configured(self) -> bool:
        return bool(self.bearer or self.basic or self.hmac or self.grafana)

    @classmethod
    def from_env(cls, environ: Mapping[str, str]) -> AuthConfig:
        from drkit.core.errors import ConfigError

        def secrets(var: str) -> tuple[Secret, ...]:
            items = [x for x in environ.get(var, "").replace(",", " ").split() if x]
            short = [x for x in items if len(x) < 16]
            if short:
                raise ConfigError(f"{var}: every secret must be at least 16 characters")
            return tuple(Secret(x) for x in items)

        basic = []
        for item in [x for x in environ.get("DRKIT_WEBHOOK_BASIC", "").replace(",", " ").split() if x]:
            user, sep, password = item.partition(":")
            if not sep or not user or len(password) < 16:
                raise ConfigError("DRKIT_WEBHOOK_BASIC entries are user:password (password at least 16 characters)")
            basic.append((user, Secret(password)))
        ts_header = environ.get("DRKIT_GRAFANA_TIMESTAMP_HEADER", "").strip().lower() or None
        return cls(secrets("DRKIT_WEBHOOK_BEARER"), tuple(basic), secrets("DRKIT_WEBHOOK_HMAC"),
                   secrets("DRKIT_GRAFANA_HMAC"),
                   environ.get("DRKIT_GRAFANA_SIGNATURE_HEADER", "").strip().lower() or "x-grafana-alerting-signature",
                   ts_header)


def check_transport(req: HttpRequest) -> None:
    if req.method != "POST":
        raise WebError(405, f"method {req.method or '?'} not allowed; POST the alert")
    if len(req.body) > MAX_BODY:
        raise WebError(413, f"body of {len(req.body)} bytes is over the {MAX_BODY} byte limit")


def authenticate(req: HttpRequest, auth: AuthConfig, now: float) -> str:
    """The scheme that authenticated the request, or WebError 400/401/403."""
    h = req.headers
    if "x-drkit-signature" in h:
        return _check_signed(h["x-drkit-signature"], h.get("x-drkit-timestamp"), req.body, auth.hmac, now, ".", "hmac")
    if auth.grafana and auth.grafana_header in h:
        ts = h.get(auth.grafana_timestamp_header) if auth.grafana_timestamp_header else None
        if auth.grafana_timestamp_header and ts is None:
            raise WebError(401, f"missing {auth.grafana_timestamp_header} header")
        return _check_signed(h[auth.grafana_header], ts, req.body, auth.grafana, now, ":", "grafana-hmac")
    value = h.get("authorization", "")
    scheme, _, cred = value.partition(" ")
    if scheme.lower() == "bearer" and cred:
        if any(hmac.compare_digest(cred.strip().encode(), s.reveal().encode()) for s in auth.bearer):
            return "bearer"
        raise WebError(401, "unknown bearer token")
    if scheme.lower() == "basic" and cred:
        try:
            user, _, password = base64.b64decode(cred.strip(), validate=True).decode().partition(":")
        except (binascii.Error, ValueError, UnicodeDecodeError):
            raise WebError(400, "malformed Basic credentials") from None
        ok = False
        for known_user, known_pw in auth.basic:
            ok |= hmac.compare_digest(user.encode(), known_user.encode()) & \
                hmac.compare_digest(password.encode(), known_pw.reveal().encode())
        if ok:
            return "basic"
        raise WebError(401, "unknown user or password")
    raise WebError(401, "no credentials: send Authorization (Bearer/Basic) or a signature header")


def _check_signed(header: str, ts: str | None, body: bytes, secrets: tuple[Secret, ...], now: float, sep: str,
                  scheme: str) -> str:
    if not secrets:
        raise WebError(401, f"{scheme} signatures are not configured here")
    given = header.strip().lower().removeprefix("sha256=")
    if len(given) != 64 or any(c not in "0123456789abcdef" for c in given):
        raise WebError(400, "malformed signature: expected sha256=<64 hex digits>")
    if scheme == "hmac" and ts is None:
        raise WebError(401, "missing X-Drkit-Timestamp header")
    if ts is not None:
        try:
            sent = float(ts)
        except ValueError:
            raise WebError(400, "malformed timestamp: expected Unix seconds") from None
        if abs(now - sent) > MAX_SKEW_S:
            raise WebError(403, f"timestamp is {now - sent:+.0f}s from now: outside ±{MAX_SKEW_S}s (replay or clock skew)")
    message = (ts.encode() + sep.encode() + body) if ts is not None else body
    ok = False
    for s in secrets:
        ok |= hmac.compare_digest(hmac.new(s.reveal().encode(), message, hashlib.sha256).hexdigest(), given)
    if not ok:
        raise WebError(403, "signature does not match")
    return scheme


@dataclass(frozen=True)
class Alert:
    status: str
    labels: Mapping[str, str]
    fingerprint: str
    starts_at: str


@dataclass(frozen=True)
class Trigger:
    kind: str  # "alerts" | "command"
    source: str  # alertmanager | grafana | command
    idempotency_key: str
    status: str = ""  # firing | resolved (alerts)
    alerts: tuple[Alert, ...] = ()
    action: str = ""  # command
    site: str = ""
    reason: str = ""
    dry_run: bool = False
    force: bool = False
    details: Mapping[str, Any] = field(default_factory=dict)


def parse_payload(req: HttpRequest, scheme: str) -> Trigger:
    try:
        payload = json.loads(req.body)
    except (ValueError, UnicodeDecodeError):
        raise WebError(400, "body is not JSON") from None
    if not isinstance(payload, dict):
        raise WebError(400, "body must be a JSON object")
    if "alerts" in payload and "groupKey" in payload:
        return _alerts(payload)
    if "action" in payload:
        if scheme not in ("hmac",):
            raise WebError(403, "commands must be signed (X-Drkit-Signature); Bearer/Basic may only send alerts")
        return _command(payload, req.headers["x-drkit-signature"])
    raise WebError(400, "unrecognised payload: expected an Alertmanager/Grafana alert batch or a signed command")


def _alerts(p: dict[str, Any]) -> Trigger:
    source = "grafana" if "orgId" in p or str(p.get("version")) == "1" else "alertmanager"
    if source == "alertmanager" and str(p.get("version")) != "4":
        raise WebError(400, f"Alertmanager payload version {p.get('version')!r} is not 4")
    status = p.get("status")
    if status not in ("firing", "resolved") or not isinstance(p["alerts"], list):
        raise WebError(400, "alert batch needs status firing|resolved and a list of alerts")
    alerts = []
    for a in p["alerts"][:1000]:
        if not isinstance(a, dict) or not isinstance(a.get("labels", {}), dict):
            raise WebError(400, "every alert must be an object with labels")
        alerts.append(Alert(str(a.get("status", status)), {str(k): str(v) for k, v in a.get("labels", {}).items()},
                            str(a.get("fingerprint", "")), str(a.get("startsAt", ""))))
    basis = json.dumps([p["groupKey"], status, sorted((a.fingerprint, a.starts_at, a.status) for a in alerts)])
    key = "alerts-" + hashlib.sha256(basis.encode()).hexdigest()
    return Trigger("alerts", source, key, status=status, alerts=tuple(alerts),
                   details={"groupKey": str(p["groupKey"])[:200], "alerts": len(alerts)})


def _command(p: dict[str, Any], signature: str) -> Trigger:
    action = p.get("action")
    if action not in ACTIONS:
        raise WebError(400, f"action must be one of {', '.join(ACTIONS)}, not {str(action)[:40]!r}")
    for key in ("site", "reason"):
        if key in p and not isinstance(p[key], str):
            raise WebError(400, f"{key} must be a string")
    for key in ("dry_run", "force"):
        if key in p and not isinstance(p[key], bool):
            raise WebError(400, f"{key} must be true or false")
    key = "cmd-" + hashlib.sha256(signature.strip().lower().encode()).hexdigest()
    return Trigger("command", "command", key, action=str(action), site=str(p.get("site", "")),
                   reason=str(p.get("reason", ""))[:300], dry_run=bool(p.get("dry_run", False)),
                   force=bool(p.get("force", False)))
