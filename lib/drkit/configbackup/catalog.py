"""The catalog of config backups, from one LIST of `config/`, read against config-backup's signed head.

Same rules as database backups (storage/catalog.py, storage/chain.py): a backup is complete when its
archive and its manifest exist, and trusted when config-backup's catalog names it or its manifest
verifies by config-backup's key."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Any

from drkit.core.errors import ConfigError, IntegrityError
from drkit.policy import layout
from drkit.policy.retention import Item
from drkit.storage import chain
from drkit.storage.catalog import ORPHAN_GRACE, pick, started, upload_started
from drkit.storage.store import ObjectInfo, Store, UploadInfo

DATA = layout.CONFIG_DATA_SUFFIX
MANIFEST = layout.MANIFEST_SUFFIX
WRITERS = ("config-backup",)


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

    def item(self, keep_reason: str = "", *, trusted: bool = True, pinned: bool = False) -> Item:
        return Item(self.id, self.time, done=self.complete and trusted, pinned=pinned, keep_reason=keep_reason)


def list_entries(store: Store) -> list[ConfigEntry]:
    """Every config backup id, newest first."""
    entries: dict[str, ConfigEntry] = {}
    for obj in store.list_objects(layout.CONFIG_PREFIX):
        parsed = layout.parse_config_key(obj.key)
        if parsed:
            entries.setdefault(parsed[0], ConfigEntry(parsed[0])).objects[parsed[1]] = obj
    return sorted(entries.values(), key=lambda e: e.id, reverse=True)


def trusted_view(store: Store, now: dt.datetime, *, verify_limit: int | None = None) -> chain.View[ConfigEntry]:
    return chain.view(store, list_entries(store), layout.CONFIG_CATALOG_KEY, chain.ConfigHead, now,
                      verify_limit=verify_limit)


def find(store: Store, ref: str, now: dt.datetime | None = None) -> ConfigEntry:
    """`latest`, an id, or a key -> a complete config backup config-backup's catalog trusts. `latest` refuses
    when the catalog's newest backup is missing from the bucket (a silent rollback of the config)."""
    from drkit.core.errors import IntegrityError

    parsed = layout.parse_config_key(ref)
    wanted = parsed[0] if parsed else ref
    v = trusted_view(store, now or dt.datetime.now(dt.UTC))
    why = next((w for e, w in v.untrusted if e.id == wanted), None)
    if why:
        raise ConfigError(f"config backup {ref!r} is not trusted ({why}); see `drkit config list`")
    if not v.trusted:
        planted = f" ({len(v.untrusted)} listed, none signed by config-backup)" if v.untrusted else ""
        raise ConfigError(f"there are no complete config backups in the bucket{planted} (run config-backup first)")
    found = pick(v.trusted, wanted)
    if found is None:
        raise ConfigError(f"no complete config backup {ref!r}; see `drkit config list`")
    newer = [x for x in v.missing if x.id > found.id]
    if wanted == "latest" and newer:
        raise IntegrityError(f"the newest config backup in config-backup's catalog, {newer[0].id}, is missing from "
                             f"the bucket; `latest` would use the older {found.id}: name it (--backup {found.id}) "
                             "knowingly, or restore from the off-site copy")
    return found


def read_manifest(store: Store, entry: ConfigEntry) -> dict[str, Any]:
    """The manifest, believed only when config-backup's key signed it for this very backup (see signed.py):
    what extracting files, restoring DNS records, listings and drift must use."""
    from drkit.storage import signed

    return _checked(signed.get_json(store, entry.manifest_key, WRITERS, f"the manifest of config backup {entry.id}"),
                    entry)


def _checked(manifest: Any, entry: ConfigEntry) -> dict[str, Any]:
    if not isinstance(manifest, dict) or manifest.get("id") != entry.id or "sha256" not in manifest \
            or not isinstance(manifest.get("files"), list) or manifest.get("key", entry.data_key) != entry.data_key:
        raise IntegrityError(f"{entry.manifest_key} is not a drkit config manifest for {entry.id}")
    return manifest


def orphans(entries: list[ConfigEntry], now: dt.datetime, keep: set[str] | frozenset[str] = frozenset()
            ) -> list[ConfigEntry]:
    """Archives (or signatures) without a manifest, older than the grace period: leftovers of killed runs.
    `keep`: ids the signed catalog names (an archive whose manifest was deleted is evidence, not garbage)."""
    return [e for e in entries if MANIFEST not in e.objects and e.id not in keep
            and (DATA in e.objects or layout.SIGNATURE_SUFFIX in e.objects)
            and now - started(e.id, max(o.last_modified for o in e.objects.values())) > ORPHAN_GRACE]


def stale_uploads(store: Store, now: dt.datetime) -> list[UploadInfo]:
    def backup_id(key: str) -> str | None:
        parsed = layout.parse_config_key(key)
        return parsed[0] if parsed else None

    return [u for u in store.list_uploads(layout.CONFIG_PREFIX) if now - upload_started(u, backup_id(u.key)) > ORPHAN_GRACE]
