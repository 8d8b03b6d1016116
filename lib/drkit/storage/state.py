"""Per-subject run state in Spaces (`state/...json`): last run, last success, failures in a row (signed records).

Written by the functions after every run and read by health-probe and the report: db-backup's
`state/db/<name>.json`, config-backup's `state/config.json`, restore-verify's `state/verify/<name>.json`,
each believed only from its own writer. Overlapping runs may overwrite each other's write (last
writer wins): the state is a summary for monitoring, never a lock or a source of truth for data.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import asdict, dataclass, replace
from typing import Any, ClassVar

from drkit.core import log
from drkit.core.fields import Fields
from drkit.storage import records
from drkit.storage.records import Record, RecordError
from drkit.storage.store import Store

MAX_COUNT = 10_000_000


@dataclass(frozen=True)
class RunInfo:
    """One run as its writer recorded it (fields a writer does not use stay None)."""

    status: str
    at: dt.datetime
    id: str | None = None  # the backup the run made (db-backup, config-backup) or checked (restore-verify)
    error: str | None = None
    duration_s: float | None = None
    bytes_out: int | None = None
    throughput_mb_s: float | None = None
    target_version: int | None = None
    bytes_restored: int | None = None
    seq: int | None = None  # the backup's place in its catalog chain
    skipped: tuple[str, ...] | None = None
    failed_units: tuple[str, ...] | None = None
    drift_changes: int | None = None

    def to_json(self) -> dict[str, Any]:
        out = {k: v for k, v in asdict(self).items() if v is not None}
        out["at"] = self.at.isoformat()
        for k in ("skipped", "failed_units"):
            if k in out:
                out[k] = list(out[k])
        return out

    @classmethod
    def from_fields(cls, f: Fields) -> RunInfo:
        def opt_texts(name: str) -> tuple[str, ...] | None:
            got = f.texts(name, None, max_items=5000, max_len=300)
            return None if got is None else tuple(got)

        info = cls(
            status=f.text("status", max_len=40), at=f.time("at"),
            id=f.text("id", None, max_len=80, nullable=True), error=f.text("error", None, nullable=True),
            duration_s=f.number("duration_s", None, lo=0, hi=1e7, nullable=True),
            bytes_out=f.integer("bytes_out", None, lo=0, hi=2**53, nullable=True),
            throughput_mb_s=f.number("throughput_mb_s", None, lo=0, hi=1e6, nullable=True),
            target_version=f.integer("target_version", None, lo=0, hi=1000, nullable=True),
            bytes_restored=f.integer("bytes_restored", None, lo=0, hi=2**53, nullable=True),
            seq=f.integer("seq", None, lo=0, hi=2**53, nullable=True),
            skipped=opt_texts("skipped"), failed_units=opt_texts("failed_units"),
            drift_changes=f.integer("drift_changes", None, lo=0, hi=MAX_COUNT, nullable=True))
        f.done()
        return info

    def get(self, name: str, default: Any = None) -> Any:
        """Dict-style access for the report's renderers, which read state as JSON."""
        value = self.to_json().get(name)
        return default if value is None else value


@dataclass(frozen=True)
class RunState(Record):
    subject: str
    last_run: RunInfo | None = None
    last_success: RunInfo | None = None
    consecutive_failures: int = 0

    def to_json(self) -> dict[str, Any]:
        return {"subject": self.subject, "consecutive_failures": self.consecutive_failures,
                "last_run": self.last_run.to_json() if self.last_run else None,
                "last_success": self.last_success.to_json() if self.last_success else None}

    @classmethod
    def from_fields(cls, f: Fields) -> RunState:
        def info(name: str) -> RunInfo | None:
            got = f.obj(name, None, nullable=True)
            return None if got is None else RunInfo.from_fields(got)

        return cls(subject=f.text("subject", max_len=80), last_run=info("last_run"), last_success=info("last_success"),
                   consecutive_failures=f.integer("consecutive_failures", lo=0, hi=MAX_COUNT))

    def after(self, run: RunInfo, *, success: bool) -> RunState:
        if success:
            return replace(self, last_run=run, last_success=run, consecutive_failures=0)
        return replace(self, last_run=run, consecutive_failures=min(MAX_COUNT, self.consecutive_failures + 1))


class BackupState(RunState):
    TYPE: ClassVar[str] = "db-state"
    WRITERS: ClassVar[tuple[str, ...]] = ("db-backup",)


class ConfigState(RunState):
    TYPE: ClassVar[str] = "config-state"
    WRITERS: ClassVar[tuple[str, ...]] = ("config-backup",)


class VerifyState(RunState):
    TYPE: ClassVar[str] = "verify-state"
    WRITERS: ClassVar[tuple[str, ...]] = ("restore-verify",)


def read(store: Store, key: str, cls: type[RunState], now: dt.datetime) -> RunState | None:
    """The state (None when none was written yet); RecordError when it is there but not believed."""
    got = records.read(store, key, cls, now)
    return got.value if got else None


def record_run(store: Store, key: str, cls: type[RunState], subject: str, run: RunInfo, *, success: bool,
               now: dt.datetime) -> RunState:
    try:
        current = read(store, key, cls, now) or cls(subject)
    except RecordError as exc:
        # the writer starts over; health-probe has reported the record it could not believe
        log.warning("state record not believed; writing a new one", key=key, error=exc.reason)
        current = cls(subject)
    new = replace(current, subject=subject).after(run, success=success)
    records.write(store, key, new, now)
    return new
