"""Streamed transfers: the bounded-memory multipart upload and the reader that verifies size and SHA-256."""

from __future__ import annotations

import datetime as dt
import hashlib
import io
import threading
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

from drkit.core import log
from drkit.core.deadline import Deadline
from drkit.core.errors import CryptoError, DeadlineExceeded, IntegrityError, StoreError
from drkit.storage.store import ObjectInfo, Store

MIN_PART = 5 * 1024 * 1024  # S3/Spaces minimum part size (all but the last part)
MAX_PARTS = 10_000
PARTS_PER_SIZE_STEP = 2_000  # part size doubles every 2,000 parts: 8 MiB base -> ~496 GiB max


def part_size_for(part_number: int, base: int) -> int:
    """Size of 1-based part `part_number`: doubles every 2,000 parts (pure)."""
    return int(base * (2 ** ((part_number - 1) // PARTS_PER_SIZE_STEP)))


def open_upload(store: Store, key: str, *, part_size: int = 8 * 1024 * 1024, concurrency: int = 3,
                deadline: Deadline | None = None, content_type: str = "application/octet-stream") -> MultipartUpload:
    """A streamed upload to `key`: write to it, then `complete()` (or `abort()`); a context manager."""
    return MultipartUpload(store, key, part_size, concurrency, deadline or Deadline(None), content_type)


class MultipartUpload(io.RawIOBase):
    """Write-only sink: buffer -> parts -> bounded pool -> complete() or abort().

    Memory is bounded by (concurrency + 2) parts whatever the object size: the
    writer blocks while `concurrency` parts are in flight.
    """

    def __init__(self, store: Store, key: str, part_size: int, concurrency: int, deadline: Deadline, content_type: str):
        super().__init__()
        if part_size < MIN_PART:
            raise ValueError(f"part size {part_size} is below the 5 MiB minimum")
        self.store = store
        self.key = key
        self.base_part = part_size
        self.deadline = deadline
        self.content_type = content_type
        self.sha256 = hashlib.sha256()
        self.size = 0
        self.upload_id: str | None = None
        self._chunks: list[bytes] = []
        self._buffered = 0
        self._part_no = 0
        self._parts: dict[int, str] = {}
        self._futures: list[Future[None]] = []
        self._slots = threading.BoundedSemaphore(concurrency)
        self._pool = ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix="drkit-upload")
        self._error: BaseException | None = None
        self._finished = False

    # io.RawIOBase protocol (pyrage.encrypt_io writes here)
    def writable(self) -> bool:
        return True

    def write(self, b: Any) -> int:
        if self._finished:
            raise ValueError("upload already completed or aborted")
        self._raise_pending()
        data = bytes(b)
        self.sha256.update(data)
        self.size += len(data)
        self._chunks.append(data)
        self._buffered += len(data)
        while self._buffered >= part_size_for(self._part_no + 1, self.base_part):
            self._flush_part(part_size_for(self._part_no + 1, self.base_part))
        return len(data)

    def _raise_pending(self) -> None:
        if self._error is not None:
            raise self._error
        if self.deadline.expired():
            raise DeadlineExceeded(f"deadline reached while uploading {self.key}")

    def _take(self, n: int) -> bytes:
        joined = b"".join(self._chunks)
        part, rest = joined[:n], joined[n:]
        self._chunks = [rest] if rest else []
        self._buffered = len(rest)
        return part

    def _flush_part(self, n: int) -> None:
        data = self._take(n)
        self._part_no += 1
        if self._part_no > MAX_PARTS:
            raise StoreError(f"{self.key} would need more than {MAX_PARTS} parts; raise DRKIT_PART_SIZE_MB")
        if self.upload_id is None:
            try:
                r = self.store.client.create_multipart_upload(
                    Bucket=self.store.bucket, Key=self.store._full(self.key), ContentType=self.content_type
                )
            except Exception as exc:  # noqa: BLE001
                raise self.store._fail(exc, f"starting upload of {self.key}") from None
            self.upload_id = r["UploadId"]
        while not self._slots.acquire(timeout=1.0):  # backpressure: wait for a free slot
            self._raise_pending()
        self._raise_pending_release()
        self._futures.append(self._pool.submit(self._upload_part, self._part_no, data))

    def _raise_pending_release(self) -> None:
        if self._error is not None:
            self._slots.release()
            raise self._error

    def _upload_part(self, number: int, data: bytes) -> None:
        try:
            if self._error is not None:
                return
            r = self.store.client.upload_part(
                Bucket=self.store.bucket,
                Key=self.store._full(self.key),
                UploadId=self.upload_id,
                PartNumber=number,
                Body=data,
            )
            self._parts[number] = r["ETag"]
        except Exception as exc:  # noqa: BLE001
            if self._error is None:
                self._error = self.store._fail(exc, f"uploading part {number} of {self.key}")
        finally:
            self._slots.release()

    def complete(self) -> ObjectInfo:
        """Upload what is buffered and make the object visible. Aborts on any error."""
        try:
            self._raise_pending()
            if self.upload_id is None:
                # Small object: one PUT, atomic, no multipart bookkeeping.
                self.store.put_bytes(self.key, self._take(self._buffered), self.content_type)
            else:
                if self._buffered:
                    self._flush_part(self._buffered)
                for f in self._futures:
                    f.result()
                self._raise_pending()
                parts = [{"PartNumber": n, "ETag": self._parts[n]} for n in sorted(self._parts)]
                try:
                    self.store.client.complete_multipart_upload(
                        Bucket=self.store.bucket,
                        Key=self.store._full(self.key),
                        UploadId=self.upload_id,
                        MultipartUpload={"Parts": parts},
                    )
                except Exception as exc:  # noqa: BLE001
                    raise self.store._fail(exc, f"completing upload of {self.key}") from None
        except BaseException:
            self.abort()
            raise
        self._finished = True
        self._pool.shutdown(wait=True)
        return ObjectInfo(self.key, self.size, dt.datetime.now(dt.UTC))

    def abort(self) -> None:
        """Stop, wait for parts in flight, and abort the multipart upload. Idempotent."""
        if self._finished:
            return
        self._finished = True
        if self._error is None:
            self._error = StoreError(f"upload of {self.key} aborted")
        self._pool.shutdown(wait=True, cancel_futures=True)
        self._chunks = []
        if self.upload_id is not None:
            try:
                self.store.abort_upload(self.key, self.upload_id)
                log.info("multipart upload aborted", key=self.key, parts=len(self._parts))
            except StoreError as exc:
                # Spaces removes incomplete uploads after 30 days; db-backup also
                # aborts stale ones it finds under its prefix on later runs.
                log.error("could not abort multipart upload", key=self.key, error=str(exc))

    def __enter__(self) -> MultipartUpload:
        return self

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        if not self._finished:
            self.abort()


class VerifyingReader(io.RawIOBase):
    """Read-through wrapper: counts and hashes; at EOF checks size and SHA-256.

    Raises IntegrityError at EOF (or as soon as the size is exceeded) so that a
    consumer never sees a clean end of a stream that does not match its manifest.
    """

    def __init__(self, raw: Any, expected_size: int, expected_sha256: str):
        super().__init__()
        self.raw = raw
        self.expected_size = expected_size
        self.expected_sha256 = expected_sha256
        self.sha256 = hashlib.sha256()
        self.size = 0
        self.verified = False  # set at a clean end: every byte read, size and SHA-256 as the manifest says

    def readable(self) -> bool:
        return True

    def readinto(self, b: Any) -> int:
        data = self.raw.read(len(b))
        if not data:
            if self.size != self.expected_size:
                raise IntegrityError(f"object is {self.size} bytes, manifest says {self.expected_size}: truncated")
            if self.sha256.hexdigest() != self.expected_sha256:
                raise IntegrityError("object SHA-256 does not match the manifest: the stored backup is corrupt")
            self.verified = True
            return 0
        self.size += len(data)
        if self.size > self.expected_size:
            raise IntegrityError(f"object is larger than the {self.expected_size} bytes the manifest records")
        self.sha256.update(data)
        n = len(data)
        b[:n] = data
        return n


def explain_crypto_failure(reader: VerifyingReader, note: str, failure: CryptoError | None = None) -> None:
    """After a decryption failure, read the rest: a checksum mismatch means corrupted storage.
    `note` says what became of what was already written (e.g. nothing was committed)."""
    try:
        while reader.read(1 << 20):
            pass
    except IntegrityError as exc:
        raise IntegrityError(f"{exc}; age's chunk authentication stopped it ({note})") from None
    if failure is not None and failure.in_data:
        raise CryptoError(f"{failure}, although the stored bytes match the manifest: the object was cut or "
                          f"altered and its manifest rewritten to match; use another backup ({note})",
                          in_data=True)
    raise CryptoError("decryption failed although the stored bytes match the manifest: "
                      f"wrong age identity (DRKIT_AGE_IDENTITY) for this backup's recipients ({note})")
