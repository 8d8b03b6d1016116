"""The Functions namespace API (OpenWhisk REST): non-blocking invokes and activation records.

DigitalOcean Functions namespaces run OpenWhisk; a function invokes another with
`POST /api/v1/namespaces/{ns}/actions/{package}/{action}?blocking=false` (202 `{"activationId"}`)
and reads the outcome later from `GET /api/v1/namespaces/{ns}/activations/{id}` (404 until the
activation has finished). Authentication is HTTP Basic with a namespace access key
(`doctl serverless key create`): key id as user, secret as password.

An invoke is retried only when the namespace said it did not accept it (429 too many requests,
503 unavailable), after `Retry-After` and within the deadline. Any other failure after the request
was sent (a 5xx, a timeout, a dropped connection) may or may not have started the function, so it
is never re-sent: it is reported as uncertain, and the caller watches for the outcome instead of
risking a second backup.
"""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

from drkit.core import log
from drkit.core.deadline import Deadline
from drkit.core.errors import DrkitError
from drkit.core.secret import Secret
from drkit.platform.config import secure_url

PACKAGE = "dr"
DISPATCH_REF = "dispatch_ref"  # the invoke parameter every function echoes in its result (platform/runtime.py)
RETRY_STATUSES = (429, 503)
MAX_ATTEMPTS = 4
MAX_WAIT_S = 20.0


class DispatchError(DrkitError):
    """An invoke that failed; `uncertain` when the function may have started anyway, `retryable` when it
    certainly did not and a later try may succeed (too many requests, unavailable, connection refused);
    neither: the namespace refused it for good (a revoked key, a missing function)."""

    def __init__(self, message: str, *, uncertain: bool, http_status: int | None = None, retryable: bool = False):
        self.uncertain = uncertain
        self.http_status = http_status
        self.retryable = retryable and not uncertain
        super().__init__(message)


@dataclass(frozen=True)
class FunctionsApi:
    host: str  # https://faas-<region>-<id>.doserverless.co
    namespace: str
    key_id: str
    secret: Secret
    package: str = PACKAGE
    timeout_s: float = 10.0

    @classmethod
    def from_env(cls, environ: Mapping[str, str], problems: list[str]) -> FunctionsApi | None:
        """DRKIT_FUNCTIONS_KEY (id:secret) and the namespace (DRKIT_FUNCTIONS_API_HOST/NAMESPACE, or
        the __OW_API_HOST/__OW_NAMESPACE a running function sees); None with `problems` added."""
        host = (environ.get("DRKIT_FUNCTIONS_API_HOST") or environ.get("__OW_API_HOST") or "").strip().rstrip("/")
        namespace = (environ.get("DRKIT_FUNCTIONS_NAMESPACE") or environ.get("__OW_NAMESPACE") or "").strip()
        key = environ.get("DRKIT_FUNCTIONS_KEY", "").strip()
        before = len(problems)
        if not host:
            problems.append("the Functions API host is unknown: set DRKIT_FUNCTIONS_API_HOST "
                            "(doctl serverless status shows it) or run inside DigitalOcean Functions")
        elif not secure_url(host):
            problems.append("DRKIT_FUNCTIONS_API_HOST must be an https:// URL")
        if not namespace:
            problems.append("the Functions namespace is unknown: set DRKIT_FUNCTIONS_NAMESPACE (fn-…)")
        key_id, sep, secret = key.partition(":")
        if not sep or not key_id or len(secret) < 16:
            problems.append("DRKIT_FUNCTIONS_KEY must be a namespace access key as <key id>:<secret> "
                            "(doctl serverless key create --name drkit-scheduler --expiration never)")
        if len(problems) > before:
            return None
        return cls(host, namespace, key_id, Secret(secret))

    def _url(self, path: str) -> str:
        return f"{self.host}/api/v1/namespaces/{quote(self.namespace, safe='')}/{path}"

    def _request(self, method: str, url: str, **kw: Any) -> Any:
        import requests

        return requests.request(method, url, auth=(self.key_id, self.secret.reveal()), timeout=self.timeout_s,
                                headers={"Accept": "application/json"}, **kw)

    def invoke(self, action: str, params: Mapping[str, Any], deadline: Deadline) -> str:
        """Start `<package>/<action>` without waiting; its activation id, or DispatchError."""
        import requests

        url = self._url(f"actions/{self.package}/{quote(action, safe='')}")
        for attempt in range(1, MAX_ATTEMPTS + 1):
            try:
                r = self._request("POST", url, params={"blocking": "false"}, json=dict(params))
            except requests.ConnectionError as exc:
                if _refused(exc):  # nothing was sent: the namespace did not accept it
                    raise DispatchError(f"the Functions API at {self.host} refused the connection",
                                        uncertain=False, retryable=True) from None
                raise DispatchError(f"invoking dr/{action}: the connection failed after the request was sent "
                                    "(it may have started)", uncertain=True) from None
            except requests.RequestException as exc:
                raise DispatchError(f"invoking dr/{action}: {type(exc).__name__} (it may have started)",
                                    uncertain=True) from None
            if r.status_code == 202:
                activation = _json(r).get("activationId")
                if not isinstance(activation, str) or not activation:
                    raise DispatchError(f"invoking dr/{action}: 202 without an activationId", uncertain=True)
                return activation
            if r.status_code in RETRY_STATUSES and attempt < MAX_ATTEMPTS:
                wait = _retry_after(r.headers.get("Retry-After"), attempt)
                if deadline.remaining() > wait + 5:
                    log.info("functions API asked to wait", status=r.status_code, wait_s=wait, action=action)
                    time.sleep(wait)
                    continue
            uncertain = r.status_code >= 500 and r.status_code not in RETRY_STATUSES
            raise DispatchError(f"invoking dr/{action}: HTTP {r.status_code} {_error(r)}"
                                + (" (it may have started)" if uncertain else ""),
                                uncertain=uncertain, http_status=r.status_code,
                                retryable=r.status_code in RETRY_STATUSES)
        raise AssertionError("unreachable")

    def find(self, action: str, dispatch_ref: str, since: dt.datetime, limit: int = 200) -> dict[str, Any] | None:
        """The finished activation of `<package>/<action>` whose result echoes `dispatch_ref` (a dispatch whose
        answer was lost: did it start after all?), among those since `since`; None when there is none yet."""
        r = self._request("GET", self._url("activations"),
                          params={"name": f"{self.package}/{action}", "since": str(int(since.timestamp() * 1000)),
                                  "limit": str(limit), "docs": "true"})
        if r.status_code != 200:
            raise DrkitError(f"listing activations of dr/{action}: HTTP {r.status_code} {_error(r)}")
        try:
            found = r.json()
        except ValueError:
            return None
        for record in found if isinstance(found, list) else []:
            result = ((record or {}).get("response") or {}).get("result") if isinstance(record, dict) else None
            if isinstance(result, dict) and result.get(DISPATCH_REF) == dispatch_ref:
                return dict(record)
        return None

    def activation(self, activation_id: str) -> dict[str, Any] | None:
        """The activation record, or None while it has none yet (running, or never started)."""
        r = self._request("GET", self._url(f"activations/{quote(activation_id, safe='')}"))
        if r.status_code == 404:
            return None
        if r.status_code != 200:
            raise DrkitError(f"reading activation {activation_id}: HTTP {r.status_code} {_error(r)}")
        return _json(r)


def _refused(exc: Exception) -> bool:
    return "Connection refused" in str(exc) or "NewConnectionError" in str(exc)


def _json(r: Any) -> dict[str, Any]:
    try:
        value = r.json()
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


def _error(r: Any) -> str:
    text = str(_json(r).get("error") or "").strip()
    return f"({text[:160]})" if text else ""


def _retry_after(header: str | None, attempt: int) -> float:
    if header and header.strip().isdigit():
        return min(float(header.strip()), MAX_WAIT_S)
    return min(2.0 ** (attempt - 1), MAX_WAIT_S)


def ended_at(record: Mapping[str, Any]) -> dt.datetime | None:
    """When the activation ended, by its own record (`end`, ms since the epoch)."""
    end = record.get("end")
    if isinstance(end, (int, float)) and not isinstance(end, bool) and end > 0:
        return dt.datetime.fromtimestamp(end / 1000, dt.UTC)
    return None


def outcome(record: Mapping[str, Any]) -> tuple[str, str | None, int | None]:
    """(state, error, duration_ms) of a finished activation: succeeded, failed or timed_out.

    OpenWhisk sets `response.success` false when the result held `error` or the function crashed;
    drkit's functions also say `ok: false` for a run that did not do its job."""
    response = record.get("response") or {}
    result = response.get("result")
    result = result if isinstance(result, dict) else {}
    duration = record.get("duration")
    duration_ms = int(duration) if isinstance(duration, (int, float)) else None
    error = result.get("error")
    if response.get("success") is True and result.get("ok", True) is not False and not error:
        return "succeeded", None, duration_ms
    text = str(error or result.get("decision") or response.get("status") or "failed")[:300]
    if "exceeded its time limits" in text or "timed out" in text.lower():
        return "timed_out", text, duration_ms
    return "failed", text, duration_ms
