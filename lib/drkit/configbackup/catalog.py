"""The catalog of config backups, from one LIST of `config/`.

Same rules as database backups (storage/catalog.py): a backup is complete when its archive and its
manifest exist."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from drkit.core.errors import ConfigError, IntegrityError
from drkit.policy import layout
from drkit.policy.retention import Item
from drkit.storage.catalog import ORPHAN_GRACE, pick, started, upload_started
from drkit.storage.store import ObjectInfo, Store, UploadInfo

DATA = layout.CONFIG_DATA_SUFFIX
MANIFEST = layout.MANIFEST_SUFFIX


@dataclass
class ConfigEntry:
    id: str
    objects: dict[str, ObjectInfo] = field(default_factory=dict)

    @property
    def time(self) -> dt.datetime:
        return layout.id_time(self.id)

    @property
    def complete(self) -> bool:
        return DATA in self.objects and MANIFEST in self.objects

    @property
    def pinned(self) -> bool:
        return layout.PINNED_SUFFIX in self.objects

    @property
    def size(self) -> int:
        d = self.objects.get(DATA)
        return d.size if d else 0

    @property
    def data_key(self) -> str:
        return layout.config_base(self.id) + DATA

    @property
    def manifest_key(self) -> str:
        return layout.config_base(self.id) + MANIFEST

    def item(self, keep_reason: str = "") -> Item:
        return Item(self.id, self.time, done=self.complete, pinned=self.pinned, keep_reason=keep_reason)


def list_entries(store: Store) -> list[ConfigEntry]:
    """Every config backup id, newest first."""
    entries: dict[str, ConfigEntry] = {}
    for obj in store.list_objects(layout.CONFIG_PREFIX):
        parsed = layout.parse_config_key(obj.key)
        if parsed:
            entries.setdefault(parsed[0], ConfigEntry(parsed[0])).objects[parsed[1]] = obj
    return sorted(entries.values(), key=lambda e: e.id, reverse=True)


def find(store: Store, ref: str) -> ConfigEntry:
    """`latest`, an id, or a key -> a complete config backup."""
    parsed = layout.parse_config_key(ref)
    wanted = parsed[0] if parsed else ref
    entries = [e for e in list_entries(store) if e.complete]
    if not entries:
        raise ConfigError("there are no complete config backups in the bucket (run config-backup first)")
    found = pick(entries, wanted)
    if found is None:
        raise ConfigError(f"no complete config backup {ref!r}; see `drkit config list`")
    return found


def read_manifest(store: Store, entry: ConfigEntry, trusted: Sequence[Any]) -> dict[str, Any]:
    """The manifest, believed only when signed by a trusted key for this very backup (see signed.py):
    what extracting files or restoring DNS records from the archive must use."""
    from drkit.storage import signed

    return _checked(signed.get_json(store, entry.manifest_key, trusted, f"the manifest of config backup {entry.id}"),
                    entry)


def peek_manifest(store: Store, entry: ConfigEntry) -> dict[str, Any]:
    """The manifest as stored, unverified: for listings, drift and retention bookkeeping only."""
    return _checked(store.get_json(entry.manifest_key), entry)


def _checked(manifest: Any, entry: ConfigEntry) -> dict[str, Any]:
    if not isinstance(manifest, dict) or manifest.get("id") != entry.id or "sha256" not in manifest \
            or not isinstance(manifest.get("files"), list) or manifest.get("key", entry.data_key) != entry.data_key:
        raise IntegrityError(f"{entry.manifest_key} is not a drkit config manifest for {entry.id}")
    return manifest


def orphans(entries: list[ConfigEntry], now: dt.datetime) -> list[ConfigEntry]:
    """Archives without a manifest, older than the grace period: leftovers of killed runs."""
    return [e for e in entries if DATA in e.objects and MANIFEST not in e.objects
            and now - started(e.id, e.objects[DATA].last_modified) > ORPHAN_GRACE]


def stale_uploads(store: Store, now: dt.datetime) -> list[UploadInfo]:
    def backup_id(key: str) -> str | None:
        parsed = layout.parse_config_key(key)
        return parsed[0] if parsed else None

    return [u for u in store.list_uploads(layout.CONFIG_PREFIX) if now - upload_started(u, backup_id(u.key)) > ORPHAN_GRACE]
