"""What dr/backup-copy records about the off-site copy (signed; only backup-copy writes them).

`Ledger` lives in the copy (`state/copy/ledger.json`): every object copied, with its size, SHA-256, the
version the copy holds and until when the copy's Object Lock keeps it. `CopyStatus` is written to both
buckets (`state/copy/status.json`): the last run, the copy's immutability, and per database the newest
backup copied against the newest one in the primary (the copy's lag), which health-probe and the DR
report read from the primary without any copy credentials.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Any, ClassVar

from drkit.core.fields import Fields
from drkit.storage.records import Record

WRITERS = ("backup-copy",)
IMMUTABILITY = ("object-lock", "versioning", "none")
MAX_OBJECTS = 50_000


@dataclass(frozen=True)
class Copied:
    """One object as the copy holds it."""

    size: int
    sha256: str
    version: str  # the copy's VersionId ("null" in an unversioned bucket)
    copied_at: dt.datetime
    keep_until: dt.datetime  # the copy's own retention lets it go after this (and only once it is unlocked)
    locked_until: dt.datetime | None = None  # the server's Object Lock (COMPLIANCE) on this version

    def to_json(self) -> dict[str, Any]:
        return {"size": self.size, "sha256": self.sha256, "version": self.version,
                "copied_at": self.copied_at.isoformat(), "keep_until": self.keep_until.isoformat(),
                "locked_until": self.locked_until.isoformat() if self.locked_until else None}

    @classmethod
    def from_fields(cls, f: Fields) -> Copied:
        out = cls(f.integer("size", lo=0, hi=10**15), f.text("sha256", max_len=64), f.text("version", max_len=1024),
                  f.time("copied_at"), f.time("keep_until"), f.time("locked_until", None, nullable=True))
        f.done()
        return out


@dataclass(frozen=True)
class Ledger(Record):
    TYPE: ClassVar[str] = "copy-ledger"
    WRITERS: ClassVar[tuple[str, ...]] = WRITERS

    objects: dict[str, Copied] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {"objects": {k: v.to_json() for k, v in sorted(self.objects.items())}}

    @classmethod
    def from_fields(cls, f: Fields) -> Ledger:
        raw = f.mapping("objects", max_items=MAX_OBJECTS)
        return cls({str(key): Copied.from_fields(value) for key, value in raw.items()})


@dataclass(frozen=True)
class DbCopy:
    """One database in the copy: its newest copied backup against the newest one in the primary."""

    name: str
    newest_copied: str | None
    newest_copied_at: dt.datetime | None  # the backup's own time (from its id)
    newest_primary: str | None
    newest_primary_at: dt.datetime | None
    copies: int  # complete backups the copy holds
    locked_until: dt.datetime | None

    @property
    def lag(self) -> dt.timedelta:
        """How far the copy is behind the primary (zero when it holds the primary's newest)."""
        if self.newest_primary_at is None:
            return dt.timedelta(0)
        if self.newest_copied_at is None:
            return dt.timedelta(days=36500)
        return max(dt.timedelta(0), self.newest_primary_at - self.newest_copied_at)

    def to_json(self) -> dict[str, Any]:
        def t(x: dt.datetime | None) -> str | None:
            return x.isoformat() if x else None

        return {"name": self.name, "newest_copied": self.newest_copied, "newest_copied_at": t(self.newest_copied_at),
                "newest_primary": self.newest_primary, "newest_primary_at": t(self.newest_primary_at),
                "copies": self.copies, "locked_until": t(self.locked_until)}

    @classmethod
    def from_fields(cls, f: Fields) -> DbCopy:
        out = cls(f.text("name", max_len=64), f.text("newest_copied", None, nullable=True, max_len=40),
                  f.time("newest_copied_at", None, nullable=True),
                  f.text("newest_primary", None, nullable=True, max_len=40),
                  f.time("newest_primary_at", None, nullable=True), f.integer("copies", lo=0, hi=10**7),
                  f.time("locked_until", None, nullable=True))
        f.done()
        return out


@dataclass(frozen=True)
class CopyStatus(Record):
    TYPE: ClassVar[str] = "copy-status"
    WRITERS: ClassVar[tuple[str, ...]] = WRITERS

    at: dt.datetime
    target: str  # where the copy is: endpoint host / bucket / prefix (no credentials)
    immutability: str  # object-lock | versioning | none
    lock_days: int
    decision: str
    ok: bool
    databases: tuple[DbCopy, ...] = ()
    config_newest: str | None = None
    copied: int = 0
    bytes: int = 0
    seconds: float = 0.0
    failures: tuple[str, ...] = ()

    def database(self, name: str) -> DbCopy | None:
        return next((d for d in self.databases if d.name == name), None)

    def to_json(self) -> dict[str, Any]:
        return {"at": self.at.isoformat(), "target": self.target, "immutability": self.immutability,
                "lock_days": self.lock_days, "decision": self.decision, "ok": self.ok,
                "databases": [d.to_json() for d in self.databases], "config_newest": self.config_newest,
                "copied": self.copied, "bytes": self.bytes, "seconds": self.seconds, "failures": list(self.failures)}

    @classmethod
    def from_fields(cls, f: Fields) -> CopyStatus:
        return cls(f.time("at"), f.text("target", max_len=500), f.text("immutability", choices=IMMUTABILITY),
                   f.integer("lock_days", lo=0, hi=3650), f.text("decision", max_len=5000), f.flag("ok"),
                   tuple(DbCopy.from_fields(d) for d in f.objects("databases", max_items=1000)),
                   f.text("config_newest", None, nullable=True, max_len=40), f.integer("copied", lo=0, hi=10**9),
                   f.integer("bytes", lo=0, hi=10**16), f.number("seconds", lo=0, hi=10**6),
                   tuple(f.texts("failures", max_items=200)))
