"""The scheduler's published status (`status/schedule.json`): every job's last run, next run and whether it is overdue.

A signed record (scheduler only), read by health-probe (a job failing or overdue, a silent scheduler),
the DR report and `drkit schedule status`. A job line nobody can parse is refused with the record.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Any, ClassVar

from drkit.core.fields import Fields
from drkit.storage.records import Record

KEY = "status/schedule.json"
STATES = ("never_run", "claimed", "dispatched", "uncertain", "retrying", "succeeded", "failed", "timed_out", "lost",
          "dispatch_failed", "skipped")


def _job(f: Fields) -> dict[str, Any]:
    def when(name: str) -> str | None:
        t = f.time(name, None, nullable=True)
        return t.isoformat() if t else None

    out = {"name": f.text("name", max_len=200), "job": f.text("job", max_len=40), "subject": f.text("subject", max_len=120),
           "cron": f.text("cron", max_len=120), "last_slot": when("last_slot"),
           "activation_id": f.text("activation_id", None, nullable=True, max_len=120),
           "state": f.text("state", choices=STATES), "duration_ms": f.integer("duration_ms", None, lo=0, hi=10**9,
                                                                              nullable=True),
           "error": f.text("error", None, nullable=True), "last_success": when("last_success"),
           "failures_in_a_row": f.integer("failures_in_a_row", 0, lo=0, hi=10**7),
           "overdue": f.flag("overdue"), "within_s": f.number("within_s", lo=0, hi=1e9),
           "next_run": when("next_run")}
    for extra in ("overlap", "attempts"):
        if f.has(extra):
            out[extra] = f.json(extra)
    f.done()
    return out


@dataclass(frozen=True)
class ScheduleStatus(Record):
    TYPE: ClassVar[str] = "schedule-status"
    WRITERS: ClassVar[tuple[str, ...]] = ("scheduler",)

    at: dt.datetime
    first_tick: dt.datetime
    decision: str
    jobs: tuple[dict[str, Any], ...] = ()
    cache: dict[str, Any] = field(default_factory=dict)  # the scheduler's own: what it read last tick, by ETag

    def to_json(self) -> dict[str, Any]:
        return {"format": "drkit.schedule-status/2", "at": self.at.isoformat(), "first_tick": self.first_tick.isoformat(),
                "decision": self.decision, "jobs": list(self.jobs), "cache": self.cache}

    @classmethod
    def from_fields(cls, f: Fields) -> ScheduleStatus:
        f.text("format", max_len=40)
        cache = f.json("cache", {})
        if not isinstance(cache, dict):
            raise f.fail("cache", "must be an object")
        return cls(f.time("at"), f.time("first_tick"), f.text("decision", max_len=20000),
                   tuple(_job(j) for j in f.objects("jobs", max_items=5000)), cache)
