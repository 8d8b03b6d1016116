"""db-backup: streamed, compressed, encrypted pg_dump to Spaces, manifest, retention.

Per database, independently (one failure does not stop the others), with the domain package
drkit.backup doing the work:

1. the catalog head db-backup signed, with any backup it made but had not recorded yet (bookkeeping);
2. the backup itself: snapshot, pg_dump -> zstd -> age -> multipart upload, then the signed manifest,
   the commit marker (pipeline); a failure here leaves nothing listed and is a failed run;
3. the bookkeeping: catalog head, state, audit event. A failure here is reported as "backed up,
   bookkeeping failed": the backup is good and the next run repairs it;
4. retention, only after a success that the catalog shows (retention).
"""

from __future__ import annotations

import time
import traceback
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from drkit.backup import bookkeeping, pipeline, retention
from drkit.core import log
from drkit.core.deadline import Clock, Deadline, utcnow
from drkit.core.errors import ConfigError, DeadlineExceeded, DrkitError, PgError
from drkit.crypto import encryption
from drkit.crypto.trust import Identity
from drkit.platform import identity
from drkit.platform.config import Config
from drkit.platform.databases import DatabaseConfig
from drkit.platform.notify import Notifier
from drkit.platform.runtime import Params
from drkit.policy import layout
from drkit.postgres import binaries, connection, snapshot
from drkit.storage import audit, chain, state
from drkit.storage.state import BackupState, RunInfo
from drkit.storage.store import Store

FUNCTION = "db-backup"
MIN_START_S = 40.0  # do not start a database with less time than this left


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


def _startup(environ: Mapping[str, str]) -> tuple[Config, list[Any], Identity]:
    """The configuration, the age recipients and the signing identity: what a run validates before any work."""
    problems: list[str] = []
    me = identity.collect(environ, FUNCTION, problems)
    try:
        cfg = Config.from_env(environ)
    except ConfigError as exc:
        raise ConfigError([*exc.problems, *problems]) from None
    if problems:
        raise ConfigError(problems)
    return cfg, encryption.parse_recipients(cfg.recipients), me


def check(environ: Mapping[str, str]) -> str:
    """The configuration run() needs, validated as it validates it (drkit config check); every problem at once."""
    problems: list[str] = []
    Notifier.collect(environ, problems)
    try:
        cfg, _, _ = _startup(environ)
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
    cfg, recipients, me = _startup(environ)
    log.configure(cfg.log_level)
    selected = cfg.select(request.databases)
    store = (store or Store(cfg.spaces)).with_identity(me)
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
        t0 = time.monotonic()
        head = bookkeeping.catalog_head(store, db.name, clock())  # a LIST and a read or two: the bucket's pace
        margin = pipeline.abort_margin((time.monotonic() - t0) / 3)
        if deadline.remaining() < margin + MIN_START_S - pipeline.ABORT_MARGIN_S:
            raise DeadlineExceeded(f"only {deadline.remaining():.0f}s left and the bucket answers slowly (the stop "
                                   f"margin is {margin:.0f}s); not starting")
        manifest, manifest_bytes = pipeline.backup(db, cfg, store, recipients, deadline, clock, chain.chain_fields(head),
                                                   margin)
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
    # The backup is stored and listed: whatever fails from here on is bookkeeping, which the next run repairs.
    result: dict[str, Any] = {
        "database": db.name, "status": "ok", "backup_id": manifest["id"], "key": manifest["key"],
        "seq": manifest["chain"]["seq"], "bytes_in": manifest["bytes_in"], "bytes_out": manifest["bytes_out"],
        "duration_s": manifest["duration_s"],
        "throughput_mb_s": round(manifest["bytes_in"] / 1e6 / max(manifest["duration_s"], 1e-3), 1),
        "sha256": manifest["sha256"],
    }
    decision = (f"backed up {db.name}: {manifest['bytes_in'] / 1e6:.1f} MB dump -> "
                f"{manifest['bytes_out'] / 1e6:.1f} MB stored in {manifest['duration_s']:.1f}s")
    if manifest["missing_count_tables"]:
        result["warnings"] = [f"configured count tables not found: {', '.join(manifest['missing_count_tables'])}"]
        decision += f" (WARNING: count tables not found: {', '.join(manifest['missing_count_tables'])})"
    problems = bookkeeping.bookkeep(db, store, head, manifest, manifest_bytes, clock())
    catalog_ok = not any(p.startswith(bookkeeping.CATALOG_NOT_WRITTEN) for p in problems)
    if request.prune and catalog_ok:
        try:
            pruning = retention.prune(db, store, manifest["id"], clock(), dry_run=False)
            result["retention"] = pruning
            decision += f"; {pruning['summary']}"
        except DrkitError as exc:
            problems.append(f"retention: {exc}")
    elif request.prune:
        decision += "; retention skipped (the catalog was not updated)"
    else:
        decision += "; retention skipped (prune=false)"
    if problems:
        result["bookkeeping_error"] = "; ".join(problems)
        decision += f"; bookkeeping failed (the backup is good; the next run repairs it): {result['bookkeeping_error']}"
    result["decision"] = decision
    return result


def _dry_run(db: DatabaseConfig, store: Store, clock: Clock) -> dict[str, Any]:
    tool = binaries.tool_version("pg_dump")
    with snapshot.SnapshotSession(db) as session:
        source = session.inspect(())
    binaries.check_compatible(tool, source.server_version_num)
    pruning = retention.prune(db, store, None, clock(), dry_run=True)
    decision = (f"dry run {db.name}: would dump PostgreSQL {source.server_version} "
                f"({source.database_size / 1e6:.1f} MB, {len(source.tables)} tables) with pg_dump {tool.version}; "
                f"{pruning['summary']}")
    return {"database": db.name, "status": "dry_run", "server_version": source.server_version,
            "database_size": source.database_size, "tables": len(source.tables),
            "retention": pruning, "decision": decision}


def _record_failure(db: DatabaseConfig, store: Store, status: str, exc: Exception, duration: float, clock: Clock) -> None:
    now = clock()
    details = {"database": db.name, "status": status, "error": str(exc), "duration_s": round(duration, 3)}
    if isinstance(exc, PgError) and exc.stderr_tail:
        details["stderr_tail"] = exc.stderr_tail[-2000:]
    try:
        state.record_run(store, layout.state_key(db.name), BackupState, db.name,
                         RunInfo(status, now, error=str(exc)[:3000]), success=False, now=now)
    except DrkitError as err:
        log.error("could not record failure state", error=str(err))
    audit.record(store, FUNCTION, "backup.failed", details)


