"""JSON settings as operators write them, read so that a key given twice is refused, never "the last one wins"."""

from __future__ import annotations

import json
from typing import Any


class DuplicateKeyError(ValueError):
    """An object names one key twice: which value counts would be a guess."""


def _pairs(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise DuplicateKeyError(f"the key {key[:40]!r} is given twice in one object; say it once")
        out[key] = value
    return out


def loads(text: str) -> Any:
    """`json.loads`, refusing duplicate keys (a ValueError, as for any other invalid JSON)."""
    return json.loads(text, object_pairs_hook=_pairs)
