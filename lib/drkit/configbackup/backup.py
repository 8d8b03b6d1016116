"""One config backup: collect every unit into one archive, write the signed manifest last, prune by policy."""

from __future__ import annotations

import datetime as dt
import os
import time
import traceback
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from drkit import __version__
from drkit.configbackup import catalog, fetch, files, inventory
from drkit.configbackup.archive import ArchiveWriter, FileEntry
from drkit.configbackup.sources import DO_KINDS, Source, parse_sources
from drkit.core import log
from drkit.core.deadline import Clock, Deadline
from drkit.core.errors import ConfigError, DrkitError, StoreError
from drkit.digitalocean.api import DoApi
from drkit.platform.config import Config, SpacesConfig
from drkit.platform.notify import Notifier
from drkit.policy import drift, layout
from drkit.policy.retention import Policy, Verdict, parse_policy, plan
from drkit.storage import audit, signed, state
from drkit.storage.store import Store
from drkit.storage.transfer import open_upload

FUNCTION = "config-backup"
DEFAULT_RETENTION = "keep_within=90d"
DEFAULT_NOTIFY_ON = ("failures", "dns", "firewalls")
NOTIFY_TOKENS = ("failures", "dns", "firewalls", "files")
MIN_UNIT_S = 45.0
ZSTD_LEVEL = 3  # config archives are small; level 3 costs little and saves a fifth over level 1


@dataclass(frozen=True)
class Settings:
    cfg: Config
    sources: tuple[Source, ...]
    retention: Policy
    notify_on: frozenset[str]
    notifier: Notifier
    environ: Mapping[str, str]  # for DoApi.from_env (endpoint, CA file)

    @classmethod
    def from_env(cls, environ: Mapping[str, str]) -> Settings:
        problems: list[str] = []
        cfg: Config | None = None
        try:
            cfg = Config.from_env(environ, need_databases=False, with_databases=False)
        except ConfigError as exc:
            problems += exc.problems
        sources: list[Source] = []
        try:
            sources = parse_sources(environ.get("DRKIT_CONFIG_SOURCES", ""), environ)
        except ConfigError as exc:
            problems += exc.problems
        raw_policy = environ.get("DRKIT_CONFIG_RETENTION", "").strip() or DEFAULT_RETENTION
        try:
            policy = parse_policy(raw_policy)
        except ValueError as exc:
            problems.append(f"DRKIT_CONFIG_RETENTION {raw_policy!r}: {exc}")
            policy = parse_policy(DEFAULT_RETENTION)
        raw_notify = environ.get("DRKIT_CONFIG_NOTIFY_ON", "").strip().lower()
        tokens = [t for t in raw_notify.replace(",", " ").split() if t] if raw_notify else list(DEFAULT_NOTIFY_ON)
        if tokens == ["none"]:
            tokens = []
        bad = [t for t in tokens if t not in NOTIFY_TOKENS]
        if bad:
            problems.append(f"DRKIT_CONFIG_NOTIFY_ON: {', '.join(bad)} unknown; use none or a list of "
                            f"{', '.join(NOTIFY_TOKENS)}")
        notifier = Notifier.collect(environ, problems)
        if problems or cfg is None:
            raise ConfigError(problems)
        return cls(cfg, tuple(sources), policy, frozenset(tokens), notifier, environ)


@dataclass(frozen=True)
class Unit:
    name: str  # directory in the archive, and the name in the manifest
    source: Source
    kind: str | None = None  # DigitalOcean resource kind


def units_of(sources: tuple[Source, ...]) -> list[Unit]:
    out = []
    for s in sources:
        if s.type == "digitalocean":
            out += [Unit(f"{s.name}/{k}", s, k) for k in (s.options.get("include") or DO_KINDS)]
        else:
            out.append(Unit(s.name, s))
    return out


class UnitSink:
    """What a collector sees: paths relative to its unit's directory."""

    def __init__(self, writer: ArchiveWriter, unit: str):
        self.writer = writer
        self.unit = unit

    def add_bytes(self, path: str, data: bytes) -> FileEntry:
        return self.writer.add_bytes(f"{self.unit}/{path}", data, self.unit)

    def add_stream(self, path: str, size: int, reader: Any, mode: int = 0o644) -> FileEntry:
        return self.writer.add_stream(f"{self.unit}/{path}", size, reader, self.unit, mode)

    def add_symlink(self, path: str, target: str) -> FileEntry:
        return self.writer.add_symlink(f"{self.unit}/{path}", target, self.unit)


class NothingCollected(DrkitError):
    def __init__(self, units: list[dict[str, Any]]):
        self.units = units
        super().__init__("every source failed; nothing was stored: " +
                         "; ".join(f"{u['name']}: {u.get('error')}" for u in units)[:1500])


def _collector(unit: Unit, spaces: SpacesConfig, settings: Settings, deadline: Deadline,
               apis: dict[str, DoApi], files_ctx: tuple[Store, list[Any], dt.date, dt.date] | None = None
               ) -> Callable[[UnitSink], dict[str, Any]]:
    source = unit.source
    if source.type == "storage":
        assert files_ctx is not None and settings.cfg.signing_key is not None
        store, recipients, today, oldest = files_ctx
        return files.make_collector(source, store, spaces, recipients, settings.cfg.signing_key, deadline, today, oldest)
    if source.type == "digitalocean":
        if source.name not in apis:
            apis[source.name] = DoApi.from_env(settings.environ, deadline, token=source.secrets["token_env"])
        api, kind = apis[source.name], str(unit.kind)
        return lambda sink: inventory.collect(api, kind, sink)
    if source.type == "github":
        return lambda sink: fetch.github(source, sink)
    if source.type == "s3":
        return lambda sink: fetch.s3(source, sink, spaces)
    if source.type == "grafana":
        return lambda sink: fetch.grafana(source, sink)
    return lambda sink: fetch.http_file(source, sink)


def _run_unit(unit: Unit, writer: ArchiveWriter, collect: Callable[[UnitSink], dict[str, Any]],
              deadline: Deadline) -> dict[str, Any]:
    t0 = time.monotonic()
    first = len(writer.files)
    out: dict[str, Any] = {"name": unit.name, "type": unit.source.type}
    if deadline.remaining() < MIN_UNIT_S:
        out |= {"status": "skipped", "error": f"not started: {deadline.remaining():.0f}s left before the deadline"}
        log.warning("config source skipped", unit=unit.name, reason=out["error"])
        return out
    log.bind(unit=unit.name)
    try:
        out["details"] = collect(UnitSink(writer, unit.name))
        out["status"] = "ok"
    except Exception as exc:  # noqa: BLE001 - one unit's failure must not stop the others
        if writer.broken is not None:
            raise writer.broken from None
        message = str(exc) if isinstance(exc, DrkitError) else f"internal error: {type(exc).__name__}: {exc}"
        out |= {"status": "failed", "error": log.redact(message)}
        log.error("config source failed", error=out["error"],
                  **({} if isinstance(exc, DrkitError) else {"traceback": traceback.format_exc()}))
    finally:
        log.unbind("unit")
    files = writer.files[first:]
    out["files"] = len(files)
    out["bytes"] = sum(f.size for f in files)
    if any(f.incomplete for f in files):
        out["incomplete_files"] = [f.path for f in files if f.incomplete]
    out["duration_s"] = round(time.monotonic() - t0, 3)
    return out


def backup(store: Store, settings: Settings, units: list[Unit], recipients: list[Any], deadline: Deadline,
           clock: Clock) -> dict[str, Any]:
    """Collect every unit into one archive; return the stored manifest. Raises if nothing was stored."""
    started_at = clock()
    t0 = time.monotonic()
    backup_id = layout.new_id(started_at)
    base = layout.config_base(backup_id)
    data_key = base + layout.CONFIG_DATA_SUFFIX
    cfg = settings.cfg
    log.info("config backup starting", backup_id=backup_id, units=len(units))
    apis: dict[str, DoApi] = {}
    results: list[dict[str, Any]] = []
    with open_upload(store, data_key, part_size=cfg.part_size_mb * 1024 * 1024, concurrency=cfg.upload_concurrency,
                           deadline=deadline) as upload:
        with ArchiveWriter(upload, recipients, zstd_level=ZSTD_LEVEL, deadline=deadline,
                           mtime=started_at.timestamp()) as writer:
            files_ctx = None
            if any(u.source.type == "storage" for u in units):
                existing = [e.time.date() for e in catalog.list_entries(store)]
                files_ctx = (store, recipients, started_at.date(), min([started_at.date(), *existing]))
            for unit in units:
                collect = _collector(unit, cfg.spaces, settings, deadline, apis, files_ctx)
                results.append(_run_unit(unit, writer, collect, deadline))
            if not any(r["status"] == "ok" for r in results):
                raise NothingCollected([{k: v for k, v in r.items() if k != "details"} for r in results])
            writer.finish()
        stored = upload.complete()
    finished_at = clock()
    status = "ok" if all(r["status"] == "ok" for r in results) else "partial"
    manifest: dict[str, Any] = {
        "format": "drkit.config-backup.manifest/1",
        "id": backup_id,
        "key": data_key,
        "status": status,
        "started_at": started_at.isoformat(),
        "finished_at": finished_at.isoformat(),
        "duration_s": round(time.monotonic() - t0, 3),
        "bytes_in": writer.bytes_in,
        "bytes_out": stored.size,
        "sha256": upload.sha256.hexdigest(),
        "compression": {"algorithm": "zstd", "level": ZSTD_LEVEL},
        "encryption": {"format": "age-encryption.org/v1", "recipients": list(cfg.recipients)},
        "sources": results,
        "files": [f.to_dict() for f in writer.files],
        "restore": {"pipeline": f"age -d -i key.txt < {backup_id}{layout.CONFIG_DATA_SUFFIX} | zstd -d | tar -x",
                    "cli": f"drkit config extract --backup {backup_id} --to DIR"},
        "drkit_version": __version__,
        "activation_id": os.environ.get("__OW_ACTIVATION_ID"),
    }
    manifest["drift"] = drift.compare(manifest, baselines(store, manifest))
    try:
        assert cfg.signing_key is not None  # Config.from_env requires it of writers
        signed.put_json(store, base + layout.MANIFEST_SUFFIX, manifest, cfg.signing_key.reveal())
    except StoreError:
        try:
            store.delete(data_key)  # without its manifest the archive is not a backup
        except StoreError as exc:
            log.error("could not delete archive without manifest; the next run removes it", error=str(exc))
        raise
    run_info = {"id": backup_id, "status": status, "at": finished_at.isoformat(), "bytes_out": stored.size,
                "failed_units": [r["name"] for r in results if r["status"] != "ok"],
                "drift_changes": sum(manifest["drift"]["counts"].values())}
    state.record_run(store, layout.CONFIG_STATE_KEY, "config", run_info, success=True)
    audit.record(store, FUNCTION, "config.backup.created", {
        "backup_id": backup_id, "key": data_key, "status": status, "files": len(writer.files),
        "bytes_out": stored.size, "sha256": manifest["sha256"], "drift": manifest["drift"]["summary"]})
    log.info("config backup stored", backup_id=backup_id, status=status, files=len(writer.files), bytes_out=stored.size)
    return manifest


def baselines(store: Store, manifest: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """unit -> the newest earlier manifest in which that unit succeeded (for units that succeeded now)."""
    wanted = {s["name"] for s in manifest["sources"] if s["status"] == "ok"}
    return _newest_ok(store, wanted, before=str(manifest["id"]))[1]


def _newest_ok(store: Store, units: set[str], before: str | None, known: Mapping[str, dict[str, Any]] | None = None
               ) -> tuple[dict[str, str], dict[str, dict[str, Any]]]:
    """Walk complete backups newest first until every unit has one where it succeeded.

    `known`: manifests already in hand by id (the run's own), not read back from the bucket.
    """
    found: dict[str, str] = {}
    manifests: dict[str, dict[str, Any]] = {}
    for entry in catalog.list_entries(store):
        if not units - set(found):
            break
        if not entry.complete or (before is not None and entry.id >= before):
            continue
        try:
            m = (known or {}).get(entry.id) or catalog.peek_manifest(store, entry)  # bookkeeping
        except DrkitError as exc:
            log.warning("config manifest unreadable; skipped", backup_id=entry.id, error=str(exc))
            continue
        for s in m.get("sources", []):
            if s.get("status") == "ok" and s.get("name") in units and s["name"] not in found:
                found[s["name"]] = entry.id
                manifests[s["name"]] = m
    return found, manifests


def prune(store: Store, settings: Settings, units: list[Unit], new_id: str | None, now: Any, *,
          dry_run: bool, known: Mapping[str, dict[str, Any]] | None = None) -> dict[str, Any]:
    entries = catalog.list_entries(store)
    if new_id is not None and not any(e.id == new_id and e.complete for e in entries):
        log.warning("new config backup not visible in listing yet; retention skipped", backup_id=new_id)
        return {"summary": "retention skipped (new backup not yet listed)", "deleted": []}
    last_ok, _ = _newest_ok(store, {u.name for u in units}, before=None, known=known)
    reasons: dict[str, list[str]] = {}
    for unit, backup_id in last_ok.items():
        reasons.setdefault(backup_id, []).append(unit)
    items = [e.item("the backup just taken" if e.id == new_id and e.id not in reasons else
                    f"newest archive where {', '.join(reasons[e.id][:3])}"
                    f"{' …' if len(reasons[e.id]) > 3 else ''} succeeded" if e.id in reasons else "")
             for e in entries]
    decisions = plan(items, settings.retention, now)
    by_id = {e.id: e for e in entries}
    doomed = sorted((d for d in decisions if d.deletes), key=lambda d: d.time)
    deleted: list[str] = []
    if not dry_run:
        for d in doomed:
            entry = by_id[d.id]
            store.delete(entry.manifest_key)  # manifest first: a listed backup always has its archive
            store.delete(entry.data_key)
            store.delete(entry.manifest_key + signed.SIG)
            deleted.append(d.id)
            audit.record(store, FUNCTION, "config.backup.deleted", {
                "backup_id": d.id, "policy": str(settings.retention), "reasons": list(d.reasons)})
        leftovers = [e.data_key for e in catalog.orphans(entries, now)]
        for key in leftovers:
            store.delete(key)
        for u in catalog.stale_uploads(store, now):
            store.abort_upload(u.key, u.upload_id)
            leftovers.append(f"upload:{u.key}")
        if leftovers:
            audit.record(store, FUNCTION, "garbage.removed", {"removed": leftovers})
    kept = [d for d in decisions if d.verdict in (Verdict.KEEP, Verdict.PROTECTED, Verdict.PINNED)]
    verb = "would delete" if dry_run else "deleted"
    return {"summary": f"retention ({settings.retention}): kept {len(kept)}, {verb} {len(doomed)}",
            "policy": str(settings.retention),
            "plan": [{"id": d.id, "time": d.time.isoformat(), "verdict": d.verdict.value, "reasons": list(d.reasons)}
                     for d in decisions],
            "deleted": deleted if not dry_run else [d.id for d in doomed], "kept": len(kept)}
