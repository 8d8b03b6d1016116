"""`Secret`: a string that never shows itself in repr, str or logs (`.reveal()` to use it)."""

from __future__ import annotations

from drkit.core import log


class Secret:
    """A string that never shows itself in repr/str/logs; `.reveal()` to use it."""

    __slots__ = ("_value",)

    def __init__(self, value: str):
        self._value = value
        log.register_secret(value)

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return "Secret('***')"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)
