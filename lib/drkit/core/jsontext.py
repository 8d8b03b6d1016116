"""JSON settings as operators write them, read so that a key given twice is refused, never "the last one wins"."""

from __future__ import annotations

import json
from typing import Any


class DuplicateKeyError(ValueError):
    """An object names one key twice: which value counts would be a guess."""


def unique_pairs(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """`json.loads`'s object_pairs_hook that refuses a key given twice (strictjson uses it for web payloads too)."""
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise DuplicateKeyError(f"duplicate key {key[:40]!r}: given twice in one object, and parsers disagree "
                                    "on which one counts; say it once")
        out[key] = value
    return out


def loads(text: str) -> Any:
    """`json.loads`, refusing duplicate keys (a ValueError, as for any other invalid JSON)."""
    return json.loads(text, object_pairs_hook=unique_pairs)
