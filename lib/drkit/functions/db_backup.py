"""db-backup: streamed, compressed, encrypted pg_dump to Spaces, manifest, retention.

Per database, independently (one failure does not stop the others):

1. open a REPEATABLE READ snapshot, read server facts, table estimates and
   exact counts of the configured tables (snapshot.SnapshotSession);
2. `pg_dump -Fc -Z0 --snapshot=…` -> zstd -> age -> multipart upload, all
   streamed with bounded memory, SHA-256 computed in-stream;
3. only if pg_dump exited 0 and every part was stored: complete the upload,
   then write the manifest (the commit marker), then state and audit;
4. retention: only after a success that the listing shows, per policy with
   the safety rules; deletes manifest first, then data (see docs/storage.md);
   then garbage from killed runs (orphan data, stale multipart uploads).

Anything that fails before step 3 aborts the multipart upload: no object, no
manifest, nothing listed.
"""

from __future__ import annotations

import datetime as dt
import os
import threading
import time
import traceback
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any

import zstandard

from drkit import __version__
from drkit.core import log
from drkit.core.deadline import Clock, Deadline, utcnow
from drkit.core.errors import ConfigError, DeadlineExceeded, DrkitError, PgError, StoreError
from drkit.crypto import encryption
from drkit.platform.config import Config
from drkit.platform.databases import DatabaseConfig
from drkit.platform.notify import Notifier
from drkit.platform.runtime import Params
from drkit.policy import layout
from drkit.policy.retention import Decision, Verdict, plan
from drkit.postgres import binaries, connection, dump, snapshot
from drkit.storage import audit, catalog, signed, state
from drkit.storage.store import Store
from drkit.storage.transfer import open_upload

FUNCTION = "db-backup"
ABORT_MARGIN_S = 25.0  # stop pg_dump this long before the deadline: abort + report must fit
MIN_START_S = 40.0  # do not start a database with less time than this left
ZSTD_JOB_SIZE = 2 * 1024 * 1024

@dataclass(frozen=True)
class Request:
    databases: tuple[str, ...] | None  # None: every configured database
    dry_run: bool = False
    prune: bool = True

    @classmethod
    def from_params(cls, params: Mapping[str, Any]) -> Request:
        p = Params(params, known=("database", "dry_run", "prune"))
        request = cls(databases=p.databases(), dry_run=p.boolean("dry_run", False), prune=p.boolean("prune", True))
        p.finish()
        return request


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


def _startup(environ: Mapping[str, str]) -> tuple[Config, list[Any]]:
    """The configuration and the age recipients: what a run validates before any work."""
    cfg = Config.from_env(environ)
    return cfg, encryption.parse_recipients(cfg.recipients)


def check(environ: Mapping[str, str]) -> str:
    """The configuration run() needs, validated as it validates it (drkit config check); every problem at once."""
    problems: list[str] = []
    Notifier.collect(environ, problems)
    try:
        cfg, _ = _startup(environ)
    except ConfigError as exc:
        raise ConfigError([*problems, *exc.problems]) from None
    if problems:
        raise ConfigError(problems)
    return f"{len(cfg.databases)} database(s): {', '.join(cfg.databases)}; {len(cfg.recipients)} age recipient(s)"


def run(params: Mapping[str, Any], environ: Mapping[str, str], deadline: Deadline, *,
        store: Store | None = None, clock: Clock = utcnow) -> dict[str, Any]:
    """Back up the selected databases; any failure (configuration included: backups stop
    then too) is notified when a notification URL is set."""
    request = Request.from_params(params)
    notifier = Notifier.from_env(environ)
    try:
        result = _run(request, environ, deadline, store, clock)
    except DrkitError as exc:
        if notifier.configured and not request.dry_run:
            notifier.send({"event": "db_backup.failed", "function": FUNCTION, "status": exc.status,
                           "decision": f"no backup was made: {exc}"})
        raise
    if not result["ok"] and notifier.configured and not request.dry_run:
        failures = [r for r in result["databases"] if r["status"] not in ("ok", "dry_run")]
        result["notifications"] = notifier.send({
            "event": "db_backup.failed", "function": FUNCTION, "status": result["status"],
            "decision": result["decision"], "databases": failures,
            "failed_checks": [f"{r['database']}: {r.get('error') or r['decision']}" for r in failures]})
    return result


def _run(request: Request, environ: Mapping[str, str], deadline: Deadline, store: Store | None,
         clock: Clock) -> dict[str, Any]:
    cfg, recipients = _startup(environ)
    log.configure(cfg.log_level)
    selected = cfg.select(request.databases)
    store = store or Store(cfg.spaces)
    store.check_access()
    binaries.tool_version("pg_dump")  # fail before any database when the binary is missing

    results = []
    for db in selected:
        results.append(_one(db, cfg, store, recipients, request, deadline, clock))
        warning = connection.tls_warning(db)
        if warning:
            results[-1].setdefault("warnings", []).append(warning)
    statuses = {r["status"] for r in results}
    ok = statuses <= {"ok", "dry_run"}
    status = "ok" if ok else ("failed" if statuses.isdisjoint({"ok"}) else "partial")
    if request.dry_run:
        status = "dry_run" if ok else status
    return {"ok": ok, "status": status, "decision": "; ".join(r["decision"] for r in results), "databases": results}


def _one(db: DatabaseConfig, cfg: Config, store: Store, recipients: list[Any], request: Request,
         deadline: Deadline, clock: Clock) -> dict[str, Any]:
    log.bind(database=db.name)
    started = time.monotonic()
    try:
        if request.dry_run:
            return _dry_run(db, store, clock)
        if deadline.remaining() < MIN_START_S:
            raise DeadlineExceeded(f"only {deadline.remaining():.0f}s left; not starting (needs {MIN_START_S:.0f}s)")
        manifest = backup(db, cfg, store, recipients, deadline, clock)
        result: dict[str, Any] = {
            "database": db.name,
            "status": "ok",
            "backup_id": manifest["id"],
            "key": manifest["key"],
            "bytes_in": manifest["bytes_in"],
            "bytes_out": manifest["bytes_out"],
            "duration_s": manifest["duration_s"],
            "throughput_mb_s": round(manifest["bytes_in"] / 1e6 / max(manifest["duration_s"], 1e-3), 1),
            "sha256": manifest["sha256"],
        }
        decision = (f"backed up {db.name}: {manifest['bytes_in'] / 1e6:.1f} MB dump -> "
                    f"{manifest['bytes_out'] / 1e6:.1f} MB stored in {manifest['duration_s']:.1f}s")
        if manifest["missing_count_tables"]:
            result["warnings"] = [f"configured count tables not found: {', '.join(manifest['missing_count_tables'])}"]
            decision += f" (WARNING: count tables not found: {', '.join(manifest['missing_count_tables'])})"
        if request.prune:
            pruning = prune(db, store, manifest["id"], clock(), dry_run=False)
            result["retention"] = pruning
            decision += f"; {pruning['summary']}"
        else:
            decision += "; retention skipped (prune=false)"
        result["decision"] = decision
        return result
    except Exception as exc:  # noqa: BLE001 - one database's failure must not stop the others
        if isinstance(exc, DrkitError):
            status = exc.status if exc.status in ("timed_out", "invalid_config") else "failed"
            message = str(exc)
            log.error("backup failed", status=status, error=message)
        else:
            status, message = "error", f"internal error: {type(exc).__name__}: {exc}"
            log.error("backup failed", status=status, error=message, traceback=traceback.format_exc())
        if not request.dry_run:
            _record_failure(db, store, status, exc, time.monotonic() - started, clock)
        return {"database": db.name, "status": status, "error": message,
                "decision": f"{db.name} {status.replace('_', ' ')}: {message}; nothing pruned"}
    finally:
        log.unbind("database")


def backup(db: DatabaseConfig, cfg: Config, store: Store, recipients: list[Any], deadline: Deadline,
           clock: Clock) -> dict[str, Any]:
    """Take one backup; return its manifest (already stored). Raises on any failure."""
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
            watchdog = threading.Timer(max(0.0, deadline.remaining() - ABORT_MARGIN_S), on_deadline)
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
                        f"pg_dump stopped {ABORT_MARGIN_S:.0f}s before the function deadline after "
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
        "drkit_version": __version__,
        "activation_id": os.environ.get("__OW_ACTIVATION_ID"),
    }
    try:
        assert cfg.signing_key is not None  # Config.from_env requires it of writers
        signed.put_json(store, layout.manifest_key(db.name, backup_id), manifest, cfg.signing_key.reveal())
    except StoreError:
        # Without its manifest the object is not a backup; remove it now rather than leave an orphan.
        _best_effort_delete(store, data_key)
        raise
    log.info("backup stored", backup_id=backup_id, bytes_in=counter.count, bytes_out=stored.size, duration_s=duration)
    state.record_run(store, layout.state_key(db.name), db.name, {
        "id": backup_id, "status": "ok", "at": finished_at.isoformat(), "duration_s": duration,
        "bytes_out": stored.size}, success=True)
    audit.record(store, FUNCTION, "backup.created", {
        "database": db.name, "backup_id": backup_id, "key": data_key, "bytes_out": stored.size,
        "sha256": manifest["sha256"], "duration_s": duration})
    return manifest


def prune(db: DatabaseConfig, store: Store, new_id: str | None, now: dt.datetime, *, dry_run: bool) -> dict[str, Any]:
    """Apply retention to one database. `new_id`: the backup just taken (must be listed)."""
    entries = catalog.list_backups(store, db.name)
    if new_id is not None and not any(e.id == new_id and e.complete for e in entries):
        log.warning("new backup not visible in listing yet; retention skipped this run", backup_id=new_id)
        return {"summary": "retention skipped (new backup not yet listed)", "deleted": [], "kept": len(entries)}
    # the backup just taken is never deleted, even when another one shares its second (ids sort by second)
    items = [replace(e.item(), keep_reason="the backup just taken") if e.id == new_id else e.item() for e in entries]
    decisions = plan(items, db.retention, now)
    by_id = {e.id: e for e in entries}
    doomed = [d for d in decisions if d.deletes]
    deleted: list[str] = []
    if not dry_run:
        for d in sorted(doomed, key=lambda d: d.time):  # oldest first
            _delete_backup(store, by_id[d.id])
            deleted.append(d.id)
            audit.record(store, FUNCTION, "backup.deleted", {
                "database": db.name, "backup_id": d.id, "policy": str(db.retention), "reasons": list(d.reasons)})
    junk = catalog.garbage(store, entries, db.name, now)
    cleaned = []
    if not dry_run:
        for e in junk.orphans:
            _best_effort_delete(store, e.data_key)
            cleaned.append(e.data_key)
        for u in junk.stale_uploads:
            store.abort_upload(u.key, u.upload_id)
            cleaned.append(f"upload:{u.key}")
        if cleaned:
            audit.record(store, FUNCTION, "garbage.removed", {"database": db.name, "removed": cleaned})
    kept = [d for d in decisions if d.verdict in (Verdict.KEEP, Verdict.PROTECTED, Verdict.PINNED)]
    verb = "would delete" if dry_run else "deleted"
    summary = f"retention ({db.retention}): kept {len(kept)}, {verb} {len(doomed)}"
    if junk.orphans or junk.stale_uploads:
        summary += f", {'would remove' if dry_run else 'removed'} {len(junk.orphans) + len(junk.stale_uploads)} leftovers"
    if junk.broken:
        summary += f", {len(junk.broken)} BROKEN (manifest without data: {', '.join(e.id for e in junk.broken)})"
    return {
        "summary": summary,
        "policy": str(db.retention),
        "plan": [_decision_dict(d) for d in decisions],
        "deleted": deleted if not dry_run else [d.id for d in doomed],
        "kept": len(kept),
        "leftovers": [e.data_key for e in junk.orphans] + [f"upload:{u.key}" for u in junk.stale_uploads],
        "broken": [e.id for e in junk.broken],
    }


def _decision_dict(d: Decision) -> dict[str, Any]:
    return {"id": d.id, "time": d.time.isoformat(), "verdict": d.verdict.value, "reasons": list(d.reasons)}


def _delete_backup(store: Store, entry: catalog.Entry) -> None:
    """Manifest first: a listed backup always has its data. A crash in between
    leaves an orphan data object, which garbage collection removes later."""
    store.delete(entry.manifest_key)
    store.delete(entry.data_key)
    for suffix in entry.objects:
        if suffix not in (layout.MANIFEST_SUFFIX, layout.DATA_SUFFIX):
            store.delete(layout.marker_key(entry.database, entry.id, suffix))


def _dry_run(db: DatabaseConfig, store: Store, clock: Clock) -> dict[str, Any]:
    tool = binaries.tool_version("pg_dump")
    with snapshot.SnapshotSession(db) as session:
        source = session.inspect(())
    binaries.check_compatible(tool, source.server_version_num)
    pruning = prune(db, store, None, clock(), dry_run=True)
    decision = (f"dry run {db.name}: would dump PostgreSQL {source.server_version} "
                f"({source.database_size / 1e6:.1f} MB, {len(source.tables)} tables) with pg_dump {tool.version}; "
                f"{pruning['summary']}")
    return {"database": db.name, "status": "dry_run", "server_version": source.server_version,
            "database_size": source.database_size, "tables": len(source.tables),
            "retention": pruning, "decision": decision}


def _record_failure(db: DatabaseConfig, store: Store, status: str, exc: Exception, duration: float, clock: Clock) -> None:
    at = clock().isoformat()
    details = {"database": db.name, "status": status, "error": str(exc), "duration_s": round(duration, 3)}
    if isinstance(exc, PgError) and exc.stderr_tail:
        details["stderr_tail"] = exc.stderr_tail[-2000:]
    try:
        state.record_run(store, layout.state_key(db.name), db.name, {"status": status, "at": at, "error": str(exc)},
                         success=False)
    except StoreError as err:
        log.error("could not record failure state", error=str(err))
    audit.record(store, FUNCTION, "backup.failed", details)


def _best_effort_delete(store: Store, key: str) -> None:
    try:
        store.delete(key)
    except StoreError as exc:
        log.error("could not delete object; garbage collection will retry", key=key, error=str(exc))
