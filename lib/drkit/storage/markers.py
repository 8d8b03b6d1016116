"""Markers beside a backup, as signed records: `.verified` and `.verify.json` (restore-verify), `.pinned` (operator).

Retention protects the newest *verified* backup and every *pinned* one, so a marker is believed only
from its writer: a planted `.verified` never takes the protection from the genuine verified backup.
A pin that does not verify (one written before pins were signed) still keeps its backup, because
keeping is the direction that cannot lose data, and is reported so an operator re-pins or removes it.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

from drkit import __version__
from drkit.core import log
from drkit.core.errors import DrkitError
from drkit.core.fields import Fields
from drkit.policy import layout
from drkit.storage import audit, records, state
from drkit.storage.records import Record
from drkit.storage.state import RunInfo, VerifyState
from drkit.storage.store import Store


@dataclass(frozen=True)
class VerifiedMarker(Record):
    TYPE: ClassVar[str] = "verified-marker"
    WRITERS: ClassVar[tuple[str, ...]] = ("restore-verify",)

    backup_id: str
    verified_at: dt.datetime

    def to_json(self) -> dict[str, Any]:
        return {"backup_id": self.backup_id, "verified_at": self.verified_at.isoformat(), "report": layout.REPORT_SUFFIX}

    @classmethod
    def from_fields(cls, f: Fields) -> VerifiedMarker:
        f.text("report", max_len=40)
        return cls(f.text("backup_id", max_len=40), f.time("verified_at"))


@dataclass(frozen=True)
class VerifyReport(Record):
    """restore-verify's report on one backup: checks with figures, restore duration, target version."""

    TYPE: ClassVar[str] = "verify-report"
    WRITERS: ClassVar[tuple[str, ...]] = ("restore-verify",)

    database: str
    backup_id: str
    status: str
    started_at: dt.datetime
    finished_at: dt.datetime
    checks: tuple[dict[str, Any], ...] = ()
    restore: dict[str, Any] | None = None
    error: str | None = None
    drkit_version: str = ""

    def to_json(self) -> dict[str, Any]:
        return {"format": "drkit.verify-report/1", "database": self.database, "backup_id": self.backup_id,
                "status": self.status, "started_at": self.started_at.isoformat(),
                "finished_at": self.finished_at.isoformat(), "checks": list(self.checks), "restore": self.restore,
                "error": self.error, "drkit_version": self.drkit_version}

    @classmethod
    def from_fields(cls, f: Fields) -> VerifyReport:
        f.text("format", max_len=40)
        checks = f.json("checks", [])
        restore = f.json("restore", None)
        if not isinstance(checks, list) or not all(isinstance(c, dict) for c in checks):
            raise f.fail("checks", "must be a list of objects")
        if restore is not None and not isinstance(restore, dict):
            raise f.fail("restore", "must be an object")
        if restore is not None:
            Fields(restore, f"{f.path}.restore").number("duration_s", None, lo=0, hi=1e7, nullable=True)
        return cls(f.text("database", max_len=80), f.text("backup_id", max_len=40),
                   f.text("status", max_len=20), f.time("started_at"), f.time("finished_at"), tuple(checks), restore,
                   f.text("error", None, nullable=True), f.text("drkit_version", "", max_len=40))


@dataclass(frozen=True)
class PinMarker(Record):
    TYPE: ClassVar[str] = "pin"
    WRITERS: ClassVar[tuple[str, ...]] = ("operator",)

    backup_id: str
    reason: str
    by: str

    def to_json(self) -> dict[str, Any]:
        return {"backup_id": self.backup_id, "reason": self.reason, "by": self.by}

    @classmethod
    def from_fields(cls, f: Fields) -> PinMarker:
        return cls(f.text("backup_id", max_len=40), f.text("reason", max_len=500), f.text("by", max_len=200))


@dataclass
class Markers:
    """Which backups the believed markers say are verified and pinned, and what was not believed."""

    verified: set[str] = field(default_factory=set)
    pinned: set[str] = field(default_factory=set)
    problems: list[str] = field(default_factory=list)  # one line per marker not believed


def read_markers(store: Store, entries: Sequence[Any], now: dt.datetime) -> Markers:
    """The `.verified` and `.pinned` markers of `entries` (storage/catalog.Entry or config entries), each read
    and checked against its writer; `database` None for config backups (pins only)."""
    jobs: list[tuple[str, str]] = []  # (backup id, kind) of each marker read
    wanted: list[tuple[str, type[Record]]] = []
    for e in entries:
        base = layout.backup_base(e.database, e.id) if getattr(e, "database", None) else layout.config_base(e.id)
        if layout.VERIFIED_SUFFIX in e.objects:
            jobs.append((e.id, "verified"))
            wanted.append((base + layout.VERIFIED_SUFFIX, VerifiedMarker))
        if layout.PINNED_SUFFIX in e.objects:
            jobs.append((e.id, "pinned"))
            wanted.append((base + layout.PINNED_SUFFIX, PinMarker))
    out = Markers()
    for (backup_id, kind), o in zip(jobs, records.read_many(store, wanted, now), strict=True):
        why = o.problem
        if why is None and o.got is None:
            why = "listed, but gone when read"
        elif why is None and o.got is not None and o.got.value.backup_id != backup_id:
            why = f"names backup {o.got.value.backup_id!r}, not this one"
        if why is None:
            (out.verified if kind == "verified" else out.pinned).add(backup_id)
            continue
        if kind == "pinned":  # keeping cannot lose data: an unbelieved pin still keeps its backup
            out.pinned.add(backup_id)
            out.problems.append(f"{backup_id}: pin not signed by an operator ({why}); it still keeps the "
                                "backup: re-pin it (drkit backups pin) or remove it")
        else:
            out.problems.append(f"{backup_id}: .verified marker not believed ({why}); not counted as verified")
    return out


def record_verification(store: Store, function: str, name: str, backup_id: str, result: dict[str, Any],
                        started: dt.datetime, finished: dt.datetime, repo: str = "primary") -> None:
    """restore-verify's records of one verification: the report, the `.verified` marker (written after a pass,
    removed after a failure), the state with the RTO figures, and the audit event; a failed write is noted in
    `result["report_error"]`, never raised (the verification happened). A proof of the off-site copy (`repo`
    "copy") keeps its own state (`state/verify/copy/<name>.json`) and leaves the primary's markers alone."""
    report = VerifyReport(name, backup_id, result["status"], started, finished,
                          tuple(o.to_dict() for o in result.get("checks_objects", [])), result.get("restore"),
                          result.get("error"), __version__)
    try:
        if repo == "primary":
            records.write(store, layout.marker_key(name, backup_id, layout.REPORT_SUFFIX), report, finished)
            marker = layout.marker_key(name, backup_id, layout.VERIFIED_SUFFIX)
            if result["status"] == "passed":
                records.write(store, marker, VerifiedMarker(backup_id, finished), finished)
            else:
                store.delete(marker)  # a backup that fails now is no longer "verified"
        restore = result.get("restore") or {}
        info = RunInfo(result["status"], finished, id=backup_id, error=result.get("error"),
                       duration_s=restore.get("duration_s"), throughput_mb_s=restore.get("throughput_mb_s"),
                       target_version=restore.get("target_version"), bytes_restored=restore.get("bytes_restored"),
                       skipped=tuple(result["skipped"]) if "skipped" in result else None)
        state.record_run(store, layout.verify_state_key(name, repo), VerifyState, name, info,
                         success=result["status"] == "passed", now=finished)
    except DrkitError as exc:
        result["report_error"] = str(exc)
        log.error("verification report could not be written", error=str(exc))
    audit.record(store, function, "verify.passed" if result["status"] == "passed" else "verify.failed",
                 {"database": name, "backup_id": backup_id, "status": result["status"], "error": result.get("error"),
                  "repo": repo})
    if repo == "primary":
        result["report_key"] = layout.marker_key(name, backup_id, layout.REPORT_SUFFIX)
