"""What follows a stored backup: db-backup's catalog head, its run state and the audit event (storage/chain.py).

The backup is good once its manifest is stored; whatever fails here is bookkeeping, which the next run
repairs (it adopts signed manifests its catalog does not name yet), and is reported as such.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from drkit.core import log
from drkit.core.errors import DrkitError
from drkit.platform.databases import DatabaseConfig
from drkit.policy import layout
from drkit.storage import audit, catalog, chain, records, state
from drkit.storage.state import BackupState, RunInfo
from drkit.storage.store import Store

FUNCTION = "db-backup"
CATALOG_NOT_WRITTEN = "catalog head not written"  # retention waits for the catalog to name the new backup


def catalog_head(store: Store, name: str, now: dt.datetime) -> chain.Head:
    """db-backup's catalog head, with every backup it made but had not recorded yet (a run that died
    between its manifest and the head) adopted by their own signatures."""
    v = catalog.trusted_view(store, name, now)
    if v.head_error:
        log.error("catalog head not believed; rebuilt from the signed manifests", database=name, error=v.head_error)
    return chain.reconciled(v.head, name, chain.DbHead, v)


def bookkeep(db: DatabaseConfig, store: Store, head: chain.Head, manifest: dict[str, Any], manifest_bytes: bytes,
              now: dt.datetime) -> list[str]:
    """The catalog head, the run state and the audit event of a stored backup; each failure is named."""
    problems = []
    seq = manifest["chain"]["seq"]
    try:
        records.write(store, layout.catalog_key(db.name), head.add(chain.link_of(manifest["id"], manifest_bytes, seq)),
                      now)
    except DrkitError as exc:
        problems.append(f"{CATALOG_NOT_WRITTEN}: {exc}")
    try:
        state.record_run(store, layout.state_key(db.name), BackupState, db.name, RunInfo(
            "ok", dt.datetime.fromisoformat(manifest["finished_at"]), id=manifest["id"],
            duration_s=manifest["duration_s"], bytes_out=manifest["bytes_out"], seq=seq), success=True, now=now)
    except DrkitError as exc:
        problems.append(f"state not written: {exc}")
    audit.record(store, FUNCTION, "backup.created", {
        "database": db.name, "backup_id": manifest["id"], "key": manifest["key"], "bytes_out": manifest["bytes_out"],
        "sha256": manifest["sha256"], "seq": seq, "duration_s": manifest["duration_s"]})
    return problems
