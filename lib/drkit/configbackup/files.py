"""Storage file bytes (Supabase Storage through its S3 endpoint, any S3 bucket): incremental, encrypted copies.

A `storage` source of config-backup (daily). Every object whose (bucket, key, ETag, size) was not
copied before is streamed from the source, encrypted to the backup's age recipients and stored once
as `files/<source>/blobs/<id>`; `<id>` is an HMAC of that identity under a key derived from the
signing key, so object names never appear in the bucket. Unchanged objects are not read again.

The unit's `index.json` in the (encrypted, signed) config archive lists every object with its
size, ETag, SHA-256 and blob: `drkit files restore` restores from it and checks every byte
against it. `files/<source>/catalog.json` (signed by this writer) remembers, per blob, its
SHA-256, size and the last day a listing named it; after a run in which the source succeeded, a
blob last named before the oldest config backup that still exists (pinned ones included) is
deleted: no archive can refer to it.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import io
import json
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from drkit.configbackup import reconcile
from drkit.configbackup.archive import SourceError
from drkit.configbackup.sources import Source
from drkit.core import log
from drkit.core.deadline import Deadline
from drkit.core.errors import DrkitError, StoreError
from drkit.crypto import encryption
from drkit.crypto.signing import SignatureError
from drkit.platform.config import SpacesConfig
from drkit.policy import layout
from drkit.storage import signed
from drkit.storage.store import Store, explain, make_client
from drkit.storage.transfer import open_upload

WRITERS = ("config-backup",)  # whose key signs a files catalog

INDEX = "index.json"
SMALL = 8 << 20  # objects up to this size are encrypted in memory and stored in one PUT
CATALOG_FORMAT = "drkit.files.catalog/1"


prefix = layout.files_prefix
blob_key = layout.files_blob_key
catalog_key = layout.files_catalog_key


def blob_id(secret: str, bucket: str, key: str, etag: str, size: int) -> str:
    """The blob name of one object version: an HMAC, so the bucket never shows object names."""
    subkey = hmac.new(secret.encode(), b"drkit files blob id v1", hashlib.sha256).digest()
    ident = "\0".join((bucket, key, etag, str(size))).encode()
    return hmac.new(subkey, ident, hashlib.sha256).hexdigest()[:40]


@dataclass(frozen=True)
class Listed:
    bucket: str
    key: str
    etag: str
    size: int


def client_for(source: Source, spaces: SpacesConfig) -> Any:
    o = source.options
    cfg = SpacesConfig(bucket="-", endpoint_url=str(o["endpoint"]).rstrip("/"), region=o.get("region") or "us-east-1",
                       access_key=source.secrets["key_env"], secret_key=source.secrets["secret_env"], max_attempts=4)
    return make_client(cfg)


def listing(client: Any, source: Source) -> Iterator[Listed]:
    o = source.options
    buckets = o.get("buckets") or sorted(b["Name"] for b in client.list_buckets().get("Buckets", []))
    for bucket in buckets:
        for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=str(o.get("prefix", ""))):
            for item in page.get("Contents", []):
                if not item["Key"].endswith("/"):
                    yield Listed(bucket, item["Key"], str(item.get("ETag", "")).strip('"'), int(item["Size"]))


class _Hashing(io.RawIOBase):
    """A reader that hashes and counts what passes through."""

    def __init__(self, inner: Any):
        super().__init__()
        self.inner = inner
        self.sha = hashlib.sha256()
        self.md5 = hashlib.md5(usedforsecurity=False)  # what a single-part S3 PUT of these bytes has as its ETag
        self.size = 0

    def readable(self) -> bool:
        return True

    def readinto(self, b: Any) -> int:
        data = self.inner.read(len(b))
        n = len(data)
        b[:n] = data
        self.sha.update(data)
        self.md5.update(data)
        self.size += n
        return n


def _copy(client: Any, store: Store, item: Listed, key: str, recipients: Sequence[Any],
          deadline: Deadline) -> tuple[str, str]:
    """One object, streamed source -> age -> Spaces; its SHA-256 and MD5. The size must be the listed one."""
    body = client.get_object(Bucket=item.bucket, Key=item.key)["Body"]
    reader = _Hashing(body)
    try:
        if item.size <= SMALL:
            out = io.BytesIO()
            encryption.encrypt_stream(reader, out, recipients)
            _check_size(reader, item)
            store.put_bytes(key, out.getvalue())
        else:
            with open_upload(store, key, deadline=deadline) as upload:
                encryption.encrypt_stream(reader, upload, recipients)
                _check_size(reader, item)
                upload.complete()
    finally:
        body.close()
    return reader.sha.hexdigest(), reader.md5.hexdigest()


def _check_size(reader: _Hashing, item: Listed) -> None:
    if reader.size != item.size:
        raise SourceError(f"{item.bucket}/{item.key} changed while it was copied ({reader.size} bytes read, "
                          f"{item.size} listed); the next run copies it")


def load_catalog(store: Store, source_name: str) -> dict[str, Any]:
    """This writer's catalog (config-backup's signature), or an empty one: an unreadable or untrusted catalog
    costs a full copy, never a wrong checksum."""
    try:
        data = signed.get_json(store, catalog_key(source_name), WRITERS, f"files catalog of {source_name}")
    except StoreError:
        return {"format": CATALOG_FORMAT, "blobs": {}}
    except SignatureError as exc:
        log.warning("files catalog not trusted; every object is copied again", source=source_name, error=str(exc))
        return {"format": CATALOG_FORMAT, "blobs": {}}
    if not isinstance(data, dict) or data.get("format") != CATALOG_FORMAT or not isinstance(data.get("blobs"), dict):
        return {"format": CATALOG_FORMAT, "blobs": {}}
    return data


def expired(blobs: dict[str, Any], oldest_backup: dt.date) -> list[str]:
    """Blobs last named before the day of the oldest config backup that exists: none refers to them (pure)."""
    return sorted(b for b, info in blobs.items() if str(info.get("seen", "")) < oldest_backup.isoformat())


def collect(source: Source, sink: Any, store: Store, spaces: SpacesConfig, recipients: Sequence[Any],
            deadline: Deadline, today: dt.date, oldest_backup: dt.date) -> dict[str, Any]:
    """Back up one storage source incrementally; write its index into the archive. Raises SourceError.
    Blob names are an HMAC keyed with config-backup's signing key (the store's signer)."""
    o = source.options
    limit_objects, limit_bytes = int(source.opt("max_objects")), int(source.opt("max_bytes"))
    signer = store.identity.signer
    if signer is None:
        raise SourceError("config-backup has no signing key (DRKIT_SIGNING_KEY): file copies are named with it")
    key = signer.secret.reveal()
    catalog = load_catalog(store, source.name)
    blobs: dict[str, Any] = catalog["blobs"]
    stored = {info.key.rsplit("/", 1)[-1] for info in store.list_objects(prefix(source.name) + "blobs/")}
    client = client_for(source, spaces)
    index: list[dict[str, Any]] = []
    copied = copied_bytes = total = 0
    try:
        for item in listing(client, source):
            if len(index) >= limit_objects:
                raise SourceError(f"more than {limit_objects} objects; name fewer buckets or raise max_objects")
            total += item.size
            if total > limit_bytes:
                raise SourceError(f"more than {limit_bytes} bytes; name fewer buckets or raise max_bytes")
            blob = blob_id(key, item.bucket, item.key, item.etag, item.size)
            known = blobs.get(blob)
            if known is None or blob not in stored or int(known.get("size", -1)) != item.size:
                sha, md5 = _copy(client, store, item, blob_key(source.name, blob), recipients, deadline)
                known = {"sha256": sha, "md5": md5, "size": item.size}
                copied += 1
                copied_bytes += item.size
            blobs[blob] = {"sha256": known["sha256"], "md5": known.get("md5", ""), "size": item.size,
                           "seen": today.isoformat()}
            index.append({"bucket": item.bucket, "key": item.key, "size": item.size, "etag": item.etag,
                          "sha256": known["sha256"], "md5": known.get("md5", ""), "blob": blob})
    except SourceError:
        raise
    except StoreError as exc:
        raise SourceError(f"storing a copy: {exc}") from None
    except Exception as exc:  # noqa: BLE001 - botocore errors become the source's failure
        raise SourceError(explain(exc, "reading", ",".join(o.get("buckets") or ["(all buckets)"]),
                                  str(o["endpoint"])).args[0]) from None
    finally:
        # what was copied is remembered even when the run stops half-way: the next one does not copy it again
        try:
            signed.put_json(store, catalog_key(source.name), catalog)
        except DrkitError as exc:
            log.warning("files catalog not written; the next run copies again", source=source.name, error=str(exc))
    sink.add_bytes(INDEX, (json.dumps({"format": "drkit.files.index/1", "source": source.name,
                                       "endpoint": o["endpoint"], "objects": index}, indent=0) + "\n").encode())
    gone = expired(blobs, oldest_backup)
    for blob in gone:
        try:
            store.delete(blob_key(source.name, blob))
            del blobs[blob]
        except StoreError as exc:
            log.warning("old file copy not deleted; the next run retries", blob=blob, error=str(exc))
    if gone:
        signed.put_json(store, catalog_key(source.name), catalog)
    log.info("storage files backed up", source=source.name, objects=len(index), copied=copied)
    out = {"endpoint": o["endpoint"], "objects": len(index), "bytes": total, "copied": copied,
           "copied_bytes": copied_bytes, "reused": len(index) - copied, "buckets": len({i["bucket"] for i in index}),
           "expired_copies_deleted": len(gone)}
    if "database_env" in source.secrets:  # rows against files, right after the listing
        try:
            rows = reconcile.read_rows(source.secrets["database_env"], o.get("buckets"), str(o.get("prefix", "")),
                                       str(source.opt("database_env")))
        except SourceError as exc:  # the files are backed up all the same; the DR report says it did not run
            log.warning("storage reconciliation did not run", source=source.name, error=str(exc))
            out["reconcile"] = {"error": str(exc)}
            return out
        result = reconcile.compare(rows, ((i["bucket"], i["key"], i["size"]) for i in index))
        sink.add_bytes("reconcile.json", (json.dumps({"format": "drkit.files.reconcile/1", **result},
                                                     indent=0) + "\n").encode())
        out["reconcile"] = {k: v for k, v in result.items() if k != "lists"} | {"summary": reconcile.summary(result)}
        if result["rows_without_file"]:
            log.warning("storage rows without a file", source=source.name, count=result["rows_without_file"])
    return out


def make_collector(source: Source, store: Store, spaces: SpacesConfig, recipients: Sequence[Any],
                   deadline: Deadline, today: dt.date, oldest_backup: dt.date) -> Callable[[Any], dict[str, Any]]:
    return lambda sink: collect(source, sink, store, spaces, recipients, deadline, today, oldest_backup)
