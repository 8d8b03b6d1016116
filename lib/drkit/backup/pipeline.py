"""One database backup: a REPEATABLE READ snapshot, `pg_dump -Fc -Z0` -> zstd -> age -> multipart upload, the manifest.

1. open a REPEATABLE READ snapshot, read server facts, table estimates and exact counts of the
   configured tables (postgres/snapshot.py);
2. `pg_dump -Fc -Z0 --snapshot=…` -> zstd -> age -> multipart upload, all streamed with bounded
   memory, SHA-256 computed in-stream; a watchdog stops pg_dump `margin_s` before the deadline (at least
   `ABORT_MARGIN_S`, more on a slow bucket: `abort_margin`);
3. only if pg_dump exited 0 and every part was stored: complete the upload, then write the signed
   manifest (the commit marker) with its place in the catalog chain (storage/chain.py).

Anything that fails before step 3 aborts the multipart upload: no object, no manifest, nothing listed;
a manifest that cannot be written takes its data object (and a signature written before it) away.
"""

from __future__ import annotations

import os
import threading
import time
from typing import Any

import zstandard

from drkit import __version__
from drkit.core import log
from drkit.core.deadline import Clock, Deadline
from drkit.core.errors import DeadlineExceeded, DrkitError
from drkit.crypto import encryption
from drkit.platform.config import Config
from drkit.platform.databases import DatabaseConfig
from drkit.policy import layout
from drkit.postgres import binaries, dump, snapshot
from drkit.storage import signed
from drkit.storage.store import Store
from drkit.storage.transfer import open_upload

ABORT_MARGIN_S = 25.0  # stop pg_dump at least this long before the deadline: abort + report must fit
REQUESTS_AFTER_ABORT = 10  # abort the upload, state (read, write), audit, result: in request round trips, doubled
MAX_ABORT_MARGIN_S = 240.0


def abort_margin(request_latency_s: float) -> float:
    """How long before the deadline pg_dump must stop, for the bucket's measured latency: what happens after
    the stop (abort, state, audit) is a handful of requests, and each may take that long."""
    return min(MAX_ABORT_MARGIN_S, ABORT_MARGIN_S + REQUESTS_AFTER_ABORT * max(0.0, request_latency_s))
ZSTD_JOB_SIZE = 2 * 1024 * 1024


class CountingReader:
    """Counts bytes read from pg_dump's stdout (the manifest's bytes_in)."""

    def __init__(self, raw: Any):
        self.raw = raw
        self.count = 0

    def read(self, n: int = -1) -> bytes:
        data = self.raw.read(n)
        self.count += len(data)
        return bytes(data)


def zstd_params(cfg: Config) -> Any:
    """zstd workers compress outside the GIL, beside pg_dump and the uploads. 2 MiB jobs keep
    the workers' buffers at ~16 MB instead of ~54 MB for 8 % more time (scripts/bench_backup)."""
    if cfg.zstd_threads == 0:
        return zstandard.ZstdCompressionParameters.from_level(cfg.zstd_level)
    return zstandard.ZstdCompressionParameters.from_level(
        cfg.zstd_level, threads=cfg.zstd_threads, job_size=ZSTD_JOB_SIZE)


def backup(db: DatabaseConfig, cfg: Config, store: Store, recipients: list[Any], deadline: Deadline,
           clock: Clock, place: dict[str, Any], margin_s: float = ABORT_MARGIN_S) -> tuple[dict[str, Any], bytes]:
    """Take one backup; return its manifest (already stored) and the manifest's bytes. Raises on any failure.
    `place`: its place in the catalog chain (storage/chain.py)."""
    started_at = clock()
    t0 = time.monotonic()
    backup_id = layout.new_id(started_at)
    data_key = layout.data_key(db.name, backup_id)
    tool = binaries.tool_version("pg_dump")
    log.info("backup starting", backup_id=backup_id, source=db.display, pg_dump=tool.version)

    with snapshot.SnapshotSession(db) as session:
        source = session.inspect(db.count_tables)
        binaries.check_compatible(tool, source.server_version_num)
        proc = dump.start_dump(db, source.snapshot)
        timed_out = threading.Event()

        def on_deadline() -> None:
            timed_out.set()
            proc.stop("deadline reached")

        watchdog: threading.Timer | None = None
        if deadline.remaining() != float("inf"):  # the CLI runs without a deadline
            watchdog = threading.Timer(max(0.0, deadline.remaining() - margin_s), on_deadline)
            watchdog.daemon = True
            watchdog.start()
        counter = CountingReader(proc.stdout)
        try:
            with open_upload(store, data_key, part_size=cfg.part_size_mb * 1024 * 1024,
                                   concurrency=cfg.upload_concurrency, deadline=deadline) as upload:
                compressor = zstandard.ZstdCompressor(compression_params=zstd_params(cfg))
                reader = compressor.stream_reader(counter, read_size=1 << 20, closefd=False)  # type: ignore[arg-type]
                encryption.encrypt_stream(reader, upload, recipients)
                code = proc.wait()
                if timed_out.is_set():
                    raise DeadlineExceeded(
                        f"pg_dump stopped {margin_s:.0f}s before the function deadline after "
                        f"{counter.count / 1e6:.0f} MB; upload aborted. Raise the function timeout or split databases")
                proc.check(code)
                stored = upload.complete()
        except BaseException:
            proc.stop("backup aborted")
            raise
        finally:
            if watchdog is not None:
                watchdog.cancel()
            proc.wait()

    finished_at = clock()
    duration = round(time.monotonic() - t0, 3)
    manifest = {
        "format": "drkit.db-backup.manifest/1",
        "id": backup_id,
        "database": db.name,
        "key": data_key,
        "status": "done",
        "started_at": started_at.isoformat(),
        "finished_at": finished_at.isoformat(),
        "duration_s": duration,
        "bytes_in": counter.count,
        "bytes_out": stored.size,
        "sha256": upload.sha256.hexdigest(),
        "dump": {"tool": "pg_dump", "tool_version": tool.version, "format": "custom", "compress": "none (-Z 0)",
                 "options": list(db.pg_dump_args), "snapshot": "exported" if source.snapshot else "own"},
        "compression": {"algorithm": "zstd", "level": cfg.zstd_level, "threads": cfg.zstd_threads},
        "encryption": {"format": "age-encryption.org/v1", "recipients": list(cfg.recipients)},
        "source": {"display": db.display, "server_version": source.server_version,
                   "server_version_num": source.server_version_num, "database_size": source.database_size},
        "tables": [t.to_dict() for t in source.tables],
        "counted_tables": sum(1 for t in source.tables if t.exact_rows is not None),
        "missing_count_tables": source.missing_count_tables,
        "objects": source.objects,  # policies, triggers, extensions, publication members, roles (postgres/inventory)
        "restore": {
            "min_pg_restore_major": tool.major,
            "without_drkit": "docs/restore-standard-tools.md: verify this manifest's signature (minisign -V) and "
                             "the object's SHA-256, age -d | zstd -d to a file, then pg_restore into a new database",
        },
        "chain": place,  # seq and the previous manifest's id and SHA-256 (storage/chain.py)
        "drkit_version": __version__,
        "activation_id": os.environ.get("__OW_ACTIVATION_ID"),
    }
    manifest_key = layout.manifest_key(db.name, backup_id)
    try:
        manifest_bytes = signed.put_json(store, manifest_key, manifest)
    except DrkitError:
        # Without its manifest the object is not a backup; remove it (and a signature without its manifest) now
        # rather than leave an orphan.
        best_effort_delete(store, manifest_key + signed.SIG)
        best_effort_delete(store, data_key)
        raise
    log.info("backup stored", backup_id=backup_id, bytes_in=counter.count, bytes_out=stored.size, duration_s=duration)
    return manifest, manifest_bytes




def best_effort_delete(store: Store, key: str) -> None:
    try:
        store.delete(key)
    except DrkitError as exc:
        log.error("could not delete object; garbage collection will retry", key=key, error=str(exc))
