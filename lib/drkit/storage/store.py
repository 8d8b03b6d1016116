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
import json
import secrets
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import boto3
import botocore.config
import botocore.exceptions

from drkit.core import log
from drkit.core.errors import StoreError
from drkit.crypto.trust import Identity
from drkit.platform.config import SpacesConfig


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


# One S3 client per process and credentials: building one parses botocore's service models (~0.25 s
# of CPU under the GIL), which made 50 concurrent webhook calls take 15 s; clients are thread-safe.
_CLIENTS: dict[tuple[str, ...], Any] = {}
_CLIENTS_LOCK = threading.Lock()


def make_client(spaces: SpacesConfig) -> Any:
    """The process's S3 client for these settings (built once, then shared)."""
    secret = hashlib.sha256(spaces.secret_key.reveal().encode()).hexdigest()
    key = (spaces.endpoint_url, spaces.region, spaces.access_key.reveal(), secret, str(spaces.max_attempts))
    with _CLIENTS_LOCK:
        client = _CLIENTS.get(key)
        if client is None:
            client = _CLIENTS[key] = _new_client(spaces)
        return client


def _new_client(spaces: SpacesConfig) -> Any:
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


# (endpoint, bucket) -> does it enforce If-None-Match: *? (one probe per warm process)
_CONDITIONAL: dict[tuple[str, str], bool] = {}
_CONDITIONAL_LOCK = threading.Lock()


class Store:
    """Keys given to and returned by Store are relative to DRKIT_PREFIX.

    `identity`: the signing key this process writes records with and the keys it believes
    (storage/records.py); a Store without one reads no record and writes none."""

    def __init__(self, spaces: SpacesConfig, client: Any | None = None, identity: Identity | None = None):
        self.spaces = spaces
        self.identity = identity or Identity()
        self.bucket = spaces.bucket
        self.prefix = (spaces.prefix + "/") if spaces.prefix else ""
        self.client = client or make_client(spaces)
        self._conditional: bool | None = None

    def with_identity(self, identity: Identity) -> Store:
        """The same bucket and client, signing and believing as `identity` (a function given a test's store)."""
        other = Store(self.spaces, self.client, identity)
        other._conditional = self._conditional
        return other

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

    def put_bytes(self, key: str, data: bytes, content_type: str = "application/octet-stream", *,
                  public: bool = False, cache_control: str | None = None) -> None:
        """Write an object; `public` makes it readable by anyone (ACL public-read: the status page only)."""
        extra: dict[str, str] = {"ACL": "public-read"} if public else {}
        if cache_control:
            extra["CacheControl"] = cache_control
        try:
            self.client.put_object(Bucket=self.bucket, Key=self._full(key), Body=data, ContentType=content_type,
                                   **extra)
        except Exception as exc:  # noqa: BLE001
            raise self._fail(exc, f"writing {key}") from None

    def public_url(self, key: str) -> str:
        """Where anyone reads a public object (virtual-host style on Spaces, path style elsewhere)."""
        from urllib.parse import quote, urlsplit

        endpoint = self.spaces.endpoint_url.rstrip("/")
        if endpoint.endswith("digitaloceanspaces.com"):
            parts = urlsplit(endpoint)
            return f"{parts.scheme}://{self.bucket}.{parts.netloc}/{quote(self._full(key))}"
        return f"{endpoint}/{self.bucket}/{quote(self._full(key))}"

    def presigned_url(self, key: str, seconds: int) -> str:
        """A URL that reads one private object until it expires (a report shared for an hour)."""
        try:
            return str(self.client.generate_presigned_url("get_object", Params={"Bucket": self.bucket,
                                                                                "Key": self._full(key)},
                                                          ExpiresIn=seconds))
        except Exception as exc:  # noqa: BLE001
            raise self._fail(exc, f"signing a URL for {key}") from None

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
        """Does the store enforce `If-None-Match: *` on PUT? Detected once per warm process and bucket.

        Spaces' support is undocumented and reports conflict, so drkit tests it:
        a probe key written twice must fail the second time with 412. Where it is
        not enforced, `put_if_absent` falls back to HEAD-then-PUT (racy) and callers
        must make duplicates harmless (see docs/dns-failover.md). The answer is kept
        for the life of the process (a warm function answers its next call without
        the three probe requests); concurrent first calls wait for one probe.
        """
        if self._conditional is None:
            where = (self.spaces.endpoint_url, self.bucket)
            with _CONDITIONAL_LOCK:
                known = _CONDITIONAL.get(where)
                if known is None:
                    known = _CONDITIONAL[where] = self._probe_conditional()
            self._conditional = known
        return self._conditional

    def _probe_conditional(self) -> bool:
        key = f"state/.capabilities/conditional-probe-{secrets.token_hex(6)}"
        try:
            self.client.put_object(Bucket=self.bucket, Key=self._full(key), Body=b"1", IfNoneMatch="*")
            try:
                self.client.put_object(Bucket=self.bucket, Key=self._full(key), Body=b"2", IfNoneMatch="*")
                enforced = False
            except botocore.exceptions.ClientError as exc:
                enforced = _precondition_failed(exc)
        except botocore.exceptions.ClientError:
            enforced = False  # the header itself is refused: NotImplemented / 400
        finally:
            try:
                self.client.delete_object(Bucket=self.bucket, Key=self._full(key))
            except (botocore.exceptions.BotoCoreError, botocore.exceptions.ClientError):
                pass
        log.info("conditional writes detected", enforced=enforced)
        return enforced

    def put_if_absent(self, key: str, obj: Any) -> bool:
        """Create key with obj as JSON unless it exists. True if this call created it."""
        return self.put_bytes_if_absent(key, json.dumps(obj, sort_keys=True, default=str).encode())

    def put_bytes_if_absent(self, key: str, body: bytes, content_type: str = "application/json") -> bool:
        """Create key with these bytes unless it exists (If-None-Match: *). True if this call created it."""
        if self.conditional_writes():
            try:
                self.client.put_object(Bucket=self.bucket, Key=self._full(key), Body=body,
                                       ContentType=content_type, IfNoneMatch="*")
                return True
            except botocore.exceptions.ClientError as exc:
                if _precondition_failed(exc):
                    return False
                raise self._fail(exc, f"creating {key}") from None
        if self.head(key) is not None:
            return False
        self.put_bytes(key, body, content_type)
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
