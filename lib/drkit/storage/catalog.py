"""The catalog of backups, built from one LIST of `db/<name>/` (no per-backup reads).

A backup is *complete* when both its data object and its manifest exist (the
manifest is written only after the data upload completed). Everything else is
reported, never silently treated as a backup:

* data without a manifest: an upload whose run died before the manifest was
  written (or is being written right now): an *orphan*, removed by
  `garbage()` once it is older than the grace period;
* a manifest without data: something deleted the data behind drkit's back:
  *broken*, reported to the operator, never auto-deleted.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, TypeVar

from drkit.policy import layout
from drkit.policy.retention import Item
from drkit.storage.store import ObjectInfo, Store, UploadInfo

ORPHAN_GRACE = dt.timedelta(hours=6)  # far beyond the 15-minute function limit


@dataclass
class Entry:
    database: str
    id: str
    objects: dict[str, ObjectInfo] = field(default_factory=dict)  # suffix -> object

    @property
    def time(self) -> dt.datetime:
        return layout.id_time(self.id)

    @property
    def complete(self) -> bool:
        return layout.DATA_SUFFIX in self.objects and layout.MANIFEST_SUFFIX in self.objects

    @property
    def orphan(self) -> bool:
        return layout.DATA_SUFFIX in self.objects and layout.MANIFEST_SUFFIX not in self.objects

    @property
    def broken(self) -> bool:
        return layout.MANIFEST_SUFFIX in self.objects and layout.DATA_SUFFIX not in self.objects

    @property
    def pinned(self) -> bool:
        return layout.PINNED_SUFFIX in self.objects

    @property
    def verified(self) -> bool:
        return layout.VERIFIED_SUFFIX in self.objects

    @property
    def size(self) -> int:
        d = self.objects.get(layout.DATA_SUFFIX)
        return d.size if d else 0

    @property
    def data_key(self) -> str:
        return layout.data_key(self.database, self.id)

    @property
    def manifest_key(self) -> str:
        return layout.manifest_key(self.database, self.id)

    def item(self) -> Item:
        return Item(self.id, self.time, done=self.complete, pinned=self.pinned, verified=self.verified)

    def summary(self) -> dict[str, Any]:
        return {
            "database": self.database,
            "id": self.id,
            "time": self.time.isoformat(),
            "key": self.data_key,
            "size": self.size,
            "complete": self.complete,
            "pinned": self.pinned,
            "verified": self.verified,
        }


def list_backups(store: Store, database: str) -> list[Entry]:
    """Every backup id of one database, newest first."""
    entries: dict[str, Entry] = {}
    for obj in store.list_objects(layout.db_prefix(database)):
        parsed = layout.parse_key(obj.key)
        if parsed is None or parsed[0] != database:
            continue
        _, backup_id, suffix = parsed
        entries.setdefault(backup_id, Entry(database, backup_id)).objects[suffix] = obj
    return sorted(entries.values(), key=lambda e: e.id, reverse=True)


def list_databases(store: Store) -> list[str]:
    names = set()
    for obj in store.list_objects("db/"):
        parsed = layout.parse_key(obj.key)
        if parsed:
            names.add(parsed[0])
    return sorted(names)


def find(store: Store, ref: str, database: str | None = None) -> Entry:
    """Resolve `latest`, an id, or a data/manifest key to a complete backup."""
    from drkit.core.errors import ConfigError

    parsed = layout.parse_key(ref)
    if parsed:
        database, ref = parsed[0], parsed[1]
    if database is None:
        raise ConfigError(f"say which database {ref!r} belongs to (--db NAME), or give the full key")
    entries = [e for e in list_backups(store, database) if e.complete]
    if not entries:
        raise ConfigError(f"database {database!r} has no complete backups in the bucket")
    found = pick(entries, ref)
    if found is None:
        raise ConfigError(f"no complete backup {ref!r} for database {database!r}; see `drkit backups list --db {database}`")
    return found


class _HasId(Protocol):
    @property
    def id(self) -> str: ...


E = TypeVar("E", bound=_HasId)


def pick(newest_first: list[E], ref: str) -> E | None:
    """`latest` or an id among entries listed newest first (database or config backups)."""
    if ref == "latest":
        return newest_first[0] if newest_first else None
    return next((e for e in newest_first if e.id == ref), None)


def read_manifest(store: Store, entry: Entry, trusted: Sequence[Any]) -> dict[str, Any]:
    """The manifest, believed only when signed by a trusted key for this very backup (see signed.py):
    what any step that acts on the backup (restore, verify) must use."""
    from drkit.storage import signed

    manifest = signed.get_json(store, entry.manifest_key, trusted, f"the manifest of backup {entry.database} {entry.id}")
    return _checked(manifest, entry)


def _checked(manifest: Any, entry: Entry) -> dict[str, Any]:
    from drkit.core.errors import IntegrityError

    if not isinstance(manifest, dict) or manifest.get("id") != entry.id or "sha256" not in manifest \
            or manifest.get("key", entry.data_key) != entry.data_key \
            or manifest.get("database", entry.database) != entry.database:
        raise IntegrityError(f"{entry.manifest_key} is not a drkit manifest for backup {entry.database} {entry.id}")
    return manifest


@dataclass(frozen=True)
class Garbage:
    orphans: list[Entry]
    stale_uploads: list[UploadInfo]
    broken: list[Entry]


def garbage(store: Store, entries: list[Entry], database: str, now: dt.datetime) -> Garbage:
    """Leftovers of killed runs that are old enough to be certainly dead."""
    orphans = [e for e in entries if e.orphan and now - started(e.id, e.objects[layout.DATA_SUFFIX].last_modified) > ORPHAN_GRACE]
    uploads = [u for u in store.list_uploads(layout.db_prefix(database)) if now - upload_started(u, _db_id(u.key)) > ORPHAN_GRACE]
    return Garbage(orphans, uploads, [e for e in entries if e.broken])


def started(backup_id: str, reported: dt.datetime) -> dt.datetime:
    """The later of the store's timestamp and the time in drkit's own id.

    A live upload of an overlapping run must never look old, even if a store
    reports a wrong time (moto reports a fixed 2010 date for uploads).
    """
    return max(reported, layout.id_time(backup_id))


def upload_started(upload: UploadInfo, backup_id: str | None) -> dt.datetime:
    """When an incomplete upload began (`backup_id`: the id its key carries, if any)."""
    return started(backup_id, upload.initiated) if backup_id else upload.initiated


def _db_id(key: str) -> str | None:
    parsed = layout.parse_key(key)
    return parsed[1] if parsed else None
