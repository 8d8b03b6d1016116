"""The raw HTTP request of a `web: raw` call (body bytes, lower-case headers) and the refusal error it maps to."""

from __future__ import annotations

import base64
import binascii
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from drkit.core.errors import DrkitError


class WebError(DrkitError):
    """A refused web call: an HTTP status and a reason that echoes no secret."""

    def __init__(self, http_status: int, message: str):
        self.http_status = http_status
        super().__init__(message)


@dataclass(frozen=True)
class HttpRequest:
    method: str
    headers: Mapping[str, str]  # lower-case names
    body: bytes


def from_event(event: Mapping[str, Any]) -> HttpRequest | None:
    """The raw HTTP request of a web call, or None for a plain invocation."""
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
    if isinstance(raw, (bytes, bytearray)):
        body = bytes(raw)
    elif b64:
        try:
            body = base64.b64decode(str(raw), validate=True)
        except (binascii.Error, ValueError):
            raise WebError(400, "body is marked base64 but is not valid base64") from None
    else:
        body = str(raw).encode()
    return HttpRequest(method, {str(k).lower(): str(v) for k, v in headers.items()}, body)
