"""Authenticated alert webhooks (pure: no I/O).

Transport (platform/web.py): DO web functions deployed `web: raw` deliver the exact body bytes in
`http.body` (base64 when `http.isBase64Encoded`), or in the older `__ow_*`
fields. Checks, in order, each refusing with a status code and changing nothing:
405 not POST, 413 body over DRKIT_WEBHOOK_MAX_BODY (1 MiB), 401 no, malformed or unknown
credentials, 403 a signature that does not match or a timestamp outside ±5 min, and only then,
for an authenticated sender, 400 a body that is not strict JSON (platform/strictjson.py) or not
a valid Alertmanager/Grafana batch or command.

Credentials (several of each accepted at once, for rotation; constant-time):
* `Authorization: Bearer <token>` / `Basic <user:pass>` (Alertmanager, Grafana),
* Grafana HMAC: lowercase hex HMAC-SHA256 over `<timestamp>:<body>` (or the body when no
  timestamp header is configured) in a configurable header; the timestamp is whole Unix seconds,
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
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from drkit.core.secret import Secret
from drkit.platform import strictjson
from drkit.platform.web import HttpRequest, WebError

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


# RFC 9110 §11: credentials = auth-scheme [ 1*SP ( token68 / #auth-param ) ]; the scheme is case-insensitive.
_CREDENTIALS = re.compile(r"([!#$%&'*+.^_`|~0-9A-Za-z-]+) +([A-Za-z0-9._~+/-]+=*)")
_HEX64 = re.compile(r"[0-9a-f]{64}")  # what Grafana and drkit send: lowercase hex, exactly 64 digits
_DRKIT_SIGNATURE = re.compile(r"sha256=([0-9a-f]{64})")
_UNIX_SECONDS = re.compile(r"[0-9]{1,12}")  # digits only: no sign, no fraction, no exponent, no nan


def authenticate(req: HttpRequest, auth: AuthConfig, now: float) -> str:
    """The scheme that authenticated the request, or WebError 401 (no, malformed or unknown
    credentials) / 403 (a signature that does not match, or a timestamp outside ±5 min).
    Nothing in the body is read here but the bytes a signature covers."""
    h = req.headers
    if "x-drkit-signature" in h:
        m = _DRKIT_SIGNATURE.fullmatch(h["x-drkit-signature"])
        if not m:
            raise WebError(401, "malformed X-Drkit-Signature: expected sha256=<64 lowercase hex digits>")
        ts = h.get("x-drkit-timestamp")
        if ts is None:
            raise WebError(401, "missing X-Drkit-Timestamp header")
        return _check_signed(m.group(1), ts, req, auth.hmac, now, ".", "hmac")
    if auth.grafana and auth.grafana_header in h:
        given = h[auth.grafana_header]
        if not _HEX64.fullmatch(given):
            raise WebError(401, f"malformed {auth.grafana_header}: expected 64 lowercase hex digits")
        ts = h.get(auth.grafana_timestamp_header) if auth.grafana_timestamp_header else None
        if auth.grafana_timestamp_header and ts is None:
            raise WebError(401, f"missing {auth.grafana_timestamp_header} header")
        return _check_signed(given, ts, req, auth.grafana, now, ":", "grafana-hmac")
    value = h.get("authorization")
    if value is None:
        raise WebError(401, "no credentials: send Authorization (Bearer/Basic) or a signature header")
    m = _CREDENTIALS.fullmatch(value)
    if not m:
        raise WebError(401, "malformed Authorization header: expected '<scheme> <credentials>' (RFC 9110)")
    scheme, cred = m.group(1).lower(), m.group(2)
    if scheme == "bearer":
        ok = False
        for s in auth.bearer:
            ok |= hmac.compare_digest(cred.encode(), s.reveal().encode())
        if ok:
            return "bearer"
        raise WebError(401, "unknown bearer token")
    if scheme == "basic":
        try:
            user, sep, password = base64.b64decode(cred, validate=True).decode("utf-8").partition(":")
        except (binascii.Error, ValueError):
            raise WebError(401, "malformed Basic credentials: expected base64 of user:password") from None
        if not sep:
            raise WebError(401, "malformed Basic credentials: expected base64 of user:password")
        ok = False
        for known_user, known_pw in auth.basic:
            ok |= hmac.compare_digest(user.encode(), known_user.encode()) & \
                hmac.compare_digest(password.encode(), known_pw.reveal().encode())
        if ok:
            return "basic"
        raise WebError(401, "unknown user or password")
    raise WebError(401, f"unsupported Authorization scheme {scheme[:20]!r}: use Bearer or Basic")


def _check_signed(given: str, ts: str | None, req: HttpRequest, secrets: tuple[Secret, ...], now: float, sep: str,
                  scheme: str) -> str:
    if not secrets:
        raise WebError(401, f"{scheme} signatures are not configured here")
    if ts is not None:
        if not _UNIX_SECONDS.fullmatch(ts):
            raise WebError(401, "malformed timestamp: expected whole Unix seconds (digits only)")
        if abs(now - int(ts)) > MAX_SKEW_S:
            raise WebError(403, f"timestamp is {now - int(ts):+.0f}s from now: outside ±{MAX_SKEW_S}s (replay or clock skew)")
    if req.body_error:
        raise WebError(401, f"the signature cannot be checked: {req.body_error}")
    message = (ts.encode() + sep.encode() + req.body) if ts is not None else req.body
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
    """The trigger in an authenticated request's body (strict JSON, checked schema), or WebError 400/403."""
    if req.body_error:
        raise WebError(400, req.body_error)
    try:
        payload = strictjson.loads(req.body)
    except strictjson.StrictJSONError as exc:
        raise WebError(400, str(exc)) from None
    if "alerts" in payload:
        return _alerts(payload)
    if "action" in payload:
        if scheme not in ("hmac",):
            raise WebError(403, "commands must be signed (X-Drkit-Signature); Bearer/Basic may only send alerts")
        return _command(payload, req.headers["x-drkit-signature"])
    raise WebError(400, "unrecognised payload: expected an Alertmanager/Grafana alert batch or a signed command")


def _string_map(value: Any, where: str) -> dict[str, str]:
    if not isinstance(value, dict) or not all(isinstance(v, str) for v in value.values()):
        raise WebError(400, f"{where} must be an object of strings")
    return value


def _fields(obj: dict[str, Any], where: str, required: Mapping[str, type], optional: Mapping[str, type]) -> None:
    """Required fields present with their JSON types; optional ones typed when present; others allowed."""
    for name, kind in [*required.items(), *optional.items()]:
        if name not in obj:
            if name in required:
                raise WebError(400, f"{where} has no {name!r}")
            continue
        value = obj[name]
        if kind is dict:
            _string_map(value, f"{where}.{name}")
        elif not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
            raise WebError(400, f"{where}.{name} must be {_JSON_TYPE[kind]}")


_JSON_TYPE = {str: "a string", int: "an integer", list: "a list", dict: "an object"}
_STATUSES = ("firing", "resolved")
# Alertmanager's webhook (version 4) and Grafana's (version 1): what every delivery carries, and what
# some carry; anything else is allowed (both add fields over time).
_BATCH: dict[str, tuple[str, dict[str, type], dict[str, type]]] = {"4": ("alertmanager", {"groupKey": str, "status": str, "receiver": str, "alerts": list},
                {"groupLabels": dict, "commonLabels": dict, "commonAnnotations": dict, "externalURL": str,
                 "truncatedAlerts": int}),
          "1": ("grafana", {"groupKey": str, "status": str, "receiver": str, "alerts": list, "orgId": int},
                {"groupLabels": dict, "commonLabels": dict, "commonAnnotations": dict, "externalURL": str,
                 "truncatedAlerts": int, "title": str, "state": str, "message": str})}
_ALERT = ({"status": str, "labels": dict, "startsAt": str, "fingerprint": str},
          {"annotations": dict, "endsAt": str, "generatorURL": str, "silenceURL": str, "dashboardURL": str,
           "panelURL": str, "valueString": str})


def _alerts(p: dict[str, Any]) -> Trigger:
    version = p.get("version")
    if version not in _BATCH:
        raise WebError(400, f"alert batch version {str(version)[:10]!r} is neither Alertmanager's 4 nor Grafana's 1")
    source, required, optional = _BATCH[version]
    _fields(p, source, required, optional)
    status = p["status"]
    if status not in _STATUSES:
        raise WebError(400, f"{source}.status must be firing or resolved, not {status[:20]!r}")
    if not p["alerts"]:
        raise WebError(400, f"{source}.alerts is empty: a delivery carries at least one alert")
    alerts = []
    for n, a in enumerate(p["alerts"]):
        where = f"{source}.alerts[{n}]"
        if not isinstance(a, dict):
            raise WebError(400, f"{where} must be an object")
        _fields(a, where, *_ALERT)
        if a["status"] not in _STATUSES:
            raise WebError(400, f"{where}.status must be firing or resolved, not {a['status'][:20]!r}")
        alerts.append(Alert(a["status"], dict(a["labels"]), a["fingerprint"], a["startsAt"]))
    basis = json.dumps([p["groupKey"], status, sorted((a.fingerprint, a.starts_at, a.status) for a in alerts)])
    key = "alerts-" + hashlib.sha256(basis.encode()).hexdigest()
    return Trigger("alerts", source, key, status=status, alerts=tuple(alerts),
                   details={"groupKey": p["groupKey"][:200], "alerts": len(alerts)})


_COMMAND = {"action": str, "site": str, "reason": str, "dry_run": bool, "force": bool}


def _command(p: dict[str, Any], signature: str) -> Trigger:
    unknown = sorted(set(p) - set(_COMMAND))
    if unknown:
        raise WebError(400, f"unknown command field(s) {', '.join(k[:20] for k in unknown[:5])}; "
                            f"known: {', '.join(_COMMAND)}")
    for key, kind in _COMMAND.items():
        if key in p and not isinstance(p[key], kind):
            raise WebError(400, f"{key} must be {'true or false' if kind is bool else 'a string'}")
    action = p["action"]
    if action not in ACTIONS:
        raise WebError(400, f"action must be one of {', '.join(ACTIONS)}, not {action[:40]!r}")
    key = "cmd-" + hashlib.sha256(signature.strip().lower().encode()).hexdigest()
    return Trigger("command", "command", key, action=action, site=p.get("site", ""),
                   reason=p.get("reason", "")[:300], dry_run=p.get("dry_run", False), force=p.get("force", False))
