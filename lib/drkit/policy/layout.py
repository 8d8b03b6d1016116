"""The key layout of the drkit bucket (pure; documented in docs/storage.md).

    db/<name>/<YYYY>/<MM>/<DD>/<id>.dump.zst.age   encrypted backup (written first)
    db/<name>/<YYYY>/<MM>/<DD>/<id>.manifest.json  manifest (written last: the commit marker)
    db/<name>/<YYYY>/<MM>/<DD>/<id>.verify.json    restore-verify's latest report on this backup
    db/<name>/<YYYY>/<MM>/<DD>/<id>.verified       marker: the latest verification passed
    db/<name>/<YYYY>/<MM>/<DD>/<id>.pinned         marker: never delete (operator)
    state/db/<name>.json                           last run / last success of db-backup
    state/catalog/db/<name>.json                   db-backup's signed catalog head: every backup, its manifest's SHA-256
    config/<YYYY>/<MM>/<DD>/<id>.tar.zst.age       config-backup archive (written first)
    config/<YYYY>/<MM>/<DD>/<id>.manifest.json     its manifest (files, SHA-256, sources, drift; written last)
    config/<YYYY>/<MM>/<DD>/<id>.pinned            marker: never delete (operator)
    state/config.json                              last run / last success of config-backup
    state/catalog/config.json                      config-backup's signed catalog head
    state/verify/<name>.json                       last run / last pass of restore-verify (RTO figures)
    state/verify/copy/<name>.json                  the same for its proofs of the off-site copy
    audit/<YYYY>/<MM>/<DD>/<stamp>-<function>-<action>-<rand>.json   one event per state change
    state/copy/status.json                         dr/backup-copy's signed report on the off-site copy
                                                   (in the primary and in the copy)
    state/copy/ledger.json                         (in the copy) every object copied: size, SHA-256,
                                                   version, locked until

Keys under `state/`, `status/` and a files source's `catalog.json` change in place; every other key
is written once (storage/versioned.py reads a versioned copy by that rule).

`<id>` is `<YYYYMMDDTHHMMSSZ>-<6 hex>`: sortable by time, unique across
overlapping runs. Retention needs only a LIST of `db/<name>/`: the id carries
the time, a manifest's presence means "completed", markers carry pins and
verification.
"""

from __future__ import annotations

import datetime as dt
import re
import secrets

DATA_SUFFIX = ".dump.zst.age"
MANIFEST_SUFFIX = ".manifest.json"
VERIFIED_SUFFIX = ".verified"
PINNED_SUFFIX = ".pinned"
REPORT_SUFFIX = ".verify.json"
SIGNATURE_SUFFIX = ".manifest.json.minisig"  # the manifest's minisign signature (signed.py)
SUFFIXES = (DATA_SUFFIX, MANIFEST_SUFFIX, SIGNATURE_SUFFIX, REPORT_SUFFIX, VERIFIED_SUFFIX, PINNED_SUFFIX)

ID_RE = re.compile(r"^(\d{8}T\d{6}Z)-([0-9a-f]{6})$")


def new_id(now: dt.datetime) -> str:
    return now.astimezone(dt.UTC).strftime("%Y%m%dT%H%M%SZ") + "-" + secrets.token_hex(3)


def id_time(backup_id: str) -> dt.datetime:
    m = ID_RE.match(backup_id)
    if not m:
        raise ValueError(f"{backup_id!r} is not a backup id like 20261126T021830Z-a1b2c3")
    return dt.datetime.strptime(m.group(1), "%Y%m%dT%H%M%SZ").replace(tzinfo=dt.UTC)


def db_prefix(name: str) -> str:
    return f"db/{name}/"


def backup_base(name: str, backup_id: str) -> str:
    t = id_time(backup_id)
    return f"db/{name}/{t:%Y/%m/%d}/{backup_id}"


def data_key(name: str, backup_id: str) -> str:
    return backup_base(name, backup_id) + DATA_SUFFIX


def manifest_key(name: str, backup_id: str) -> str:
    return backup_base(name, backup_id) + MANIFEST_SUFFIX


def marker_key(name: str, backup_id: str, suffix: str) -> str:
    return backup_base(name, backup_id) + suffix


def state_key(name: str) -> str:
    return f"state/db/{name}.json"


def verify_state_key(name: str, repo: str = "primary") -> str:
    """restore-verify's state of a database; a proof of the off-site copy keeps its own."""
    return f"state/verify/{name}.json" if repo == "primary" else f"state/verify/{repo}/{name}.json"


def catalog_key(name: str) -> str:
    return f"state/catalog/db/{name}.json"


CONFIG_CATALOG_KEY = "state/catalog/config.json"
CATALOG_PREFIX = "state/catalog/"
COPY_STATUS_KEY = "state/copy/status.json"
COPY_LEDGER_KEY = "state/copy/ledger.json"
FILES_PREFIX = "files/"


def changes_in_place(key: str) -> bool:
    """Records rewritten under the same key (heads, state, status, files catalogs); everything else is
    written once: a backup, a manifest, a signature, an archive, a blob, an audit event."""
    return key.startswith(("state/", "status/")) or (
        key.startswith(FILES_PREFIX) and key.endswith(("/catalog.json", "/catalog.json.minisig")))


def audit_key(now: dt.datetime, function: str, action: str) -> str:
    t = now.astimezone(dt.UTC)
    return f"audit/{t:%Y/%m/%d}/{t:%Y%m%dT%H%M%S}{t.microsecond // 1000:03d}Z-{function}-{action}-{secrets.token_hex(3)}.json"


def parse_key(key: str) -> tuple[str, str, str] | None:
    """`db/<name>/Y/M/D/<id><suffix>` -> (name, id, suffix); anything else -> None."""
    parts = key.split("/")
    if len(parts) != 6 or parts[0] != "db":
        return None
    leaf = parts[5]
    for suffix in SUFFIXES:
        if leaf.endswith(suffix):
            backup_id = leaf[: -len(suffix)]
            if ID_RE.match(backup_id):
                return parts[1], backup_id, suffix
    return None


CONFIG_PREFIX = "config/"
CONFIG_DATA_SUFFIX = ".tar.zst.age"
CONFIG_SUFFIXES = (CONFIG_DATA_SUFFIX, MANIFEST_SUFFIX, SIGNATURE_SUFFIX, PINNED_SUFFIX)
CONFIG_STATE_KEY = "state/config.json"
HEALTH_STATE_KEY = "state/health.json"  # health-probe's per-target counters


def config_base(backup_id: str) -> str:
    return f"config/{id_time(backup_id):%Y/%m/%d}/{backup_id}"


def parse_config_key(key: str) -> tuple[str, str] | None:
    """`config/Y/M/D/<id><suffix>` -> (id, suffix); anything else -> None."""
    parts = key.split("/")
    if len(parts) != 5 or parts[0] != "config":
        return None
    for suffix in CONFIG_SUFFIXES:
        if parts[4].endswith(suffix):
            backup_id = parts[4][: -len(suffix)]
            if ID_RE.match(backup_id):
                return backup_id, suffix
    return None


def files_prefix(source_name: str) -> str:
    """`files/<source>/`: a storage source's encrypted blobs and its signed catalog (configbackup/files.py)."""
    return f"{FILES_PREFIX}{source_name}/"


def files_blob_key(source_name: str, blob: str) -> str:
    return f"{files_prefix(source_name)}blobs/{blob}"


def files_catalog_key(source_name: str) -> str:
    return f"{files_prefix(source_name)}catalog.json"


def recreate_key(name: str) -> str:
    """`state/supabase/recreate/<name>.json`: how far `drkit supabase recreate --apply` got (a rerun continues)."""
    return f"state/supabase/recreate/{name}.json"
