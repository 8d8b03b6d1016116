"""Time: the function's deadline (one object every long step consults) and the wall clock."""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Callable

Clock = Callable[[], dt.datetime]  # injected so that tests control "now"


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


class Deadline:
    """Absolute deadline on the monotonic clock. `None` seconds = no deadline (CLI)."""

    def __init__(self, seconds: float | None):
        self._end = None if seconds is None else time.monotonic() + seconds

    @classmethod
    def from_context(cls, context: object, default_s: float | None = None) -> Deadline:
        getter = getattr(context, "get_remaining_time_in_millis", None)
        if callable(getter):
            try:
                return cls(max(0.0, float(getter()) / 1000.0))
            except (TypeError, ValueError):
                pass
        return cls(default_s)

    def remaining(self) -> float:
        """Seconds left (inf without a deadline)."""
        return float("inf") if self._end is None else self._end - time.monotonic()

    def expired(self, margin: float = 0.0) -> bool:
        return self.remaining() <= margin

    def __repr__(self) -> str:
        r = self.remaining()
        return "Deadline(none)" if r == float("inf") else f"Deadline({r:.1f}s left)"
