"""Retention policy: pure functions, no I/O, no hidden clock.

Semantics are restic's `forget` (restic/restic internal/restic/snapshot_policy.go,
doc/060_forget.rst):

* items are considered newest first; every rule is evaluated for every item and
  the results are ORed: one backup can be the hourly, daily and weekly one at once;
* `keep_last/hourly/daily/weekly/monthly/yearly = n` use calendar buckets in UTC
  (hour, day, ISO week Monday-Sunday, month, year): the newest backup of each of
  the last n buckets that *have* backups is kept; empty buckets do not count;
  `-1` (or `unlimited`) keeps every bucket;
* while a count is not used up, the oldest backup is kept as well ("oldest");
* `keep_within = 2y5m7d3h` keeps everything made within that duration of the
  newest backup (not of "now"), `keep_within_hourly/daily/... = D` keep one per
  bucket within D of the newest backup;
* the newest backup is the newest one not dated in the future.

Unlike borg, a backup kept by one rule still counts for the others; unlike
kopia, count rules have no time cut-off, so a long outage never expires old
dailies at once.

drkit adds a safety layer in `plan()` that no policy can override: the newest
completed backup (every one of them when several share its second: ids carry
seconds) and the newest verified backup are never deleted, pinned
backups are never deleted, a caller's own safety reason (`Item.keep_reason`,
e.g. config-backup's "newest archive where source X succeeded") keeps an item,
and anything that is not a completed backup is
ignored (never counted, never deleted).
"""

from __future__ import annotations

import datetime as dt
import enum
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, fields

UNLIMITED = -1


@dataclass(frozen=True)
class Duration:
    years: int = 0
    months: int = 0
    days: int = 0
    hours: int = 0

    def is_zero(self) -> bool:
        return not (self.years or self.months or self.days or self.hours)

    def before(self, t: dt.datetime) -> dt.datetime:
        """t minus this duration, with Go's AddDate normalisation (as restic)."""
        y = t.year - self.years
        m = t.month - self.months
        y += (m - 1) // 12
        m = (m - 1) % 12 + 1
        first = t.replace(year=y, month=m, day=1)
        return first + dt.timedelta(days=t.day - 1 - self.days, hours=-self.hours)

    def __str__(self) -> str:
        parts = [f"{v}{u}" for v, u in ((self.years, "y"), (self.months, "m"), (self.days, "d"), (self.hours, "h")) if v]
        return "".join(parts) or "0h"


_DURATION_RE = re.compile(r"^(?:(\d+)y)?(?:(\d+)m)?(?:(\d+)w)?(?:(\d+)d)?(?:(\d+)h)?$")


def parse_duration(text: str) -> Duration:
    """Parse restic-style durations: `7d`, `12h`, `1y6m`, `2w` (= 14d), `1y2m3d4h`."""
    m = _DURATION_RE.match(text.strip())
    if not text.strip() or not m or not any(m.groups()):
        raise ValueError(f"{text!r} is not a duration like 7d, 12h, 2w, 6m or 1y2m3d4h")
    y, mo, w, d, h = (int(g) if g else 0 for g in m.groups())
    return Duration(years=y, months=mo, days=d + 7 * w, hours=h)


@dataclass(frozen=True)
class Policy:
    last: int = 0
    hourly: int = 0
    daily: int = 0
    weekly: int = 0
    monthly: int = 0
    yearly: int = 0
    within: Duration = Duration()
    within_hourly: Duration = Duration()
    within_daily: Duration = Duration()
    within_weekly: Duration = Duration()
    within_monthly: Duration = Duration()
    within_yearly: Duration = Duration()

    def is_empty(self) -> bool:
        return all(
            (getattr(self, f.name) == 0 if isinstance(getattr(self, f.name), int) else getattr(self, f.name).is_zero())
            for f in fields(self)
        )

    def __str__(self) -> str:
        parts = []
        for f in fields(self):
            v = getattr(self, f.name)
            if isinstance(v, int) and v:
                parts.append(f"keep_{f.name}={'unlimited' if v == UNLIMITED else v}")
            elif isinstance(v, Duration) and not v.is_zero():
                parts.append(f"keep_{f.name}={v}")
        return " ".join(parts) or "(empty: keep everything)"


_COUNT_KEYS = ("last", "hourly", "daily", "weekly", "monthly", "yearly")
_WITHIN_KEYS = ("within", "within_hourly", "within_daily", "within_weekly", "within_monthly", "within_yearly")


def parse_policy(text: str) -> Policy:
    """Parse `keep_last=3 keep_daily=7 keep_within_hourly=7d` (commas or spaces).

    The `keep_` prefix is optional; counts take a positive number or
    `unlimited`; `within*` take durations. An empty policy is refused, as
    restic refuses one: keeping everything must be said explicitly
    (`keep_last=unlimited`).
    """
    values: dict[str, int | Duration] = {}
    items = [x for x in re.split(r"[\s,]+", text.strip()) if x]
    if not items:
        raise ValueError("retention policy is empty; say keep_last=unlimited to keep every backup")
    for item in items:
        key, sep, raw = item.partition("=")
        key = key.strip().lower().replace("-", "_")
        key = key[5:] if key.startswith("keep_") else key
        if not sep or not raw:
            raise ValueError(f"{item!r} is not key=value (e.g. keep_daily=7)")
        if key in values:
            raise ValueError(f"{key!r} is given twice")
        if key in _COUNT_KEYS:
            if raw.lower() in ("unlimited", "all", "-1"):
                values[key] = UNLIMITED
            elif raw.isdigit() and int(raw) > 0:
                values[key] = int(raw)
            else:
                raise ValueError(f"keep_{key} must be a positive whole number or 'unlimited', not {raw!r}")
        elif key in _WITHIN_KEYS:
            values[key] = parse_duration(raw)
        else:
            known = ", ".join("keep_" + k for k in _COUNT_KEYS + _WITHIN_KEYS)
            raise ValueError(f"unknown retention rule {item.split('=')[0]!r}; known: {known}")
    return Policy(**values)  # type: ignore[arg-type]


@dataclass(frozen=True)
class Item:
    """What retention needs to know about one backup."""

    id: str
    time: dt.datetime  # aware, UTC
    done: bool = True  # a completed, successful backup
    pinned: bool = False
    verified: bool = False
    keep_reason: str = ""  # a caller's safety rule that keeps this item whatever the policy says
    ignore_reason: str = ""  # why a not-`done` item is not a backup (e.g. nobody trusted signed it)


class Verdict(enum.StrEnum):
    KEEP = "keep"  # the policy keeps it
    DELETE = "delete"  # the policy does not keep it, nothing protects it
    PROTECTED = "protected"  # the policy would delete it; a safety rule keeps it
    PINNED = "pinned"  # an operator pinned it
    IGNORED = "ignored"  # not a completed backup: never counted, never deleted


@dataclass(frozen=True)
class Decision:
    id: str
    time: dt.datetime
    verdict: Verdict
    reasons: tuple[str, ...]

    @property
    def deletes(self) -> bool:
        return self.verdict is Verdict.DELETE


def _bucket(kind: str, t: dt.datetime, nr: int) -> int:
    if kind == "last":
        return nr
    if kind == "hourly":
        return t.year * 1000000 + t.month * 10000 + t.day * 100 + t.hour
    if kind == "daily":
        return t.year * 10000 + t.month * 100 + t.day
    if kind == "weekly":
        iso = t.isocalendar()
        return iso[0] * 100 + iso[1]
    if kind == "monthly":
        return t.year * 100 + t.month
    return t.year


def _newest_first(items: Iterable[Item]) -> list[Item]:
    # Ties broken by id so that the plan never depends on input order.
    return sorted(items, key=lambda i: (i.time, i.id), reverse=True)


def apply_policy(items: Sequence[Item], policy: Policy, now: dt.datetime) -> dict[str, list[str]]:
    """restic's ApplyPolicy: the reasons to keep each item; items not in the result go."""
    ordered = _newest_first(items)
    if policy.is_empty():
        return {i.id: ["policy is empty"] for i in ordered}
    if not ordered:
        return {}
    past = [i.time for i in ordered if i.time < now]
    latest = max(past) if past else None  # restic: Go's zero time, so every `within` rule matches

    counts = {k: getattr(policy, k) for k in _COUNT_KEYS}
    last_val = {k: -1 for k in _COUNT_KEYS}
    within_last = {k: -1 for k in _WITHIN_KEYS[1:]}
    keep: dict[str, list[str]] = {}
    n = len(ordered)
    for nr, cur in enumerate(ordered):
        reasons: list[str] = []
        if not policy.within.is_zero() and _within(cur.time, policy.within, latest):
            reasons.append(f"within {policy.within}")
        for kind in _COUNT_KEYS:
            if counts[kind] > 0 or counts[kind] == UNLIMITED:
                val = _bucket(kind, cur.time, nr)
                new_bucket = val != last_val[kind]
                # restic also keeps the oldest item while the count is not used up
                if new_bucket or nr == n - 1:
                    last_val[kind] = val
                    if counts[kind] > 0:
                        counts[kind] -= 1
                    reasons.append(kind if new_bucket else f"oldest {kind}")
        for key in _WITHIN_KEYS[1:]:
            within: Duration = getattr(policy, key)
            if not within.is_zero() and _within(cur.time, within, latest):
                kind = key.split("_", 1)[1]
                val = _bucket(kind, cur.time, nr)
                if val != within_last[key]:
                    within_last[key] = val
                    reasons.append(f"{kind} within {within}")
        if reasons:
            keep[cur.id] = reasons
    return keep


def _within(t: dt.datetime, d: Duration, latest: dt.datetime | None) -> bool:
    """restic: cur.Time.After(latest.AddDate(-y, -m, -d).Add(-h)), strictly after."""
    if latest is None:
        return True
    try:
        return t > d.before(latest)
    except (OverflowError, ValueError):  # cut-off before year 1: everything is within
        return True


def plan(items: Sequence[Item], policy: Policy, now: dt.datetime) -> list[Decision]:
    """The full retention plan, newest first: policy plus drkit's safety rules."""
    ordered = _newest_first(items)
    done = [i for i in ordered if i.done]
    kept = apply_policy(done, policy, now)
    # ids carry seconds: backups that share the newest second cannot be told apart, so all of them are the newest
    newest_done = {i.id for i in done if i.time == done[0].time} if done else set()
    newest_verified = next((i.id for i in done if i.verified), None)
    out: list[Decision] = []
    for item in ordered:
        if not item.done:
            out.append(Decision(item.id, item.time, Verdict.IGNORED, (item.ignore_reason or "not a completed backup",)))
            continue
        reasons = list(kept.get(item.id, []))
        safety = []
        if item.id in newest_done:
            safety.append("newest completed backup")
        if item.id == newest_verified:
            safety.append("newest verified backup")
        if item.time >= now:
            safety.append("dated in the future")
        if item.keep_reason:
            safety.append(item.keep_reason)
        if item.pinned:
            out.append(Decision(item.id, item.time, Verdict.PINNED, tuple(["pinned", *reasons, *safety])))
        elif reasons:
            out.append(Decision(item.id, item.time, Verdict.KEEP, tuple(reasons + safety)))
        elif safety:
            out.append(Decision(item.id, item.time, Verdict.PROTECTED, tuple(safety)))
        else:
            out.append(Decision(item.id, item.time, Verdict.DELETE, ("no rule keeps it",)))
    return out
