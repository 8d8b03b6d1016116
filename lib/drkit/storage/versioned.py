"""A read-only view of a versioned bucket (the off-site copy) that reads behind overwrites and delete markers.

drkit writes every backup, archive, blob and signature exactly once, so in a versioned copy the
original of such a key is its *oldest* surviving version: whatever was written over it later (an
attacker's overwrite, a forged manifest) is a newer version, and a delete is a marker on top. Records
that change in place (catalog heads under `state/`, files catalogs) are read at their *newest*
version. `as_of` reads the bucket as it was at that moment: versions written later are ignored, so a
head forged after the attack is not seen either. Version times are the server's, not the writer's.

The view is a `Store` for everything that reads (catalog, restore, config extract, files restore),
and never writes to the copy: what a restore records (audit events, verification evidence) goes to
`writes_to`, the primary bucket, when one is given and reachable, and nowhere else. Deletes are refused.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from drkit.core.errors import StoreError
from drkit.crypto.trust import Identity
from drkit.platform.config import SpacesConfig
from drkit.policy import layout
from drkit.storage.store import ObjectInfo, Store, UploadInfo, _Missing


@dataclass(frozen=True)
class Version:
    key: str  # relative to the prefix
    version_id: str
    size: int
    modified: dt.datetime
    etag: str
    deleted: bool = False  # a delete marker


def versions(store: Store, prefix: str) -> Iterator[Version]:
    """Every version and delete marker under `prefix` (relative keys), as the server lists them."""
    try:
        paginator = store.client.get_paginator("list_object_versions")
        for page in paginator.paginate(Bucket=store.bucket, Prefix=store._full(prefix)):
            for v in page.get("Versions", []):
                yield Version(store._rel(v["Key"]), str(v.get("VersionId") or "null"), int(v.get("Size", 0)),
                              v["LastModified"], str(v.get("ETag", "")).strip('"'))
            for m in page.get("DeleteMarkers", []):
                yield Version(store._rel(m["Key"]), str(m.get("VersionId") or "null"), 0, m["LastModified"], "",
                              deleted=True)
    except Exception as exc:  # noqa: BLE001
        raise store._fail(exc, f"listing versions under {prefix or '/'}") from None


def choose(key: str, found: list[Version], as_of: dt.datetime | None) -> Version | None:
    """The version of `key` drkit believes (pure): the oldest for keys written once, the newest for records
    that change in place; none written after `as_of`; delete markers never."""
    live = sorted((v for v in found if not v.deleted and (as_of is None or v.modified <= as_of)),
                  key=lambda v: v.modified)
    if not live:
        return None
    return live[-1] if layout.changes_in_place(key) else live[0]


class VersionedStore(Store):
    """Reads `spaces` version by version (see the module docstring); every write raises StoreError."""

    def __init__(self, spaces: SpacesConfig, client: Any | None = None, identity: Identity | None = None, *,
                 as_of: dt.datetime | None = None, writes_to: Store | None = None, versioned: bool = True):
        super().__init__(spaces, client, identity)
        if as_of is not None and not versioned:
            raise StoreError(f"reading {spaces.bucket} as of a time needs a bucket that keeps versions")
        self.as_of = as_of
        self.writes_to = writes_to
        self.versioned = versioned  # False: a bucket without versions (or a provider without ListObjectVersions)
        self._index: dict[str, Version | None] = {}

    def with_identity(self, identity: Identity) -> Store:
        return VersionedStore(self.spaces, self.client, identity, as_of=self.as_of,
                              writes_to=self.writes_to.with_identity(identity) if self.writes_to else None,
                              versioned=self.versioned)

    def _pick(self, key: str) -> Version | None:
        if key not in self._index:
            found = [v for v in versions(self, key) if v.key == key]
            self._index[key] = choose(key, found, self.as_of)
        return self._index[key]

    def _get(self, key: str) -> Any:
        v = self._pick(key)
        if v is None:
            raise _Missing(f"{key} does not exist in the copy" + (f" as of {self.as_of:%Y-%m-%d %H:%M}Z"
                                                                  if self.as_of else ""))
        try:
            args = {"VersionId": v.version_id} if v.version_id != "null" else {}
            return self.client.get_object(Bucket=self.bucket, Key=self._full(key), **args)
        except Exception as exc:  # noqa: BLE001
            raise self._fail(exc, f"reading {key} (version {v.version_id})") from None

    def get_bytes(self, key: str) -> bytes:
        if not self.versioned:
            return super().get_bytes(key)
        return bytes(self._get(key)["Body"].read())

    def open_read(self, key: str) -> Any:
        if not self.versioned:
            return super().open_read(key)
        return self._get(key)["Body"]

    def head(self, key: str) -> ObjectInfo | None:
        if not self.versioned:
            return super().head(key)
        v = self._pick(key)
        return None if v is None else ObjectInfo(key, v.size, v.modified, v.etag)

    def list_objects(self, prefix: str) -> Iterator[ObjectInfo]:
        if not self.versioned:
            yield from super().list_objects(prefix)
            return
        by_key: dict[str, list[Version]] = {}
        for v in versions(self, prefix):
            by_key.setdefault(v.key, []).append(v)
        for key in sorted(by_key):
            chosen = choose(key, by_key[key], self.as_of)
            self._index[key] = chosen
            if chosen is not None:
                yield ObjectInfo(key, chosen.size, chosen.modified, chosen.etag)

    def list_uploads(self, prefix: str) -> list[UploadInfo]:
        return []

    # -- nothing that reads the copy writes to it ----------------------------
    def _read_only(self, what: str) -> StoreError:
        return StoreError(f"{what}: the off-site copy is read here, never written (only dr/backup-copy writes it)")

    def put_bytes(self, key: str, data: bytes, content_type: str = "application/octet-stream", *,
                  public: bool = False, cache_control: str | None = None) -> None:
        if self.writes_to is None:
            raise self._read_only(f"writing {key}")
        self.writes_to.put_bytes(key, data, content_type, public=public, cache_control=cache_control)

    def put_bytes_if_absent(self, key: str, body: bytes, content_type: str = "application/json") -> bool:
        if self.writes_to is None:
            raise self._read_only(f"creating {key}")
        return self.writes_to.put_bytes_if_absent(key, body, content_type)

    def delete(self, key: str) -> None:
        raise self._read_only(f"deleting {key}")

    def abort_upload(self, key: str, upload_id: str) -> None:
        raise self._read_only(f"aborting an upload of {key}")

    def conditional_writes(self) -> bool:
        return False


def open_view(spaces: SpacesConfig, identity: Identity, *, as_of: dt.datetime | None = None,
              writes_to: Store | None = None) -> VersionedStore:
    """The off-site copy read-only: by version when the bucket keeps versions (asked of the bucket), else plainly."""
    import botocore.exceptions

    from drkit.storage.store import explain, make_client

    client = make_client(spaces)
    try:
        versioned = client.get_bucket_versioning(Bucket=spaces.bucket).get("Status") in ("Enabled", "Suspended")
    except botocore.exceptions.ClientError:
        versioned = False  # a Read key may not ask, or the provider has no versioning: plain reads
    except botocore.exceptions.BotoCoreError as exc:
        raise explain(exc, "reaching the off-site copy", spaces.bucket, spaces.endpoint_url) from None
    return VersionedStore(spaces, client, identity, as_of=as_of, writes_to=writes_to, versioned=versioned)
