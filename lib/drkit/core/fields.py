"""Strict reading of parsed JSON (pure): each field by name, with its type and range, or an error naming its path.

Records read back from the bucket, and operator JSON, go through one `Fields` reader: a value of the
wrong type (`"x"` for a count, `true` for a number, a float for a whole number), out of its range
(`-1000000` failures), a time without a zone, a string longer than its limit or a key nobody knows is a
`FieldError` whose message starts with the path (`$.targets.web.failures: …`), never a crash later.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Iterator, Sequence
from typing import Any, TypeVar

MAX_TEXT = 4000
MAX_ITEMS = 10_000

T = TypeVar("T")


class FieldError(ValueError):
    """A JSON value is not what its reader expects; the message begins with the value's path."""


class _Missing:
    def __repr__(self) -> str:
        return "MISSING"


MISSING: Any = _Missing()


def _type_name(value: Any) -> str:
    return {dict: "an object", list: "a list", str: "a string", bool: "true/false", int: "a whole number",
            float: "a number", type(None): "null"}.get(type(value), type(value).__name__)


class Fields:
    """One JSON object, read field by field; `done()` refuses the keys nobody read."""

    def __init__(self, value: Any, path: str = "$"):
        if not isinstance(value, dict):
            raise FieldError(f"{path}: must be an object, not {_type_name(value)}")
        self.value: dict[str, Any] = value
        self.path = path
        self._seen: set[str] = set()

    def _get(self, name: str, default: Any) -> Any:
        self._seen.add(name)
        if name in self.value:
            return self.value[name]
        if default is MISSING:
            raise FieldError(f"{self.path}.{name}: missing")
        return default

    def fail(self, name: str, why: str) -> FieldError:
        return FieldError(f"{self.path}.{name}: {why}")

    def has(self, name: str) -> bool:
        return name in self.value

    def text(self, name: str, default: Any = MISSING, *, max_len: int = MAX_TEXT,
             choices: Sequence[str] | None = None, nullable: bool = False) -> Any:
        value = self._get(name, default)
        if value is default and name not in self.value:
            return value
        if value is None and nullable:
            return None
        if not isinstance(value, str):
            raise self.fail(name, f"must be a string, not {_type_name(value)}")
        if len(value) > max_len:
            raise self.fail(name, f"is {len(value)} characters long; at most {max_len}")
        if choices is not None and value not in choices:
            raise self.fail(name, f"must be one of {', '.join(choices)}, not {value[:40]!r}")
        return value

    def integer(self, name: str, default: Any = MISSING, *, lo: int, hi: int, nullable: bool = False) -> Any:
        value = self._get(name, default)
        if value is default and name not in self.value:
            return value
        if value is None and nullable:
            return None
        if isinstance(value, bool) or not isinstance(value, int):
            raise self.fail(name, f"must be a whole number, not {_type_name(value)}")
        if not lo <= value <= hi:
            raise self.fail(name, f"must be from {lo} to {hi}, not {value}")
        return value

    def number(self, name: str, default: Any = MISSING, *, lo: float, hi: float, nullable: bool = False) -> Any:
        value = self._get(name, default)
        if value is default and name not in self.value:
            return value
        if value is None and nullable:
            return None
        if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
            raise self.fail(name, f"must be a finite number, not {_type_name(value)}")
        if not lo <= value <= hi:
            raise self.fail(name, f"must be from {lo} to {hi}, not {value}")
        return float(value)

    def flag(self, name: str, default: Any = MISSING) -> Any:
        value = self._get(name, default)
        if value is default and name not in self.value:
            return value
        if not isinstance(value, bool):
            raise self.fail(name, f"must be true or false, not {_type_name(value)}")
        return value

    def time(self, name: str, default: Any = MISSING, *, nullable: bool = False) -> Any:
        """An ISO 8601 time with its zone (what drkit writes: `datetime.isoformat()` of an aware time)."""
        value = self._get(name, default)
        if value is default and name not in self.value:
            return value
        if value is None and nullable:
            return None
        return parse_time(value, f"{self.path}.{name}")

    def obj(self, name: str, default: Any = MISSING, *, nullable: bool = False) -> Any:
        value = self._get(name, default)
        if value is default and name not in self.value:
            return value
        if value is None and nullable:
            return None
        return Fields(value, f"{self.path}.{name}")

    def texts(self, name: str, default: Any = MISSING, *, max_items: int = MAX_ITEMS,
              max_len: int = MAX_TEXT) -> Any:
        value = self._get(name, default)
        if value is default and name not in self.value:
            return value
        items = self._list(name, value, max_items)
        for i, item in enumerate(items):
            if not isinstance(item, str) or len(item) > max_len:
                raise FieldError(f"{self.path}.{name}[{i}]: must be a string of at most {max_len} characters")
        return list(items)

    def objects(self, name: str, default: Any = MISSING, *, max_items: int = MAX_ITEMS) -> Any:
        value = self._get(name, default)
        if value is default and name not in self.value:
            return value
        return [Fields(item, f"{self.path}.{name}[{i}]") for i, item in enumerate(self._list(name, value, max_items))]

    def mapping(self, name: str, default: Any = MISSING, *, max_items: int = MAX_ITEMS) -> Any:
        """An object whose keys are names chosen by the writer (targets, jobs): each value read by the caller."""
        value = self._get(name, default)
        if value is default and name not in self.value:
            return value
        if not isinstance(value, dict):
            raise self.fail(name, f"must be an object, not {_type_name(value)}")
        if len(value) > max_items:
            raise self.fail(name, f"has {len(value)} entries; at most {max_items}")
        return {k: Fields(v, f"{self.path}.{name}.{k[:60]}") for k, v in value.items()}

    def json(self, name: str, default: Any = MISSING) -> Any:
        """A value kept as it is (figures shown to people, never acted on)."""
        return self._get(name, default)

    def _list(self, name: str, value: Any, max_items: int) -> list[Any]:
        if not isinstance(value, list):
            raise self.fail(name, f"must be a list, not {_type_name(value)}")
        if len(value) > max_items:
            raise self.fail(name, f"has {len(value)} items; at most {max_items}")
        return value

    def done(self) -> None:
        unknown = sorted(set(self.value) - self._seen)
        if unknown:
            raise FieldError(f"{self.path}: unknown key{'s' if len(unknown) > 1 else ''} "
                             f"{', '.join(repr(k[:40]) for k in unknown[:5])}")

    def __iter__(self) -> Iterator[str]:
        return iter(self.value)


def parse_time(value: Any, path: str = "$") -> dt.datetime:
    if not isinstance(value, str) or len(value) > 40:
        raise FieldError(f"{path}: must be an ISO 8601 time, not {_type_name(value)}")
    try:
        t = dt.datetime.fromisoformat(value)
    except ValueError:
        raise FieldError(f"{path}: {value[:40]!r} is not an ISO 8601 time") from None
    if t.tzinfo is None:
        raise FieldError(f"{path}: {value!r} has no time zone")
    return t
