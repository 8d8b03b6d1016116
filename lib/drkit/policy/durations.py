"""Durations as operators write them (`90s`, `15m`, `2h`, `7d`), parsed strictly (pure)."""

from __future__ import annotations

import datetime as dt
import re

from drkit.core.errors import ConfigError

_INTERVAL = re.compile(r"^(\d+)(s|m|h|d)$")

def parse_interval(text: str, where: str) -> dt.timedelta:
    """`90s`, `75m`, `4h`, `8d` (m = minutes here)."""
    m = _INTERVAL.match(text.strip())
    if not m or int(m.group(1)) == 0:
        raise ConfigError(f"{where} must be a duration like 90s, 75m, 4h or 8d, not {text!r}")
    return dt.timedelta(**{{"s": "seconds", "m": "minutes", "h": "hours", "d": "days"}[m.group(2)]: int(m.group(1))})
