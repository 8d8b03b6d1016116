"""Spaces (S3 API) state store: the only place drkit keeps state.

One boto3 client configured for Spaces: SigV4, path-style addressing (bucket
names with dots break Spaces' wildcard TLS otherwise), adaptive retries, and
checksums only when an operation requires them (boto3 >= 1.36 adds CRC32
checksums by default, which DigitalOcean documented as breaking uploads and
deletes).

Objects are written whole (`put_*`) or streamed (`MultipartUpload`): a
write-only, file-like sink that uploads parts from a bounded thread pool,
hashes what it sends, and either completes the object or aborts it. A stream
that is not explicitly completed never becomes an object: the caller checks the
producer (pg_dump's exit status, the encryptor) before `complete()`.

Why not s3transfer's upload_fileobj: it pulls from a reader, while the dump
pipeline pushes (pyrage writes into a sink). Bridging the two needs a pipe and
a second thread, and a producer that dies looks like EOF to the reader, which
would complete a truncated object. Here completion is an explicit call.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import io
import json
import threading
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import boto3
import botocore.config
import botocore.exceptions

from drkit import log
from drkit.config import SpacesConfig
from drkit.deadline import Deadline
from drkit.errors import DeadlineExceeded, IntegrityError, StoreError

MIN_PART = 5 * 1024 * 1024  # S3/Spaces minimum part size (all but the last part)
MAX_PARTS = 10_000
PARTS_PER_SIZE_STEP = 2_000  # part size doubles every 2,000 parts: 8 MiB base -> ~496 GiB max


@dataclass(frozen=True)
class ObjectInfo:
    key: str
    size: int
    last_modified: dt.datetime
    etag: str = ""


@dataclass(frozen=True)
class UploadInfo:
    key: str
    upload_id: str
    initiated: dt.datetime


def make_client(spaces: SpacesConfig) -> Any:
    cfg = botocore.config.Config(
        signature_version="s3v4",
        s3={"addressing_style": "path"},
        retries={"mode": "adaptive", "max_attempts": spaces.max_attempts},
        connect_timeout=10,
        read_timeout=60,
        max_pool_connections=16,
        request_checksum_calculation="when_required",
        response_checksum_validation="when_required",
        user_agent_extra="drkit",
    )
    return boto3.session.Session().client(
        "s3",
        endpoint_url=spaces.endpoint_url,
        region_name=spaces.region,
        aws_access_key_id=spaces.access_key.reveal(),
        aws_secret_access_key=spaces.secret_key.reveal(),
        config=cfg,
    )


def explain(exc: Exception, action: str, bucket: str, endpoint: str) -> StoreError:
    """Turn a botocore error into a StoreError that says what to do next."""
    if isinstance(exc, botocore.exceptions.ClientError):
        err = exc.response.get("Error", {})
        code = str(err.get("Code", "?"))
        status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
        if code == "NoSuchBucket":
            hint = f"bucket {bucket!r} does not exist at {endpoint}: create it or fix DRKIT_SPACES_BUCKET/REGION"
        elif code in ("InvalidAccessKeyId", "SignatureDoesNotMatch", "AccessDenied", "Forbidden", "403"):
            hint = "Spaces rejected the credentials: check DRKIT_SPACES_KEY/SECRET and the key's bucket grants"
        elif code in ("SlowDown", "503", "ServiceUnavailable", "InternalError", "500", "RequestTimeout"):
            hint = "Spaces is throttling or failing (after retries); the run can be repeated safely"
        else:
            hint = str(err.get("Message", "")) or "see the Spaces status page"
        return StoreError(f"{action} failed: {code} (HTTP {status}): {hint}")
    if isinstance(exc, botocore.exceptions.EndpointConnectionError):
        return StoreError(f"{action} failed: cannot reach {endpoint}: check DRKIT_SPACES_REGION/ENDPOINT and network")
    if isinstance(exc, botocore.exceptions.NoCredentialsError):
        return StoreError(f"{action} failed: no Spaces credentials")
    return StoreError(f"{action} failed: {type(exc).__name__}: {log.redact(str(exc))[:300]}")


class Store:
    """Keys given to and returned by Store are relative to DRKIT_PREFIX."""

    def __init__(self, spaces: SpacesConfig, client: Any | None = None):
        self.spaces = spaces
        self.bucket = spaces.bucket
        self.prefix = (spaces.prefix + "/") if spaces.prefix else ""
        self.client = client or make_client(spaces)
        self._conditional: bool | None = None

    # -- key helpers -------------------------------------------------------
    def _full(self, key: str) -> str:
        return self.prefix + key

    def _rel(self, full: str) -> str:
        return full[len(self.prefix) :] if self.prefix and full.startswith(self.prefix) else full

    def _fail(self, exc: Exception, action: str) -> StoreError:
        return explain(exc, action, self.bucket, self.spaces.endpoint_url)

    # -- whole objects -----------------------------------------------------
    def check_access(self) -> None:
        """Fail fast (before any dump starts) when the bucket is missing or keys are wrong."""
        try:
            self.client.head_bucket(Bucket=self.bucket)
        except Exception as exc:  # noqa: BLE001 - mapped to StoreError
            if isinstance(exc, botocore.exceptions.ClientError):
                code = str(exc.response.get("Error", {}).get("Code"))
                if code in ("404", "NoSuchBucket", "NotFound"):
                    exc.response["Error"]["Code"] = "NoSuchBucket"
            raise self._fail(exc, f"access check of bucket {self.bucket!r}") from None

    def put_bytes(self, key: str, data: bytes, content_type: str = "application/octet-stream") -> None:
        try:
            self.client.put_object(Bucket=self.bucket, Key=self._full(key), Body=data, ContentType=content_type)
        except Exception as exc:  # noqa: BLE001
            raise self._fail(exc, f"writing {key}") from None

    def put_json(self, key: str, obj: Any) -> None:
        body = json.dumps(obj, indent=2, sort_keys=True, default=str).encode()
        self.put_bytes(key, body, "application/json")

    def get_bytes(self, key: str) -> bytes:
        try:
            resp = self.client.get_object(Bucket=self.bucket, Key=self._full(key))
            return bytes(resp["Body"].read())
        except botocore.exceptions.ClientError as exc:
            if _missing(exc):
                raise _Missing(f"{key} does not exist") from None
            raise self._fail(exc, f"reading {key}") from None
        except Exception as exc:  # noqa: BLE001
            raise self._fail(exc, f"reading {key}") from None

    def get_json(self, key: str) -> Any:
        return _parse_json(key, self.get_bytes(key))

    def get_bytes_or_none(self, key: str) -> bytes | None:
        try:
            return self.get_bytes(key)
        except _Missing:
            return None

    def get_json_or_none(self, key: str) -> Any | None:
        """The object's JSON, or None if the key does not exist."""
        data = self.get_bytes_or_none(key)
        return None if data is None else _parse_json(key, data)

    def conditional_writes(self) -> bool:
        """Does the store enforce `If-None-Match: *` on PUT? Detected once per process.

        Spaces' support is undocumented and reports conflict, so drkit tests it:
        a probe key written twice must fail the second time with 412. Where it is
        not enforced, `put_if_absent` falls back to HEAD-then-PUT (racy) and callers
        must make duplicates harmless (see docs/dns-failover.md).
        """
        if self._conditional is None:
            import secrets as _secrets

            key = f"state/.capabilities/conditional-probe-{_secrets.token_hex(6)}"
            try:
                self.client.put_object(Bucket=self.bucket, Key=self._full(key), Body=b"1", IfNoneMatch="*")
                try:
                    self.client.put_object(Bucket=self.bucket, Key=self._full(key), Body=b"2", IfNoneMatch="*")
                    self._conditional = False
                except botocore.exceptions.ClientError as exc:
                    self._conditional = _precondition_failed(exc)
            except botocore.exceptions.ClientError:
                self._conditional = False  # the header itself is refused: NotImplemented / 400
            finally:
                try:
                    self.client.delete_object(Bucket=self.bucket, Key=self._full(key))
                except botocore.exceptions.BotoCoreError:
                    pass
                except botocore.exceptions.ClientError:
                    pass
            log.info("conditional writes detected", enforced=self._conditional)
        return bool(self._conditional)

    def put_if_absent(self, key: str, obj: Any) -> bool:
        """Create key with obj as JSON unless it exists. True if this call created it."""
        body = json.dumps(obj, sort_keys=True, default=str).encode()
        if self.conditional_writes():
            try:
                self.client.put_object(Bucket=self.bucket, Key=self._full(key), Body=body,
                                       ContentType="application/json", IfNoneMatch="*")
                return True
            except botocore.exceptions.ClientError as exc:
                if _precondition_failed(exc):
                    return False
                raise self._fail(exc, f"creating {key}") from None
        if self.head(key) is not None:
            return False
        self.put_bytes(key, body, "application/json")
        return True

    def head(self, key: str) -> ObjectInfo | None:
        try:
            r = self.client.head_object(Bucket=self.bucket, Key=self._full(key))
        except botocore.exceptions.ClientError as exc:
            if _missing(exc):
                return None
            raise self._fail(exc, f"inspecting {key}") from None
        return ObjectInfo(key, int(r["ContentLength"]), r["LastModified"], r.get("ETag", "").strip('"'))

    def list_objects(self, prefix: str) -> Iterator[ObjectInfo]:
        """Every object under prefix (paginated, ListObjectsV2)."""
        try:
            paginator = self.client.get_paginator("list_objects_v2")
            for page in paginator.paginate(Bucket=self.bucket, Prefix=self._full(prefix)):
                for o in page.get("Contents", []):
                    yield ObjectInfo(self._rel(o["Key"]), int(o["Size"]), o["LastModified"], o.get("ETag", "").strip('"'))
        except StoreError:
            raise
        except Exception as exc:  # noqa: BLE001
            raise self._fail(exc, f"listing {prefix}") from None

    def delete(self, key: str) -> None:
        """Delete one object (idempotent: a missing key is not an error).

        Single DeleteObject calls rather than batch DeleteObjects: batches need
        Content-MD5, which newer SDKs replace by CRC32 headers that Spaces was
        documented to reject, and retention deletes a handful of keys per run.
        """
        try:
            self.client.delete_object(Bucket=self.bucket, Key=self._full(key))
        except Exception as exc:  # noqa: BLE001
            raise self._fail(exc, f"deleting {key}") from None

    def open_read(self, key: str) -> Any:
        """A streaming body (file-like .read(n)) for key."""
        try:
            return self.client.get_object(Bucket=self.bucket, Key=self._full(key))["Body"]
        except Exception as exc:  # noqa: BLE001
            raise self._fail(exc, f"reading {key}") from None

    # -- multipart -----------------------------------------------------------
    def open_upload(
        self,
        key: str,
        *,
        part_size: int = 8 * 1024 * 1024,
        concurrency: int = 3,
        deadline: Deadline | None = None,
        content_type: str = "application/octet-stream",
    ) -> MultipartUpload:
        return MultipartUpload(self, key, part_size, concurrency, deadline or Deadline(None), content_type)

    def list_uploads(self, prefix: str) -> list[UploadInfo]:
        """Incomplete multipart uploads under prefix (leftovers of killed runs)."""
        out: list[UploadInfo] = []
        try:
            paginator = self.client.get_paginator("list_multipart_uploads")
            for page in paginator.paginate(Bucket=self.bucket, Prefix=self._full(prefix)):
                for u in page.get("Uploads", []):
                    out.append(UploadInfo(self._rel(u["Key"]), u["UploadId"], u["Initiated"]))
        except Exception as exc:  # noqa: BLE001
            raise self._fail(exc, f"listing uploads under {prefix}") from None
        return out

    def abort_upload(self, key: str, upload_id: str) -> None:
        try:
            self.client.abort_multipart_upload(Bucket=self.bucket, Key=self._full(key), UploadId=upload_id)
        except botocore.exceptions.ClientError as exc:
            if exc.response.get("Error", {}).get("Code") != "NoSuchUpload":
                raise self._fail(exc, f"aborting upload of {key}") from None


class _Missing(StoreError):
    """The key does not exist (a StoreError to callers that do not expect it)."""


def _precondition_failed(exc: botocore.exceptions.ClientError) -> bool:
    return str(exc.response.get("Error", {}).get("Code")) in ("PreconditionFailed", "412") or \
        exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode") == 412


def _missing(exc: botocore.exceptions.ClientError) -> bool:
    return str(exc.response.get("Error", {}).get("Code")) in ("404", "NoSuchKey", "NotFound")


def _parse_json(key: str, data: bytes) -> Any:
    try:
        return json.loads(data)
    except ValueError as exc:
        raise StoreError(f"{key} is not valid JSON ({exc})") from None


def part_size_for(part_number: int, base: int) -> int:
    """Size of 1-based part `part_number`: doubles every 2,000 parts (pure)."""
    return int(base * (2 ** ((part_number - 1) // PARTS_PER_SIZE_STEP)))


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
