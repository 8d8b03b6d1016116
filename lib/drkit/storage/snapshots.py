"""snapshot-rotate's records: the snapshot actions it started and is watching, and its claim on each slot.

Signed by snapshot-rotate only: a planted slot claim never stops a snapshot (it is removed and the slot
claimed again), and a planted pending action is never "completed" on anyone's word.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Any, ClassVar

from drkit.core.fields import Fields
from drkit.storage.records import Record

WRITERS = ("snapshot-rotate",)


@dataclass(frozen=True)
class Pending(Record):
    """action id -> {resource_type, resource_id, resource_name, name, slot, started}."""

    TYPE: ClassVar[str] = "snapshot-pending"
    WRITERS: ClassVar[tuple[str, ...]] = WRITERS

    actions: dict[str, dict[str, Any]] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {"actions": self.actions}

    @classmethod
    def from_fields(cls, f: Fields) -> Pending:
        out: dict[str, dict[str, Any]] = {}
        for action_id, a in f.mapping("actions", max_items=10_000).items():
            if not action_id.isdigit():
                raise f.fail("actions", f"{action_id[:20]!r} is not an action id")
            out[action_id] = {"resource_type": a.text("resource_type", choices=("droplet", "volume")),
                              "resource_id": a.json("resource_id"), "resource_name": a.text("resource_name", max_len=255),
                              "name": a.text("name", max_len=255), "slot": a.time("slot").isoformat(),
                              "started": a.time("started").isoformat()}
            a.done()
        return cls(out)


@dataclass(frozen=True)
class SlotClaim(Record):
    TYPE: ClassVar[str] = "snapshot-slot"
    WRITERS: ClassVar[tuple[str, ...]] = WRITERS

    name: str
    at: dt.datetime

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "at": self.at.isoformat()}

    @classmethod
    def from_fields(cls, f: Fields) -> SlotClaim:
        return cls(f.text("name", max_len=255), f.time("at"))


STATUS_KEY = "status/snapshots.json"


@dataclass(frozen=True)
class SnapshotStatus(Record):
    """Each protected resource's newest snapshot, here and in its policy's DR region (health-probe judges it)."""

    TYPE: ClassVar[str] = "snapshot-status"
    WRITERS: ClassVar[tuple[str, ...]] = WRITERS

    at: dt.datetime
    resources: tuple[dict[str, Any], ...] = ()  # {resource, newest_at, newest, dr_region, dr_newest_at, max_age_s}

    def to_json(self) -> dict[str, Any]:
        return {"at": self.at.isoformat(), "resources": list(self.resources)}

    @classmethod
    def from_fields(cls, f: Fields) -> SnapshotStatus:
        def iso(t: dt.datetime | None) -> str | None:
            return t.isoformat() if t else None

        out = []
        for r in f.objects("resources", max_items=5000):  # times kept as the ISO text they were written as
            out.append({"resource": r.text("resource", max_len=300), "newest": r.text("newest", nullable=True),
                        "newest_at": iso(r.time("newest_at", nullable=True)),
                        "max_age_s": r.integer("max_age_s", lo=0, hi=10**9),
                        "dr_region": r.text("dr_region", nullable=True, max_len=10),
                        "dr_newest_at": iso(r.time("dr_newest_at", nullable=True))})
            r.done()
        return cls(f.time("at"), tuple(out))
