"""The catalog of backups: one LIST of `db/<name>/`, read against db-backup's signed head (storage/chain.py).

A backup is *complete* when both its data object and its manifest exist (the
manifest is written only after the data upload completed), and *trusted* when
db-backup's signed catalog names it or its manifest verifies by db-backup's key.
Everything else is reported, never silently treated as a backup:

* data without a manifest: an upload whose run died before the manifest was
  written (or is being written right now): an *orphan*, removed by
  `garbage()` once it is older than the grace period;
* a manifest without data: something deleted the data behind drkit's back:
  *broken*, reported to the operator, never auto-deleted.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Any, Protocol, TypeVar

from drkit.core.errors import ConfigError, IntegrityError
from drkit.policy import layout
from drkit.policy.retention import Item
from drkit.storage import chain
from drkit.storage.store import ObjectInfo, Store, UploadInfo

ORPHAN_GRACE = dt.timedelta(hours=6)  # far beyond the 15-minute function limit
WRITERS = ("db-backup",)  # whose key may sign a database backup's manifest and catalog


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
        """Data or a signature without the manifest: a run that died before its commit marker (or is writing it)."""
        return layout.MANIFEST_SUFFIX not in self.objects and \
            (layout.DATA_SUFFIX in self.objects or layout.SIGNATURE_SUFFIX in self.objects)

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

    def item(self, *, trusted: bool = True, pinned: bool = False, verified: bool = False) -> Item:
        """What retention knows of it: `trusted` (in the signed catalog), and what its believed markers say."""
        return Item(self.id, self.time, done=self.complete and trusted, pinned=pinned, verified=verified)

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


def trusted_view(store: Store, database: str, now: dt.datetime, *,
                 verify_limit: int | None = None) -> chain.View[Entry]:
    """The database's listing read against db-backup's signed catalog (storage/chain.py)."""
    return chain.view(store, list_backups(store, database), layout.catalog_key(database), chain.DbHead, now,
                      verify_limit=verify_limit)


def find(store: Store, ref: str, database: str | None = None, *, now: dt.datetime | None = None,
         accept_rollback: bool = False) -> Entry:
    """Resolve `latest`, an id, or a data/manifest key to a complete backup db-backup's catalog trusts.

    `latest` refuses when the catalog's newest backup is missing from the bucket (deleted behind drkit's
    back): restoring the one before would silently roll back, unless the operator accepts it."""
    parsed = layout.parse_key(ref)
    if parsed:
        database, ref = parsed[0], parsed[1]
    if database is None:
        raise ConfigError(f"say which database {ref!r} belongs to (--db NAME), or give the full key")
    v = trusted_view(store, database, now or dt.datetime.now(dt.UTC))
    entries = v.trusted
    why = next((w for e, w in v.untrusted if e.id == ref), None)
    if why:
        raise ConfigError(f"backup {ref!r} of {database!r} is not trusted ({why}); see `drkit backups list --db "
                          f"{database}`")
    if not entries:
        planted = f" ({len(v.untrusted)} listed, none signed by db-backup)" if v.untrusted else ""
        raise ConfigError(f"database {database!r} has no complete backups in the bucket{planted}")
    found = pick(entries, ref)
    if found is None:
        raise ConfigError(f"no complete backup {ref!r} for database {database!r}; see `drkit backups list --db "
                          f"{database}`")
    if ref == "latest":
        newer = [x for x in v.missing if x.id > found.id]
        if newer and not accept_rollback:
            names = ", ".join(f"{x.id} (seq {x.seq})" for x in newer[:5])
            raise IntegrityError(f"the newest backup{'s' if len(newer) > 1 else ''} of {database} in db-backup's "
                                 f"catalog {'are' if len(newer) > 1 else 'is'} missing from the bucket: {names}; "
                                 f"`latest` would restore the older {found.id}. Find out who deleted "
                                 f"{'them' if len(newer) > 1 else 'it'} (off-site copy: --from copy), or restore "
                                 f"{found.id} knowingly with --accept-rollback (or --backup {found.id})")
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


def read_manifest(store: Store, entry: Entry) -> dict[str, Any]:
    """The manifest, believed only when db-backup's key signed it for this very backup (see signed.py):
    what any step that acts on the backup (restore, verify) must use."""
    from drkit.storage import signed

    manifest = signed.get_json(store, entry.manifest_key, WRITERS, f"the manifest of backup {entry.database} {entry.id}")
    return _checked(manifest, entry)


def _checked(manifest: Any, entry: Entry) -> dict[str, Any]:
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


def garbage(store: Store, entries: list[Entry], database: str, now: dt.datetime,
            keep: set[str] | frozenset[str] = frozenset()) -> Garbage:
    """Leftovers of killed runs that are old enough to be certainly dead. `keep`: ids the signed catalog names
    (data whose manifest was deleted behind drkit's back is evidence to report, never garbage)."""
    orphans = [e for e in entries if e.orphan and e.id not in keep
               and now - started(e.id, max(o.last_modified for o in e.objects.values())) > ORPHAN_GRACE]
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
