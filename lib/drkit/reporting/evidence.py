"""Gathers the report's evidence from the bucket: backups, verifications, config backups, audit events, schedule.

Reads only, and believes only signed records from their rightful writer: backups from db-backup's
catalog and manifests, verifications from restore-verify, each audit event from the role that performs
that action (`EVIDENCE_WRITERS`: a `failover.drill` event counts only from dns-failover, health-probe or
an operator). Whatever is there but not believed is left out of every figure and listed in
`untrusted`, which the report shows as findings.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from drkit.configbackup import catalog as config_catalog
from drkit.core.errors import DrkitError
from drkit.health.memory import HealthState
from drkit.policy import layout
from drkit.storage import audit, catalog, jobs, markers, records, state
from drkit.storage.markers import VerifyReport
from drkit.storage.records import Record
from drkit.storage.store import Store

WINDOW = dt.timedelta(days=30)
TESTS_WINDOW = dt.timedelta(days=400)  # an annual drill, and a month of grace
READERS = 16  # manifests and events are small objects: read many at once
AUDIT_KEY_RE = re.compile(r"^(\d{8}T\d{6})(\d{3})Z-([a-z]+(?:-[a-z]+)*)-([a-z_.]+)-[0-9a-f]{6}\.json$")
# the events the report reads in full (the rest are counted from their keys)
READ_ACTIONS = ("backup.failed", "verify.failed", "verify.passed", "restore.completed", "restore.failed",
                "snapshot.created", "snapshot.started", "snapshot.deleted", "config.backup.failed", "failover.",
                "copy.")
# which role's event is evidence of each action (prefix -> writers)
EVIDENCE_WRITERS: dict[str, tuple[str, ...]] = {
    "backup.": ("db-backup",), "verify.": ("restore-verify",), "restore.": ("operator",),
    "snapshot.": ("snapshot-rotate",), "config.backup.": ("config-backup",),
    "failover.": ("dns-failover", "health-probe", "operator"),
    "copy.": ("backup-copy",),
}


def rightful(action: str) -> tuple[str, ...]:
    return next((w for prefix, w in EVIDENCE_WRITERS.items() if action.startswith(prefix)), ())


@dataclass(frozen=True)
class Limits:
    """A database's objectives, as health-probe judges them."""
    rpo_s: float
    verify_max_age_s: float
    rto_s: float
    copy_max_lag_s: float = 3 * 3600  # the off-site copy's lag (DRKIT_OFFSITE_MAX_LAG)


def _read_all(store: Store, items: Sequence[Any], reader: Any) -> list[Any]:
    with ThreadPoolExecutor(max_workers=READERS) as pool:
        return list(pool.map(reader, items))


def audit_events(store: Store, now: dt.datetime, untrusted: list[str], window: dt.timedelta = WINDOW,
                 only: tuple[str, ...] = ()) -> list[dict[str, Any]]:
    """The audit events of the window the report shows (listed a month at a time), each read and believed only
    from its rightful writer; `only`: keep just these action prefixes. What is not believed goes to `untrusted`."""
    found = []
    month = (now - window).date().replace(day=1)
    while month <= now.date():
        for obj in store.list_objects(f"audit/{month:%Y/%m}/"):
            m = AUDIT_KEY_RE.match(obj.key.rsplit("/", 1)[-1])
            if not m or not m.group(4).startswith(READ_ACTIONS) or (only and not m.group(4).startswith(only)):
                continue
            at = dt.datetime.strptime(m.group(1), "%Y%m%dT%H%M%S").replace(
                tzinfo=dt.UTC, microsecond=int(m.group(2)) * 1000)
            if now - window <= at <= now:
                found.append({"at": at.isoformat(), "function": m.group(3), "action": m.group(4), "key": obj.key})
        month = (month + dt.timedelta(days=32)).replace(day=1)

    def read(event: dict[str, Any]) -> tuple[dict[str, Any] | None, str | None]:
        try:
            got = audit.read(store, event["key"], now)
        except DrkitError as exc:
            return None, f"audit event {event['key']}: {exc}"
        if got is None:
            return None, None
        if got.value.action != event["action"]:
            return None, f"audit event {event['key']}: says {got.value.action!r}, its name {event['action']!r}"
        if got.writer not in rightful(event["action"]):
            return None, (f"audit event {event['key']}: {event['action']} written by {got.writer}; only "
                          f"{', '.join(rightful(event['action']))} perform it")
        return event | {"writer": got.writer, "details": dict(got.value.details)}, None

    out = []
    for event, problem in _read_all(store, found, read):
        if problem:
            untrusted.append(problem)
        if event is not None:
            out.append(event)
    return sorted(out, key=lambda e: e["at"])


def _record(store: Store, key: str, cls: type[Record], now: dt.datetime, untrusted: list[str]) -> Any:
    """A signed record's value (None when missing); one not believed is listed in `untrusted`."""
    try:
        got = records.read(store, key, cls, now)
    except DrkitError as exc:
        untrusted.append(str(exc))
        return None
    return got.value if got else None


def _backup(store: Store, entry: catalog.Entry, trusted: bool, marks: markers.Markers, now: dt.datetime,
            untrusted: list[str]) -> dict[str, Any]:
    row: dict[str, Any] = {"id": entry.id, "time": entry.time.isoformat(), "complete": entry.complete and trusted,
                           "stored_bytes": entry.size, "pinned": entry.id in marks.pinned,
                           "verified": entry.id in marks.verified}
    if not entry.complete:
        return row
    if not trusted:
        return row | {"signature": "not trusted: not in db-backup's catalog and not signed by db-backup"}
    try:
        manifest = catalog.read_manifest(store, entry)
        row.update(signature="trusted", dump_bytes=manifest.get("bytes_in"), duration_s=manifest.get("duration_s"),
                   finished_at=manifest.get("finished_at"))
    except DrkitError as exc:
        row.update(signature=f"not trusted: {exc}"[:200])
    if layout.REPORT_SUFFIX in entry.objects:
        report = _record(store, layout.marker_key(entry.database, entry.id, layout.REPORT_SUFFIX), VerifyReport, now,
                         untrusted)
        if report is not None:
            restore = report.restore or {}
            row["verification"] = {"status": report.status, "finished_at": report.finished_at.isoformat(),
                                   "restore_s": restore.get("duration_s"), "error": report.error}
    return row


def database(store: Store, name: str, limits: Limits, now: dt.datetime, untrusted: list[str],
             window: dt.timedelta = WINDOW) -> dict[str, Any]:
    v = catalog.trusted_view(store, name, now)
    entries = catalog.list_backups(store, name)
    trusted = v.trusted_ids()
    untrusted += [f"{name} {e.id}: {why}" for e, why in v.untrusted]
    untrusted += [f"{name} {x.id} (seq {x.seq}): in db-backup's catalog, missing from the bucket" for x in v.missing]
    if v.head_error:
        untrusted.append(f"{name}: catalog head: {v.head_error}")
    marks = markers.read_markers(store, v.trusted, now)
    untrusted += [f"{name} {p}" for p in marks.problems]
    recent = [e for e in entries if e.time >= now - window]
    before = next((e for e in entries if e.time < now - window and e.id in trusted), None)  # the age at the window start
    rows = _read_all(store, recent + ([before] if before else []),
                     lambda e: _backup(store, e, e.id in trusted, marks, now, untrusted))
    verify_state = _record(store, layout.verify_state_key(name), state.VerifyState, now, untrusted)
    copy_verify = _record(store, layout.verify_state_key(name, "copy"), state.VerifyState, now, untrusted)
    backup_state = _record(store, layout.state_key(name), state.BackupState, now, untrusted)
    return {"name": name, "rpo_s": limits.rpo_s, "rto_s": limits.rto_s, "verify_max_age_s": limits.verify_max_age_s,
            "copy_max_lag_s": limits.copy_max_lag_s, "backups": rows, "count_all": len(trusted),
            "state": backup_state.to_json() if backup_state else {},
            "verify_state": verify_state.to_json() if verify_state else {},
            "copy_verify_state": copy_verify.to_json() if copy_verify else {}}


def config_backups(store: Store, now: dt.datetime, untrusted: list[str],
                   window: dt.timedelta = WINDOW) -> dict[str, Any]:
    v = config_catalog.trusted_view(store, now)
    untrusted += [f"config {e.id}: {why}" for e, why in v.untrusted]
    untrusted += [f"config {x.id} (seq {x.seq}): in config-backup's catalog, missing from the bucket" for x in v.missing]
    entries = [e for e in v.trusted if e.time >= now - window]

    def read(entry: config_catalog.ConfigEntry) -> dict[str, Any]:
        row: dict[str, Any] = {"id": entry.id, "time": entry.time.isoformat(), "stored_bytes": entry.size}
        try:
            m = config_catalog.read_manifest(store, entry)
        except DrkitError as exc:
            return row | {"signature": f"not trusted: {exc}"[:200]}
        sources = m.get("sources") or []
        drift = m.get("drift") or {}
        return row | {"signature": "trusted", "status": m.get("status"),
                      "ok": len([s for s in sources if s.get("status") == "ok"]),
                      "failed": [s.get("name") for s in sources if s.get("status") != "ok"],
                      "drift": drift.get("summary"), "drift_changes": sum((drift.get("counts") or {}).values()),
                      # Supabase's own backups (supabase sources) and the Storage reconciliation (storage sources)
                      "provider": [{"source": s.get("name"), **{k: (s.get("details") or {}).get(k)
                                                                for k in ("project", "region", "plan")},
                                    **((s.get("details") or {}).get("provider_backups") or {})}
                                   for s in sources if s.get("type") == "supabase" and s.get("status") == "ok"],
                      "reconcile": [{"source": s.get("name"), **(s.get("details") or {})["reconcile"]}
                                    for s in sources if s.get("type") == "storage" and s.get("status") == "ok"
                                    and (s.get("details") or {}).get("reconcile")]}

    config_state = _record(store, layout.CONFIG_STATE_KEY, state.ConfigState, now, untrusted)
    return {"backups": _read_all(store, entries, read), "state": config_state.to_json() if config_state else {}}


def gather(store: Store, limits: dict[str, Limits], now: dt.datetime, window: dt.timedelta = WINDOW) -> dict[str, Any]:
    """Everything the report shows, as plain JSON (kept beside each report as its evidence)."""
    names = sorted(set(limits) | set(catalog.list_databases(store)))
    default = Limits(75 * 60, 8 * 86400, 4 * 3600)
    untrusted: list[str] = []
    schedule = _record(store, jobs.KEY, jobs.ScheduleStatus, now, untrusted)
    health = _record(store, layout.HEALTH_STATE_KEY, HealthState, now, untrusted)
    out = {"format": "drkit.dr-evidence/2", "generated_at": now.isoformat(), "window_days": window.days,
           "trusted_keys": len(store.identity.trust.keys()),
           "databases": [database(store, n, limits.get(n, default), now, untrusted, window) for n in names],
           "config": config_backups(store, now, untrusted, window),
           "events": audit_events(store, now, untrusted, window),
           # the DR testing schedule looks further back: quarterly and annual tests
           "test_events": audit_events(store, now, untrusted, TESTS_WINDOW, only=("failover.", "restore.", "verify.passed")),
           "schedule": {k: v for k, v in schedule.to_json().items() if k != "cache"} if schedule else {},
           "health": health.to_json() if health else {},
           "copy": _copy(store, now, untrusted)}
    out["untrusted"] = sorted(set(untrusted))
    return out


def _copy(store: Store, now: dt.datetime, untrusted: list[str]) -> dict[str, Any]:
    """The off-site copy as backup-copy reported it (its signed status), and where the primary is."""
    from urllib.parse import urlsplit

    from drkit.storage.copies import CopyStatus

    status = _record(store, layout.COPY_STATUS_KEY, CopyStatus, now, untrusted)
    primary = f"{urlsplit(store.spaces.endpoint_url).netloc}/{store.bucket}"
    return {"primary": primary, "status": status.to_json() if status else None}


def of(events: Iterable[dict[str, Any]], *prefixes: str) -> list[dict[str, Any]]:
    return [e for e in events if e["action"].startswith(prefixes)]
