"""The copy bucket as dr/backup-copy writes it: what it enforces, one verified (and locked) object at a time.

Each object is streamed from the primary, written to the copy, read back and hashed (size and SHA-256
must be what the primary's signed records say), and only then locked: COMPLIANCE retention on that
very version until its keep date, confirmed by reading the version's lock back. A copy that does not
verify is deleted again (it is not locked yet) and the run says so; nothing unverified is ever
recorded as copied. Puts send Content-MD5 (S3 Object Lock refuses a PUT without an integrity header),
and the lock is set with PutObjectRetention after the upload, which every S3 Object Lock provider
accepts for single and multipart objects alike.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import botocore.exceptions

from drkit.core import log
from drkit.core.deadline import Deadline
from drkit.core.errors import IntegrityError, StoreError
from drkit.platform.config import CopyConfig
from drkit.storage.copies import Copied
from drkit.storage.store import Store
from drkit.storage.transfer import VerifyingReader, open_upload
from drkit.storage.versioned import versions

SMALL = 8 << 20  # objects up to this size are read whole and written in one PUT
CHUNK = 1 << 20


@dataclass(frozen=True)
class Capabilities:
    object_lock: bool
    versioning: bool

    @property
    def immutability(self) -> str:
        return "object-lock" if self.object_lock else "versioning" if self.versioning else "none"

    def describe(self, lock_days: int) -> str:
        if self.object_lock:
            return f"Object Lock enforced: every object is locked (COMPLIANCE) for {lock_days} days"
        if self.versioning:
            return ("no Object Lock, versioning on: overwrites and deletes keep the old versions (readable with "
                    "--as-of), but the copy key can still delete versions")
        return ("no Object Lock and no versioning: the copy key can delete or overwrite anything; enable Object Lock "
                "on a new bucket (or at least versioning) for a copy that survives a stolen key")


def _code(exc: botocore.exceptions.ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))


class Target:
    """The off-site copy's bucket, written by dr/backup-copy (which alone holds its key)."""

    def __init__(self, cfg: CopyConfig, store: Store, lock_days: int):
        self.cfg = cfg
        self.store = store
        self.lock_days = lock_days
        self._caps: Capabilities | None = None

    def describe(self) -> str:
        s = self.cfg.spaces
        return f"{urlsplit(s.endpoint_url).netloc}/{s.bucket}" + (f"/{s.prefix}" if s.prefix else "")

    def capabilities(self) -> Capabilities:
        """Does the copy bucket enforce Object Lock, keep versions? Asked of the bucket itself, once a run."""
        if self._caps is None:
            c, b = self.store.client, self.store.bucket
            lock = versioning = False
            try:
                got = c.get_object_lock_configuration(Bucket=b).get("ObjectLockConfiguration", {})
                lock = got.get("ObjectLockEnabled") == "Enabled"
            except botocore.exceptions.ClientError as exc:
                if _code(exc) not in ("ObjectLockConfigurationNotFoundError", "NotImplemented", "InvalidRequest",
                                      "NoSuchObjectLockConfiguration", "MethodNotAllowed", "AccessDenied"):
                    raise self.store._fail(exc, "reading the copy bucket's Object Lock configuration") from None
            except Exception as exc:  # noqa: BLE001
                raise self.store._fail(exc, "reading the copy bucket's Object Lock configuration") from None
            try:
                versioning = c.get_bucket_versioning(Bucket=b).get("Status") == "Enabled"
            except botocore.exceptions.ClientError as exc:
                if _code(exc) not in ("NotImplemented", "AccessDenied"):
                    raise self.store._fail(exc, "reading the copy bucket's versioning") from None
            except Exception as exc:  # noqa: BLE001
                raise self.store._fail(exc, "reading the copy bucket's versioning") from None
            self._caps = Capabilities(lock, versioning or lock)
        return self._caps

    # -- one object ------------------------------------------------------------
    def put(self, primary: Store, key: str, size: int | None, sha256: str | None, now: dt.datetime,
            deadline: Deadline) -> Copied:
        """Copy `key` from the primary, verify the copy read back, lock it; what the ledger records."""
        info = primary.head(key)
        if info is None:
            raise StoreError(f"{key} is gone from the primary before it could be copied")
        if size is not None and info.size != size:
            raise IntegrityError(f"{key} is {info.size} bytes in the primary, its signed record says {size}: not copied")
        if info.size <= SMALL:
            data = primary.get_bytes(key)
            digest = hashlib.sha256(data).hexdigest()
            if sha256 is not None and digest != sha256:
                raise IntegrityError(f"{key} in the primary does not hash to what its signed record says: not copied")
            md5 = base64.b64encode(hashlib.md5(data, usedforsecurity=False).digest()).decode()
            try:
                r = self.store.client.put_object(Bucket=self.store.bucket, Key=self.store._full(key), Body=data,
                                                 ContentMD5=md5, ContentType="application/octet-stream")
            except Exception as exc:  # noqa: BLE001
                raise self.store._fail(exc, f"writing {key} to the copy") from None
            version, written = str(r.get("VersionId") or "null"), len(data)
        else:
            reader = VerifyingReader(primary.open_read(key), info.size, sha256) if sha256 else None
            body = reader if reader is not None else primary.open_read(key)
            h = hashlib.sha256()
            with open_upload(self.store, key, deadline=deadline) as upload:
                while chunk := body.read(CHUNK):
                    h.update(chunk)
                    upload.write(chunk)
                upload.complete()
            digest, written = h.hexdigest(), upload.size
            version = self._newest_version(key)
        self._verify(key, version, written, digest)
        keep = now + dt.timedelta(days=self.lock_days)
        locked = self._lock(key, version, keep) if self.capabilities().object_lock else None
        return Copied(written, digest, version, now, keep, locked)

    def _newest_version(self, key: str) -> str:
        if not self.capabilities().versioning:
            return "null"
        found = sorted((v for v in versions(self.store, key) if v.key == key and not v.deleted),
                       key=lambda v: v.modified)
        return found[-1].version_id if found else "null"

    def _args(self, version: str) -> dict[str, Any]:
        return {"VersionId": version} if version != "null" else {}

    def _verify(self, key: str, version: str, size: int, sha256: str) -> None:
        """Read the copy back: every byte, hashed. A copy that does not match is removed again."""
        try:
            body = self.store.client.get_object(Bucket=self.store.bucket, Key=self.store._full(key),
                                                **self._args(version))["Body"]
            h, n = hashlib.sha256(), 0
            while chunk := body.read(CHUNK):
                h.update(chunk)
                n += len(chunk)
        except Exception as exc:  # noqa: BLE001
            raise self.store._fail(exc, f"reading back {key} from the copy") from None
        if n != size or h.hexdigest() != sha256:
            self.delete_version(key, version)
            raise IntegrityError(f"{key}: the copy read back is {n} bytes with another SHA-256 than what was sent "
                                 f"({size} bytes); removed, the next run copies it again")

    def _lock(self, key: str, version: str, until: dt.datetime) -> dt.datetime:
        """COMPLIANCE retention on this version until `until`, confirmed by reading it back."""
        try:
            self.store.client.put_object_retention(Bucket=self.store.bucket, Key=self.store._full(key),
                                                   Retention={"Mode": "COMPLIANCE", "RetainUntilDate": until},
                                                   **self._args(version))
            got = self.store.client.head_object(Bucket=self.store.bucket, Key=self.store._full(key),
                                                **self._args(version))
        except Exception as exc:  # noqa: BLE001
            raise self.store._fail(exc, f"locking {key} in the copy") from None
        mode, kept = got.get("ObjectLockMode"), got.get("ObjectLockRetainUntilDate")
        if mode != "COMPLIANCE" or kept is None or kept < until - dt.timedelta(seconds=2):
            raise IntegrityError(f"{key}: the copy bucket did not keep the lock (mode {mode}, until {kept}); "
                                 "the object is in the copy but not immutable")
        return until

    def extend(self, key: str, copied: Copied, now: dt.datetime) -> Copied:
        """Keep (and lock) a copied object `lock_days` more from now: a blob the primary still uses."""
        keep = now + dt.timedelta(days=self.lock_days)
        locked = self._lock(key, copied.version, keep) if self.capabilities().object_lock else copied.locked_until
        return Copied(copied.size, copied.sha256, copied.version, copied.copied_at, keep, locked)

    def delete_version(self, key: str, version: str) -> bool:
        """Remove one version of `key` from the copy; False when the server refuses because it is still locked."""
        try:
            self.store.client.delete_object(Bucket=self.store.bucket, Key=self.store._full(key), **self._args(version))
            return True
        except botocore.exceptions.ClientError as exc:
            if _code(exc) in ("AccessDenied", "InvalidRequest", "ObjectLocked"):
                log.info("copy retention: still locked, kept", key=key, version=version)
                return False
            raise self.store._fail(exc, f"deleting {key} from the copy") from None
        except Exception as exc:  # noqa: BLE001
            raise self.store._fail(exc, f"deleting {key} from the copy") from None
