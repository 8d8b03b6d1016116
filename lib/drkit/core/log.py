"""JSON log lines with one redaction step.

Rules (after Powertools' logger): fixed keys first (ts, level, function,
activation_id, msg), per-invocation context added with `bind()` and cleared by
`reset()` at the start of every call, the raw event is never logged, and every
line passes through `redact()` before it is written. Secrets are registered
once (from the configuration) with `register_secret()`; URL passwords and age
identities are masked by pattern as well, registered or not.
"""

from __future__ import annotations

import datetime as dt
import json
import re
import sys
import threading
from typing import Any, TextIO

_URL_PASSWORD = re.compile(r"(?P<scheme>[a-zA-Z][a-zA-Z0-9+.-]*://)(?P<user>[^:/@\s]*):(?P<pw>[^@\s]*)@")
_KV_PASSWORD = re.compile(r"(?i)\b(password|passwd|pwd|secret|token|sslpassword)\s*=\s*('[^']*'|\S+)")
_AGE_IDENTITY = re.compile(r"AGE-SECRET-KEY-1[0-9A-Z]+")
_MASK = "***"

_lock = threading.Lock()
_secrets: set[str] = set()
_context: dict[str, Any] = {}
_stream: TextIO | None = None
_levels = {"debug": 10, "info": 20, "warning": 30, "error": 40}
_min_level = 20


def register_secret(value: str | None) -> None:
    """Remember a secret value so that it is masked wherever it appears."""
    if value and len(value) >= 4:
        with _lock:
            _secrets.add(value)


def redact(text: str) -> str:
    """Mask registered secrets, URL passwords, key=value passwords and age identities."""
    text = _URL_PASSWORD.sub(lambda m: f"{m['scheme']}{m['user']}:{_MASK}@", text)
    text = _KV_PASSWORD.sub(lambda m: f"{m.group(1)}={_MASK}", text)
    text = _AGE_IDENTITY.sub("AGE-SECRET-KEY-" + _MASK, text)
    with _lock:
        secrets = sorted(_secrets, key=len, reverse=True)
    for secret in secrets:
        if secret in text:
            text = text.replace(secret, _MASK)
    return text


def redact_obj(obj: Any) -> Any:
    """Redact every string inside a JSON-like structure (keys included)."""
    if isinstance(obj, str):
        return redact(obj)
    if isinstance(obj, dict):
        return {redact(str(k)): redact_obj(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [redact_obj(v) for v in obj]
    return obj


_KEEP: Any = object()
STDERR: Any = object()  # resolved to sys.stderr when a line is written


def configure(level: str = "info", stream: TextIO | None = _KEEP) -> None:
    """Set the level; `stream` only when given (None = sys.stdout, STDERR = sys.stderr, at write time)."""
    global _min_level, _stream
    _min_level = _levels.get(level.lower(), 20)
    if stream is not _KEEP:
        _stream = stream


def reset(**context: Any) -> None:
    """Start a new invocation: drop all bound keys, bind the given ones."""
    with _lock:
        _context.clear()
        _context.update(context)


def context() -> dict[str, Any]:
    """A copy of the current invocation's context (function, activation id, ...)."""
    with _lock:
        return dict(_context)


def bind(**context: Any) -> None:
    with _lock:
        _context.update(context)


def unbind(*keys: str) -> None:
    with _lock:
        for k in keys:
            _context.pop(k, None)


def _emit(level: str, msg: str, fields: dict[str, Any]) -> None:
    if _levels[level] < _min_level:
        return
    record: dict[str, Any] = {
        "ts": dt.datetime.now(dt.UTC).isoformat(timespec="milliseconds"),
        "level": level,
    }
    with _lock:
        record.update(_context)
    record["msg"] = msg
    record.update(fields)
    line = redact(json.dumps(record, default=str, ensure_ascii=False))
    out = sys.stderr if _stream is STDERR else (_stream or sys.stdout)
    out.write(line + "\n")
    out.flush()


def debug(msg: str, **fields: Any) -> None:
    _emit("debug", msg, fields)


def info(msg: str, **fields: Any) -> None:
    _emit("info", msg, fields)


def warning(msg: str, **fields: Any) -> None:
    _emit("warning", msg, fields)


def error(msg: str, **fields: Any) -> None:
    _emit("error", msg, fields)
