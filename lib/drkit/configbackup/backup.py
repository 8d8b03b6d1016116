"""One config backup: collect every unit into one archive, write the signed manifest last, prune by policy."""

from __future__ import annotations

import datetime as dt
import os
import time
import traceback
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from typing import Any

from drkit import __version__
from drkit.configbackup import catalog, fetch, files, inventory, supabase_source
from drkit.configbackup.archive import ArchiveWriter, FileEntry
from drkit.configbackup.sources import DO_KINDS, Source, parse_sources
from drkit.core import log
from drkit.core.deadline import Clock, Deadline
from drkit.core.errors import ConfigError, DrkitError
from drkit.crypto.trust import Identity
from drkit.digitalocean.api import DoApi
from drkit.platform import identity
from drkit.platform.config import Config, SpacesConfig
from drkit.platform.notify import Notifier
from drkit.policy import drift, layout
from drkit.policy.retention import Policy, Verdict, parse_policy, plan
from drkit.storage import audit, chain, markers, records, signed, state
from drkit.storage.state import ConfigState, RunInfo
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
    identity: Identity = Identity()

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
        me = identity.collect(environ, FUNCTION, problems)
        if problems or cfg is None:
            raise ConfigError(problems)
        return cls(cfg, tuple(sources), policy, frozenset(tokens), notifier, environ, me)


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
        assert files_ctx is not None
        store, recipients, today, oldest = files_ctx
        return files.make_collector(source, store, spaces, recipients, deadline, today, oldest)
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
    if source.type == "supabase":
        return lambda sink: supabase_source.collect(source, sink, deadline)
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
           clock: Clock) -> tuple[dict[str, Any], list[str]]:
    """Collect every unit into one archive; return the stored manifest and what of its bookkeeping (catalog,
    state) failed. Raises if nothing was stored."""
    started_at = clock()
    v = catalog.trusted_view(store, started_at)
    if v.head_error:
        log.error("config catalog head not believed; rebuilt from the signed manifests", error=v.head_error)
    head = chain.reconciled(v.head, "config", chain.ConfigHead, v)
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
                existing = [e.time.date() for e in v.trusted]
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
        "chain": chain.chain_fields(head),
        "drkit_version": __version__,
        "activation_id": os.environ.get("__OW_ACTIVATION_ID"),
    }
    manifest["drift"] = drift.compare(manifest, baselines(store, manifest, v.trusted))
    manifest_key = base + layout.MANIFEST_SUFFIX
    try:
        manifest_bytes = signed.put_json(store, manifest_key, manifest)
    except DrkitError:
        for key in (manifest_key + signed.SIG, data_key):  # without its manifest the archive is not a backup
            try:
                store.delete(key)
            except DrkitError as exc:
                log.error("could not delete a leftover of an unfinished backup; the next run removes it", key=key,
                          error=str(exc))
        raise
    problems = []
    seq = manifest["chain"]["seq"]
    try:
        records.write(store, layout.CONFIG_CATALOG_KEY, head.add(chain.link_of(backup_id, manifest_bytes, seq)),
                      finished_at)
    except DrkitError as exc:
        problems.append(f"catalog head not written: {exc}")
    run_info = RunInfo(status, finished_at, id=backup_id, bytes_out=stored.size, seq=seq,
                       failed_units=tuple(r["name"] for r in results if r["status"] != "ok"),
                       drift_changes=sum(manifest["drift"]["counts"].values()))
    try:
        state.record_run(store, layout.CONFIG_STATE_KEY, ConfigState, "config", run_info, success=True, now=finished_at)
    except DrkitError as exc:
        problems.append(f"state not written: {exc}")
    audit.record(store, FUNCTION, "config.backup.created", {
        "backup_id": backup_id, "key": data_key, "status": status, "files": len(writer.files),
        "bytes_out": stored.size, "sha256": manifest["sha256"], "drift": manifest["drift"]["summary"]})
    log.info("config backup stored", backup_id=backup_id, status=status, files=len(writer.files), bytes_out=stored.size)
    return manifest, problems


def baselines(store: Store, manifest: Mapping[str, Any], trusted: list[catalog.ConfigEntry]
              ) -> dict[str, dict[str, Any]]:
    """unit -> the newest earlier manifest in which that unit succeeded (for units that succeeded now): only
    manifests config-backup signed, so a planted one can never be the baseline that hides a change."""
    wanted = {s["name"] for s in manifest["sources"] if s["status"] == "ok"}
    return _newest_ok(store, trusted, wanted, before=str(manifest["id"]))[1]


def _newest_ok(store: Store, trusted: list[catalog.ConfigEntry], units: set[str], before: str | None,
               known: Mapping[str, dict[str, Any]] | None = None) -> tuple[dict[str, str], dict[str, dict[str, Any]]]:
    """Walk the trusted backups newest first until every unit has one where it succeeded.

    `known`: manifests already in hand by id (the run's own), not read back from the bucket.
    """
    found: dict[str, str] = {}
    manifests: dict[str, dict[str, Any]] = {}
    for entry in trusted:
        if not units - set(found):
            break
        if before is not None and entry.id >= before:
            continue
        try:
            m = (known or {}).get(entry.id) or catalog.read_manifest(store, entry)
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
    """Retention on the archives config-backup's signed catalog trusts (planted entries are reported, never
    counted or deleted); the catalog head is rewritten before any archive is deleted."""
    entries = catalog.list_entries(store)
    v = chain.view(store, entries, layout.CONFIG_CATALOG_KEY, chain.ConfigHead, now)
    if new_id is not None and new_id not in v.trusted_ids():
        log.warning("new config backup not visible in listing yet; retention skipped", backup_id=new_id)
        return {"summary": "retention skipped (new backup not yet listed)", "deleted": []}
    head = chain.reconciled(v.head, "config", chain.ConfigHead, v)
    marks = markers.read_markers(store, v.trusted, now)
    last_ok, _ = _newest_ok(store, v.trusted, {u.name for u in units}, before=None, known=known)
    reasons: dict[str, list[str]] = {}
    for unit, backup_id in last_ok.items():
        reasons.setdefault(backup_id, []).append(unit)
    trusted = v.trusted_ids()
    untrusted = {e.id for e, _ in v.untrusted}
    items = []
    for e in entries:
        if e.id not in trusted:
            item = e.item(trusted=False)
            items.append(replace(item, ignore_reason="not signed by config-backup: never counted, never deleted by "
                                                     "retention") if e.id in untrusted else item)
            continue
        keep = ("the backup just taken" if e.id == new_id and e.id not in reasons else
                f"newest archive where {', '.join(reasons[e.id][:3])}"
                f"{' …' if len(reasons[e.id]) > 3 else ''} succeeded" if e.id in reasons else "")
        items.append(e.item(keep, pinned=e.id in marks.pinned))
    decisions = plan(items, settings.retention, now)
    by_id = {e.id: e for e in entries}
    doomed = sorted((d for d in decisions if d.deletes), key=lambda d: d.time)
    deleted: list[str] = []
    if not dry_run:
        if doomed:  # the catalog first: a crash after this leaves archives the next run finishes deleting
            records.write(store, layout.CONFIG_CATALOG_KEY,
                          head.remove([d.id for d in doomed], f"retention {settings.retention}", now), now)
        for entry in [*v.deleting, *(by_id[d.id] for d in doomed)]:
            store.delete(entry.manifest_key)  # manifest first: a listed backup always has its archive
            store.delete(entry.data_key)
            store.delete(entry.manifest_key + signed.SIG)
            if entry.pinned:
                store.delete(layout.config_base(entry.id) + layout.PINNED_SUFFIX)
            deleted.append(entry.id)
        for d in doomed:
            audit.record(store, FUNCTION, "config.backup.deleted", {
                "backup_id": d.id, "policy": str(settings.retention), "reasons": list(d.reasons)})
        leftovers = [e.data_key for e in catalog.orphans(entries, now, keep=head.ids())]
        for key in leftovers:
            store.delete(key)
            store.delete(key.removesuffix(layout.CONFIG_DATA_SUFFIX) + layout.SIGNATURE_SUFFIX)
        for u in catalog.stale_uploads(store, now):
            store.abort_upload(u.key, u.upload_id)
            leftovers.append(f"upload:{u.key}")
        if leftovers:
            audit.record(store, FUNCTION, "garbage.removed", {"removed": leftovers})
    kept = [d for d in decisions if d.verdict in (Verdict.KEEP, Verdict.PROTECTED, Verdict.PINNED)]
    verb = "would delete" if dry_run else "deleted"
    summary = f"retention ({settings.retention}): kept {len(kept)}, {verb} {len(doomed)}"
    if v.untrusted:
        summary += (f", {len(v.untrusted)} UNTRUSTED entries ignored (not signed by config-backup: "
                    f"{', '.join(e.id for e, _ in v.untrusted[:5])})")
    if v.missing:
        summary += f", {len(v.missing)} MISSING from the bucket though the catalog names them: " \
                   f"{', '.join(x.id for x in v.missing[:5])}"
    return {"summary": summary,
            "policy": str(settings.retention),
            "plan": [{"id": d.id, "time": d.time.isoformat(), "verdict": d.verdict.value, "reasons": list(d.reasons)}
                     for d in decisions],
            "deleted": deleted if not dry_run else [d.id for d in doomed], "kept": len(kept),
            "untrusted": [{"id": e.id, "reason": why} for e, why in v.untrusted], "missing": [x.id for x in v.missing]}
