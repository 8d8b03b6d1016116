"""health-probe's records: its memory between runs (`state/health.json`) and what it publishes for others to read.

* `HealthState`: each target's hysteresis counters and status, and the highest catalog sequence number it
  has seen of each database and of the config (so a catalog rolled back to an older signed head is noticed);
* `HealthStatus` (`status/health.json`) and `HealthMetrics` (`status/health.prom`, the Prometheus text that
  dr/report's /metrics serves): written every run, believed only from health-probe's key.

A counter out of range (`failures: -1000000`) or a status nobody writes is refused when read; the run then
starts from fresh counters and alerts that its memory was not believed, never silently healthy.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Any, ClassVar

from drkit.core.fields import Fields
from drkit.storage.records import Record

WRITERS = ("health-probe",)
MAX_COUNT = 10_000_000
STATUSES = ("healthy", "unhealthy")


def _target(f: Fields) -> dict[str, Any]:
    """One target's state, checked field by field (the dict health/status.advance works on)."""
    last = f.obj("last", None, nullable=True)
    out: dict[str, Any] = {
        "status": f.text("status", choices=STATUSES), "failures": f.integer("failures", lo=0, hi=MAX_COUNT),
        "successes": f.integer("successes", lo=0, hi=MAX_COUNT), "since": f.time("since").isoformat(),
        "alerted_at": (lambda t: t.isoformat() if t else None)(f.time("alerted_at", None, nullable=True)),
        "warning": f.text("warning", None, nullable=True)}
    if last is not None:
        out["last"] = {"ok": last.flag("ok"), "detail": last.text("detail"), "at": last.time("at").isoformat()}
        last.done()
    f.done()
    return out


@dataclass(frozen=True)
class HealthState(Record):
    TYPE: ClassVar[str] = "health-state"
    WRITERS: ClassVar[tuple[str, ...]] = WRITERS

    updated_at: dt.datetime
    targets: dict[str, dict[str, Any]] = field(default_factory=dict)
    catalog: dict[str, int] = field(default_factory=dict)  # subject -> highest catalog seq seen
    failover: dict[str, Any] = field(default_factory=dict)  # requested_at, outcome, attempts, next_at (failover/watch)

    def to_json(self) -> dict[str, Any]:
        return {"updated_at": self.updated_at.isoformat(), "targets": self.targets, "catalog": self.catalog,
                "failover": self.failover}

    @classmethod
    def from_fields(cls, f: Fields) -> HealthState:
        targets = {name: _target(t) for name, t in f.mapping("targets", max_items=2000).items()}
        catalog: dict[str, int] = {}
        raw = f.json("catalog", {})
        if not isinstance(raw, dict) or len(raw) > 2000:
            raise f.fail("catalog", "must be an object of sequence numbers")
        for name, seq in raw.items():
            if isinstance(seq, bool) or not isinstance(seq, int) or not 0 <= seq < 2**53:
                raise f.fail("catalog", f"{str(name)[:40]}: {seq!r} is not a sequence number")
            catalog[str(name)] = seq
        fo = f.obj("failover", None)
        failover: dict[str, Any] = {}
        if fo is not None:
            for name in ("requested_at", "next_at"):
                t = fo.time(name, None, nullable=True)
                if t is not None:
                    failover[name] = t.isoformat()
            outcome = fo.text("outcome", None, max_len=40, nullable=True)
            attempts = fo.integer("attempts", None, lo=0, hi=MAX_COUNT, nullable=True)
            failover |= ({"outcome": outcome} if outcome else {}) | ({"attempts": attempts} if attempts else {})
            fo.done()
        return cls(f.time("updated_at"), targets, catalog, failover)


@dataclass(frozen=True)
class HealthStatus(Record):
    """What the last run found (status/health.json): healthy and unhealthy targets, each result."""

    TYPE: ClassVar[str] = "health-status"
    WRITERS: ClassVar[tuple[str, ...]] = WRITERS

    updated_at: dt.datetime
    healthy: tuple[str, ...] = ()
    unhealthy: tuple[str, ...] = ()
    targets: tuple[dict[str, Any], ...] = ()

    def to_json(self) -> dict[str, Any]:
        return {"updated_at": self.updated_at.isoformat(), "healthy": list(self.healthy),
                "unhealthy": list(self.unhealthy), "targets": list(self.targets)}

    @classmethod
    def from_fields(cls, f: Fields) -> HealthStatus:
        targets = f.json("targets")
        if not isinstance(targets, list) or not all(isinstance(t, dict) for t in targets):
            raise f.fail("targets", "must be a list of objects")
        return cls(f.time("updated_at"), tuple(f.texts("healthy", max_len=200)), tuple(f.texts("unhealthy", max_len=200)),
                   tuple(targets))


@dataclass(frozen=True)
class HealthMetrics(Record):
    """The Prometheus text of the last run (status/health.prom), served by dr/report's /metrics."""

    TYPE: ClassVar[str] = "health-metrics"
    WRITERS: ClassVar[tuple[str, ...]] = WRITERS

    text: str

    def to_json(self) -> dict[str, Any]:
        return {"text": self.text}

    @classmethod
    def from_fields(cls, f: Fields) -> HealthMetrics:
        return cls(f.text("text", max_len=2_000_000))
