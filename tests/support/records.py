"""Test helpers for signed records: read one's content as a person would (jq -r .signed), and make genuine
old backups the way db-backup makes them (signed by its key), for tests that need history."""

from __future__ import annotations

import hashlib
import json
from typing import Any

from drkit.policy import layout
from drkit.storage import signed
from drkit_dev.keys import store_of


def content(s3_client: Any, bucket: str, key: str) -> dict[str, Any]:
    """The record's data, unverified (what the test inspects; drkit itself always verifies)."""
    envelope = json.loads(s3_client.get_object(Bucket=bucket, Key=key)["Body"].read())
    data: dict[str, Any] = json.loads(envelope["signed"])["data"]
    return data


def genuine_backup(env: dict[str, str], database: str, backup_id: str, data: bytes = b"x",
                   **manifest: Any) -> None:
    """A backup db-backup could have made (data, then its signed manifest), without running pg_dump."""
    store = store_of(env, "db-backup")
    store.put_bytes(layout.data_key(database, backup_id), data)
    signed.put_json(store, layout.manifest_key(database, backup_id), {
        "format": "drkit.db-backup.manifest/1", "id": backup_id, "database": database,
        "key": layout.data_key(database, backup_id), "sha256": hashlib.sha256(data).hexdigest(),
        "bytes_out": len(data), "bytes_in": len(data), **manifest})


def pin(env: dict[str, str], database: str, backup_id: str, reason: str = "test") -> None:
    """What `drkit backups pin` writes: a pin signed by the operator."""
    import datetime as dt

    from drkit.storage import records
    from drkit.storage.markers import PinMarker

    records.write(store_of(env), layout.marker_key(database, backup_id, layout.PINNED_SUFFIX),
                  PinMarker(backup_id, reason, "test"), dt.datetime.now(dt.UTC))


def mark_verified(env: dict[str, str], database: str, backup_id: str) -> None:
    """What restore-verify writes after a pass: a `.verified` marker signed by its key."""
    import datetime as dt

    from drkit.storage import records
    from drkit.storage.markers import VerifiedMarker

    now = dt.datetime.now(dt.UTC)
    records.write(store_of(env, "restore-verify"), layout.marker_key(database, backup_id, layout.VERIFIED_SUFFIX),
                  VerifiedMarker(backup_id, now), now)
