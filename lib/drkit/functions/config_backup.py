"""config-backup: the infrastructure you would need to rebuild, exported, encrypted, diffed.

Per run:

1. every unit (a configured source; a DigitalOcean source is one unit per
   resource kind) writes its files into ONE tar stream -> zstd -> age ->
   multipart upload (archive.ArchiveWriter). A failing unit is recorded and
   the others still run; a unit is not started with less than MIN_UNIT_S left;
2. if no unit succeeded, or the archive itself failed, the upload is aborted:
   nothing is stored, the failure is recorded (state, audit, notification);
3. otherwise the upload completes, then the manifest is written last (every
   file with size and SHA-256, each unit's status and details, the drift
   report against the newest earlier manifest in which each unit succeeded),
   then state and audit;
4. retention (default keep_within=90d) on complete backups, with the shared
   safety rules plus one of its own: the newest archive in which each unit
   succeeded is kept, so a source that fails for months never loses its last
   good copy; then leftovers of killed runs are removed;
5. a notification when the run failed or partly failed, or when the drift
   touches what DRKIT_CONFIG_NOTIFY_ON names (default: DNS and firewalls).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from drkit.configbackup.backup import FUNCTION, NothingCollected, Settings, backup, prune, units_of
from drkit.core import log
from drkit.core.deadline import Clock, Deadline, utcnow
from drkit.core.errors import ConfigError, DrkitError
from drkit.platform.runtime import Params
from drkit.policy import layout
from drkit.storage import audit, state
from drkit.storage.state import ConfigState, RunInfo
from drkit.storage.store import Store


@dataclass(frozen=True)
class Request:
    sources: tuple[str, ...] | None
    dry_run: bool = False
    prune: bool = True

    @classmethod
    def from_params(cls, params: Mapping[str, Any]) -> Request:
        p = Params(params, known=("source", "dry_run", "prune"))
        raw = p.string("source", "all")
        names = None if raw in ("all", "*", "") else tuple(n.strip() for n in raw.split(",") if n.strip())
        request = cls(names, p.boolean("dry_run", False), p.boolean("prune", True))
        p.finish()
        return request


def check(environ: Mapping[str, str]) -> str:
    """The configuration run() needs, validated as it validates it (drkit config check); every problem at once."""
    settings = Settings.from_env(environ)
    return f"{len(settings.sources)} source(s): {', '.join(s.name for s in settings.sources)}"


def run(params: Mapping[str, Any], environ: Mapping[str, str], deadline: Deadline, *,
        store: Store | None = None, clock: Clock = utcnow) -> dict[str, Any]:
    request = Request.from_params(params)
    settings = Settings.from_env(environ)
    log.configure(settings.cfg.log_level)
    units = units_of(settings.sources)
    if request.sources is not None:
        known = {s.name for s in settings.sources}
        unknown = [n for n in request.sources if n not in known]
        if unknown:
            raise ConfigError(f"unknown source {', '.join(map(repr, unknown))}; configured: {', '.join(sorted(known))}")
        units = [u for u in units if u.source.name in request.sources]
    store = (store or Store(settings.cfg.spaces)).with_identity(settings.identity)
    store.check_access()
    from drkit.crypto.encryption import parse_recipients

    recipients = parse_recipients(settings.cfg.recipients)
    if request.dry_run:
        pruning = prune(store, settings, units_of(settings.sources), None, clock(), dry_run=True)
        return {"ok": True, "status": "dry_run", "units": [u.name for u in units], "retention": pruning,
                "decision": f"dry run: would collect {len(units)} unit(s) "
                            f"({', '.join(u.name for u in units)}); {pruning['summary']}"}
    try:
        manifest, problems = backup(store, settings, units, recipients, deadline, clock)
    except NothingCollected as exc:
        _record_failure(store, settings, str(exc), clock)
        result: dict[str, Any] = {"ok": False, "status": "failed", "error": str(exc), "sources": exc.units,
                                  "decision": f"config backup failed: {exc}; nothing pruned"}
        result["notifications"] = _notify(settings, result, None, failed=True)
        return result
    except DrkitError as exc:  # the archive itself failed (Spaces, encryption, deadline): nothing was stored
        _record_failure(store, settings, str(exc), clock)
        failed = {"status": exc.status, "decision": f"config backup failed, nothing stored: {exc}",
                  "sources": [{"name": "archive", "status": "failed", "error": str(exc)}]}
        _notify(settings, failed, None, failed=True)
        raise
    result = _result(manifest)
    catalog_ok = not any(p.startswith("catalog head not written") for p in problems)
    if request.prune and catalog_ok:
        try:
            pruning = prune(store, settings, units_of(settings.sources), manifest["id"], clock(), dry_run=False,
                            known={manifest["id"]: manifest})
            result["retention"] = {k: v for k, v in pruning.items() if k != "plan"}
            result["decision"] = f"{result['decision']}; {pruning['summary']}"
        except DrkitError as exc:
            problems.append(f"retention: {exc}")
    elif request.prune:
        result["decision"] = f"{result['decision']}; retention skipped (the catalog was not updated)"
    else:
        result["decision"] = f"{result['decision']}; retention skipped (prune=false)"
    if problems:  # the archive is stored and listed: this is bookkeeping, which the next run repairs
        result["bookkeeping_error"] = "; ".join(problems)
        result["decision"] += f"; bookkeeping failed (the backup is good; the next run repairs it): " \
                              f"{result['bookkeeping_error']}"
    result["notifications"] = _notify(settings, result, manifest["drift"], failed=manifest["status"] != "ok")
    return result


def _result(manifest: dict[str, Any]) -> dict[str, Any]:
    """The run's result: verdict, sources, drift in brief (the manifest has it all)."""
    units = [{k: ({d: x for d, x in v.items() if d not in ("dns", "firewall_rules")} if k == "details" else v)
              for k, v in u.items()} for u in manifest["sources"]]
    failed = [u for u in units if u["status"] != "ok"]
    d = manifest["drift"]
    failures = "; ".join(f"{u['name']} {u['status']}: {u.get('error')}" for u in failed)[:600]
    decision = (f"config backup {manifest['id']}: {len(units) - len(failed)} of {len(units)} sources ok"
                + (f" ({failures})" if failed else "")
                + f"; {len(manifest['files'])} files, {manifest['bytes_in'] / 1e6:.1f} MB -> "
                  f"{manifest['bytes_out'] / 1e6:.1f} MB stored; {d['summary']}")
    return {"ok": not failed, "status": manifest["status"], "backup_id": manifest["id"], "key": manifest["key"],
            "files": len(manifest["files"]), "bytes_in": manifest["bytes_in"], "bytes_out": manifest["bytes_out"],
            "duration_s": manifest["duration_s"], "sources": units,
            "drift": {"summary": d["summary"], "counts": d["counts"], "dns": [c["text"] for c in d["dns"]],
                      "firewalls": [c["text"] for c in d["firewalls"]],
                      "files": {u: {k: v[:20] for k, v in lists.items()} for u, lists in d["files"].items()},
                      "not_compared": d["not_compared"], "new_units": d["new_units"]},
            "decision": decision}


def _notify(settings: Settings, result: dict[str, Any], report: dict[str, Any] | None, *,
            failed: bool) -> list[dict[str, Any]]:
    if not settings.notifier.configured:
        return []
    lines: list[str] = []
    if failed and "failures" in settings.notify_on:
        lines += [f"{u['name']} {u['status']}: {u.get('error')}" for u in result.get("sources", []) if u["status"] != "ok"]
    if report is not None:
        if "dns" in settings.notify_on:
            lines += [c["text"] for c in report["dns"]]
        if "firewalls" in settings.notify_on:
            lines += [c["text"] for c in report["firewalls"]]
        if "files" in settings.notify_on:
            lines += [f"{unit}: {len(v['changed'])} changed, {len(v['added'])} added, {len(v['removed'])} removed"
                      for unit, v in report["files"].items()]
    if not lines:
        return []
    return settings.notifier.send({"event": f"config-backup.{result['status']}" if failed else "config-backup.drift",
                                   "function": FUNCTION, "status": result["status"], "decision": result["decision"],
                                   "failed_checks": lines[:30]})


def _record_failure(store: Store, settings: Settings, error: str, clock: Clock) -> None:
    now = clock()
    try:
        state.record_run(store, layout.CONFIG_STATE_KEY, ConfigState, "config",
                         RunInfo("failed", now, error=error[:3000]), success=False, now=now)
    except DrkitError as exc:
        log.error("could not record failure state", error=str(exc))
    audit.record(store, FUNCTION, "config.backup.failed", {"error": error})
