"""Strict JSON for web payloads: one reading of the bytes, or a one-line reason why not.

Python's `json.loads` is lenient where two parsers of one delivery could disagree, and a
disagreement is how a refused alert becomes a failover: it accepts a UTF-8 byte-order mark,
`NaN`/`Infinity`, duplicate keys (the last one wins; other parsers keep the first), lone
surrogates (`"\\ud800"`), and it recurses without bound (100,000 nested arrays raise
RecursionError). `loads` refuses each of those, and anything that is not a JSON object at the
top, with a `StrictJSONError` that names the problem. RFC 8259 (I-JSON, RFC 7493, for the
duplicate keys, surrogates and non-finite numbers).
"""

from __future__ import annotations

import json
import re
from typing import Any

from drkit.core import jsontext

MAX_DEPTH = 32  # Alertmanager and Grafana payloads nest 4 deep
_STRINGS = re.compile(rb'"(?:[^"\\]|\\.)*"', re.S)
_BRACKETS = re.compile(rb"[\[\]{}]")


class StrictJSONError(ValueError):
    """The body is not one unambiguous JSON object; the message says why, in one line."""


def _constant(name: str) -> Any:
    raise StrictJSONError(f"{name} is not JSON (only finite numbers are)")


def _depth(data: bytes, limit: int) -> None:
    """Refuse nesting deeper than `limit` before any recursive parser sees it."""
    depth = 0
    for m in _BRACKETS.finditer(_STRINGS.sub(b'""', data)):
        if m.group() in (b"[", b"{"):
            depth += 1
            if depth > limit:
                raise StrictJSONError(f"nested deeper than {limit} levels")
        else:
            depth -= 1


def _check_strings(value: Any) -> None:
    """Lone surrogates decode from `\\ud800` escapes but are not Unicode text."""
    stack = [value]
    while stack:
        v = stack.pop()
        if isinstance(v, str):
            try:
                v.encode("utf-8")
            except UnicodeEncodeError:
                raise StrictJSONError("a string holds a lone surrogate escape (not Unicode text)") from None
        elif isinstance(v, dict):
            stack.extend(v.keys())
            stack.extend(v.values())
        elif isinstance(v, list):
            stack.extend(v)


def loads(data: bytes, *, max_depth: int = MAX_DEPTH) -> dict[str, Any]:
    """The JSON object in `data` (UTF-8, no BOM), or StrictJSONError."""
    if data.startswith(b"\xef\xbb\xbf"):
        raise StrictJSONError("body starts with a UTF-8 byte-order mark; send plain UTF-8 JSON")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise StrictJSONError(f"body is not valid UTF-8 (byte {exc.start})") from None
    _depth(data, max_depth)
    try:
        value = json.loads(text, object_pairs_hook=jsontext.unique_pairs, parse_constant=_constant)
    except StrictJSONError:
        raise
    except jsontext.DuplicateKeyError as exc:
        raise StrictJSONError(str(exc)) from None
    except json.JSONDecodeError as exc:
        raise StrictJSONError(f"body is not JSON: {exc.msg} at line {exc.lineno} column {exc.colno}") from None
    except (ValueError, RecursionError) as exc:  # int digits limit, or a bound this module missed
        raise StrictJSONError(f"body is not acceptable JSON: {str(exc)[:80]}") from None
    if not isinstance(value, dict):
        raise StrictJSONError(f"body must be a JSON object, not {type(value).__name__}")
    _check_strings(value)
    return value
