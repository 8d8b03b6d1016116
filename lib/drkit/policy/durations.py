"""Durations as operators write them (`90s`, `15m`, `2h`, `7d`), parsed strictly, and as they read them (pure)."""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Mapping

from drkit.core.errors import ConfigError

_INTERVAL = re.compile(r"^(\d+)(s|m|h|d)$")

def parse_interval(text: str, where: str) -> dt.timedelta:
    """`90s`, `75m`, `4h`, `8d` (m = minutes here)."""
    m = _INTERVAL.match(text.strip())
    if not m or int(m.group(1)) == 0:
        raise ConfigError(f"{where} must be a duration like 90s, 75m, 4h or 8d, not {text!r}")
    return dt.timedelta(**{{"s": "seconds", "m": "minutes", "h": "hours", "d": "days"}[m.group(2)]: int(m.group(1))})


def human(seconds: float) -> str:
    """`0.4 s`, `45 s`, `75 min`, `2.5 h`, `8.0 d`: what alerts, reports and charts print."""
    if seconds < 10:
        return f"{seconds:.1f} s"
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    if seconds < 172800:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 86400:.1f} d"


def interval_or_default(environ: Mapping[str, str], var: str, default: str, problems: list[str]) -> dt.timedelta:
    """The duration in `var` (or `default` when unset); a bad value is added to `problems` and the default used."""
    try:
        return parse_interval(environ.get(var, "").strip() or default, var)
    except ConfigError as exc:
        problems.extend(exc.problems)
        return parse_interval(default, var)
