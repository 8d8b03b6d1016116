"""The raw HTTP request of a `web: raw` call (body bytes, lower-case headers) and the refusal error it maps to."""

from __future__ import annotations

import base64
import binascii
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from drkit.core.errors import ConfigError, DrkitError


class WebError(DrkitError):
    """A refused web call: an HTTP status and a reason that echoes no secret."""

    def __init__(self, http_status: int, message: str):
        self.http_status = http_status
        super().__init__(message)


DEFAULT_MAX_BODY = 1024 * 1024  # a large Alertmanager group is well over 256 KiB
MAX_BODY_RANGE = (16 * 1024, 16 * 1024 * 1024)


@dataclass(frozen=True)
class HttpRequest:
    method: str
    headers: Mapping[str, str]  # lower-case names
    body: bytes
    body_error: str | None = None  # the body could not be read as sent (refused after authentication)


def body_limit(environ: Mapping[str, str]) -> int:
    """DRKIT_WEBHOOK_MAX_BODY (bytes; default 1 MiB), or ConfigError."""
    raw = environ.get("DRKIT_WEBHOOK_MAX_BODY", "").strip()
    if not raw:
        return DEFAULT_MAX_BODY
    lo, hi = MAX_BODY_RANGE
    if not raw.isdigit() or not lo <= int(raw) <= hi:
        raise ConfigError(f"DRKIT_WEBHOOK_MAX_BODY must be a whole number of bytes from {lo} to {hi}, not {raw[:20]!r}")
    return int(raw)


def too_large(size: int, limit: int) -> WebError:
    return WebError(413, f"body of {size} bytes is over the {limit} byte limit (DRKIT_WEBHOOK_MAX_BODY)")


def from_event(event: Mapping[str, Any], max_body: int = DEFAULT_MAX_BODY,
               methods: tuple[str, ...] = ("POST",)) -> HttpRequest | None:
    """The raw HTTP request of a web call, or None for a plain invocation.

    Refuses with 405 a method not in `methods` and with 413 a body over `max_body`, judged from the
    Content-Length header and the encoded length before anything is decoded. A body marked
    base64 that is not is kept as `body_error`: whoever sent it is authenticated first."""
    if isinstance(event.get("http"), Mapping):
        http = event["http"]
        raw = http.get("body") or ""
        method = str(http.get("method", "")).upper()
        headers = http.get("headers") or {}
        b64 = bool(http.get("isBase64Encoded"))
    elif "__ow_method" in event:
        raw = event.get("__ow_body") or ""
        method = str(event["__ow_method"]).upper()
        headers = event.get("__ow_headers") or {}
        b64 = bool(event.get("__ow_isBase64Encoded", not str(raw).lstrip().startswith(("{", "["))))
    else:
        return None
    lower = {str(k).lower(): str(v) for k, v in (headers.items() if isinstance(headers, Mapping) else [])}
    if method not in methods:
        raise WebError(405, f"method {method[:10] or '?'} not allowed; use {' or '.join(methods)}")
    declared = lower.get("content-length", "").strip()
    if declared.isdigit() and int(declared) > max_body:
        raise too_large(int(declared), max_body)
    body_error = None
    if isinstance(raw, (bytes, bytearray)):
        body = bytes(raw)
    elif b64:
        text = str(raw)
        if len(text) > 4 * ((max_body + 2) // 3):
            raise too_large(len(text) * 3 // 4, max_body)
        try:
            body = base64.b64decode(text, validate=True)
        except (binascii.Error, ValueError):
            body, body_error = b"", "body is marked base64 but is not valid base64"
    else:
        text = str(raw)
        if len(text) > max_body:  # a character is at least one byte
            raise too_large(len(text), max_body)
        try:
            body = text.encode()
        except UnicodeEncodeError:  # a lone surrogate delivered in the event's JSON
            body, body_error = b"", "body is not valid UTF-8"
    if len(body) > max_body:
        raise too_large(len(body), max_body)
    return HttpRequest(method, lower, body, body_error)
