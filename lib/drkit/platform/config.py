"""Configuration from environment variables, validated up front.

`Config.from_env(environ)` checks everything and raises one `ConfigError`
naming every bad variable, so an operator fixes them all in one pass and no
work starts on an invalid configuration. Variable names are documented in
`.env.example` and docs/configuration.md.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from drkit.core import jsontext, suggest
from drkit.core.errors import ConfigError
from drkit.core.secret import Secret
from drkit.platform.databases import DatabaseConfig, databases_from_env

BUCKET_RE = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")
AGE_RECIPIENT_RE = re.compile(r"^age1[02-9ac-hj-np-z]{58}$")


@dataclass(frozen=True)
class SpacesConfig:
    bucket: str
    endpoint_url: str
    region: str
    access_key: Secret
    secret_key: Secret
    prefix: str = ""
    max_attempts: int = 6  # botocore adaptive retries per request


@dataclass(frozen=True)
class Config:
    spaces: SpacesConfig
    databases: Mapping[str, DatabaseConfig]
    recipients: tuple[str, ...]
    zstd_level: int = 1
    zstd_threads: int = 0
    part_size_mb: int = 8
    upload_concurrency: int = 3
    log_level: str = "info"

    def select(self, names: tuple[str, ...] | None) -> list[DatabaseConfig]:
        """The named databases (None: all), or a ConfigError naming the unknown ones."""
        if names is None:
            return list(self.databases.values())
        unknown = [n for n in names if n not in self.databases]
        if unknown:
            raise ConfigError(suggest.unknown("database", unknown, list(self.databases)))
        return [self.databases[n] for n in names]

    @classmethod
    def from_env(cls, environ: Mapping[str, str], *, need_databases: bool = True,
                 need_recipients: bool = True, with_databases: bool = True) -> Config:
        """`with_databases=False`: ignore database settings (functions that never touch a database,
        and must not need a PostgreSQL driver to parse their URLs)."""
        problems: list[str] = []
        spaces = _spaces_from_env(environ, problems)
        recipients = _recipients_from_env(environ, problems) if need_recipients else ()
        databases = databases_from_env(environ, problems, required=need_databases) if with_databases else {}
        # archive writers (they need recipients) also read the compression and upload settings
        writer = need_recipients
        zstd_level = _int_env(environ, "DRKIT_ZSTD_LEVEL", 1, 1, 19, problems) if writer else 1
        zstd_threads = _int_env(environ, "DRKIT_ZSTD_THREADS", 0, 0, 8, problems) if writer else 0
        part_size_mb = _int_env(environ, "DRKIT_PART_SIZE_MB", 8, 5, 512, problems) if writer else 8
        concurrency = _int_env(environ, "DRKIT_UPLOAD_CONCURRENCY", 3, 1, 10, problems) if writer else 3
        log_level = environ.get("DRKIT_LOG_LEVEL", "info").strip().lower() or "info"
        if log_level not in ("debug", "info", "warning", "error"):
            problems.append(f"DRKIT_LOG_LEVEL must be debug, info, warning or error, not {log_level!r}")
        if problems or spaces is None:
            raise ConfigError(problems)
        return cls(
            spaces=spaces,
            databases=databases,
            recipients=recipients,
            zstd_level=zstd_level,
            zstd_threads=zstd_threads,
            part_size_mb=part_size_mb,
            upload_concurrency=concurrency,
            log_level=log_level,
        )


def json_list(text: str, where: str, *, items: str, limit: int | None = None, required: str | None = None) -> list[Any]:
    """The opening every JSON-list setting shares: parse, is a list, within `limit`.

    Empty text gives [] unless `required` (then it is the error, and an empty list is refused too).
    `items` names the elements in messages ("targets", "sources").
    """

    if not text.strip():
        if required is None:
            return []
        raise ConfigError(required)
    try:
        value = jsontext.loads(text)
    except ValueError as exc:
        raise ConfigError(f"{where} is not valid JSON ({exc})") from None
    if not isinstance(value, list) or (required is not None and not value):
        raise ConfigError(f"{where} must be a {'non-empty ' if required is not None else ''}JSON list of {items}")
    if limit is not None and len(value) > limit:
        raise ConfigError(f"{where} has {len(value)} {items}; at most {limit}")
    return value


def collect_spaces(environ: Mapping[str, str], problems: list[str]) -> SpacesConfig | None:
    """The bucket settings, or None with every problem appended (for start-ups that report all at once)."""
    return _spaces_from_env(environ, problems)


def spaces_from_env(environ: Mapping[str, str]) -> SpacesConfig:
    """Only the bucket settings (for functions that read state but touch no database)."""
    problems: list[str] = []
    spaces = _spaces_from_env(environ, problems)
    if problems or spaces is None:
        raise ConfigError(problems)
    return spaces


LOOPBACK_HTTP = re.compile(r"^http://(127\.\d+\.\d+\.\d+|localhost|\[::1\])(:\d+)?(/|$)")


def secure_url(url: str) -> bool:
    """https://, or plain http:// to this machine only (the local stand-ins of tests and the drill):
    credentials and backups never cross a network in clear text."""
    return url.startswith("https://") or bool(LOOPBACK_HTTP.match(url))


@dataclass(frozen=True)
class BucketVars:
    """The variable names that configure one bucket (the primary, the off-site copy, a reader of the copy)."""

    bucket: str = "DRKIT_SPACES_BUCKET"
    endpoint: str = "DRKIT_SPACES_ENDPOINT"
    region: str = "DRKIT_SPACES_REGION"
    key: str = "DRKIT_SPACES_KEY"
    secret: str = "DRKIT_SPACES_SECRET"
    prefix: str = "DRKIT_PREFIX"
    what: str = "the Spaces bucket that holds all drkit state"

    @classmethod
    def named(cls, stem: str, what: str, key: str = "KEY", secret: str = "SECRET") -> BucketVars:
        return cls(f"{stem}_BUCKET", f"{stem}_ENDPOINT", f"{stem}_REGION", f"{stem}_{key}", f"{stem}_{secret}",
                   f"{stem}_PREFIX", what)


PRIMARY = BucketVars()


def _spaces_from_env(environ: Mapping[str, str], problems: list[str], names: BucketVars = PRIMARY) -> SpacesConfig | None:
    n = names
    bucket = environ.get(n.bucket, "").strip()
    if not bucket:
        problems.append(f"{n.bucket} is not set ({n.what})")
    elif not BUCKET_RE.match(bucket):
        problems.append(f"{n.bucket} {bucket!r} is not a valid bucket name (3-63 of a-z 0-9 . -)")
    endpoint = environ.get(n.endpoint, "").strip()
    region = environ.get(n.region, "").strip()
    if not endpoint and not region:
        problems.append(f"set {n.region} (e.g. fra1) or {n.endpoint} (a full https:// URL)")
    if endpoint and not re.match(r"^https?://[^/\s]+/?$", endpoint):
        problems.append(f"{n.endpoint} {endpoint!r} must look like https://fra1.digitaloceanspaces.com")
    elif endpoint and not secure_url(endpoint):
        problems.append(f"{n.endpoint} {endpoint!r} must be https:// (plain http:// would send the keys and "
                        "every backup in clear text; it is allowed only to this machine, for local tests)")
    if region and not re.match(r"^[a-z0-9-]{2,32}$", region):
        problems.append(f"{n.region} {region!r} is not a region slug like fra1 or nyc3")
    if not endpoint and region:
        endpoint = f"https://{region}.digitaloceanspaces.com"
    key = environ.get(n.key, "").strip()
    secret = environ.get(n.secret, "").strip()
    if not key:
        problems.append(f"{n.key} is not set (a Spaces or S3 access key id)")
    if not secret:
        problems.append(f"{n.secret} is not set (the Spaces or S3 secret key)")
    prefix = environ.get(n.prefix, "").strip().strip("/")
    if prefix and not re.match(r"^[A-Za-z0-9._/-]+$", prefix):
        problems.append(f"{n.prefix} {prefix!r} may only contain letters, digits and . _ - /")
    attempts = _int_env(environ, "DRKIT_S3_MAX_ATTEMPTS", 6, 1, 10, problems)
    if problems:
        return None
    return SpacesConfig(
        max_attempts=attempts,
        bucket=bucket,
        endpoint_url=endpoint.rstrip("/"),
        region=region or "us-east-1",
        access_key=Secret(key),
        secret_key=Secret(secret),
        prefix=prefix,
    )


COPY = BucketVars.named("DRKIT_COPY", "the off-site copy's bucket, another region or provider (dr/backup-copy)")
COPY_READER = BucketVars.named("DRKIT_OFFSITE", "the off-site copy, read with a Read-only key (restore-verify)")
LOCK_DAYS_MAX = 3650


@dataclass(frozen=True)
class CopyConfig:
    """The off-site copy: its bucket (another region or provider) and how long each object is locked there."""

    spaces: SpacesConfig
    lock_days: int | None = None  # None: the retention window plus a margin (offsite/policy.py)


def copy_configured(environ: Mapping[str, str], names: BucketVars = COPY) -> bool:
    return bool(environ.get(names.bucket, "").strip())


def copy_from_env(environ: Mapping[str, str], problems: list[str], names: BucketVars = COPY) -> CopyConfig | None:
    """The off-site copy's settings, or None with every problem appended. The copy must be another bucket
    than the primary one (at the same endpoint it would be no copy at all)."""
    spaces = _spaces_from_env(environ, problems, names)
    lock_raw = environ.get("DRKIT_COPY_LOCK_DAYS", "").strip() if names is COPY else ""
    lock: int | None = None
    if lock_raw:
        lock = _int_env(environ, "DRKIT_COPY_LOCK_DAYS", 0, 1, LOCK_DAYS_MAX, problems)
    if spaces is None:
        return None
    primary_bucket = environ.get("DRKIT_SPACES_BUCKET", "").strip()
    primary_endpoint = (environ.get("DRKIT_SPACES_ENDPOINT", "").strip().rstrip("/") or
                        (f"https://{environ.get('DRKIT_SPACES_REGION', '').strip()}.digitaloceanspaces.com"))
    if spaces.bucket == primary_bucket and spaces.endpoint_url == primary_endpoint and \
            spaces.prefix == environ.get("DRKIT_PREFIX", "").strip().strip("/"):
        problems.append(f"{names.bucket} names the primary bucket itself ({primary_bucket} at {primary_endpoint}): "
                        "the off-site copy must be another bucket, in another region or with another provider")
        return None
    return CopyConfig(spaces, lock or None)


def signing_key_from_env(environ: Mapping[str, str], problems: list[str]) -> Secret | None:
    from drkit.crypto.signing import SECRET_PREFIX

    # the key itself, or the whole file `drkit keygen --signing` wrote
    raw = next((t for t in environ.get("DRKIT_SIGNING_KEY", "").split() if t.startswith(SECRET_PREFIX)),
               environ.get("DRKIT_SIGNING_KEY", "").strip())
    if not raw:
        problems.append("DRKIT_SIGNING_KEY is not set (this function's own key: it signs every record the function "
                        "writes, so that readers can tell them from planted ones; `drkit keygen --signing --for FN`)")
        return None
    secret = Secret(raw)
    from drkit.crypto import signing

    try:
        signing.public_of(raw)
    except ConfigError as exc:
        problems.extend(exc.problems)
        return None
    return secret


def trusted_keys(environ: Mapping[str, str], *, required: bool, extra: Sequence[str] = ()) -> list[Any]:
    """DRKIT_TRUSTED_KEYS (plus keys pinned elsewhere, e.g. in the identity file): the public keys
    whose signatures make a manifest or plan believable."""
    from drkit.crypto import signing

    raw = " ".join([environ.get("DRKIT_TRUSTED_KEYS", ""), *extra]).strip()
    if not raw and required:
        raise ConfigError("DRKIT_TRUSTED_KEYS is not set (the minisign public keys, RW…, whose signatures drkit "
                          "believes; `drkit keygen --signing` prints one)")
    return signing.parse_trusted(raw)


def _recipients_from_env(environ: Mapping[str, str], problems: list[str]) -> tuple[str, ...]:
    raw = environ.get("DRKIT_AGE_RECIPIENTS", "")
    items = tuple(x for x in re.split(r"[\s,]+", raw.strip()) if x)
    if not items:
        problems.append(
            "DRKIT_AGE_RECIPIENTS is not set (one or more age public keys 'age1…'; "
            "make one with `scripts/drkit keygen`)"
        )
    for item in items:
        if item.startswith("AGE-SECRET-KEY-"):
            problems.append(
                "DRKIT_AGE_RECIPIENTS holds a private age identity; it must hold only public keys (age1…). "
                "Keep the identity offline and rotate it: it has been exposed to this deployment"
            )
        elif not AGE_RECIPIENT_RE.match(item):
            problems.append(f"DRKIT_AGE_RECIPIENTS: {item[:12]!r}… is not an age X25519 public key (age1 + 58 chars)")
    return items


def _int_env(environ: Mapping[str, str], var: str, default: int, lo: int, hi: int, problems: list[str]) -> int:
    raw = environ.get(var, "").strip()
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError:
        problems.append(f"{var} must be a whole number from {lo} to {hi}, not {raw!r}")
        return default
    if not lo <= value <= hi:
        problems.append(f"{var} must be from {lo} to {hi}, not {value}")
        return default
    return value
