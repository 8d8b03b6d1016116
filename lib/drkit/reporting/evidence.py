"""Gathers the report's evidence from the bucket: backups, verifications, config backups, audit events, schedule.

Reads only. Backup manifests are believed only when signed by a trusted key (a manifest that
is not shows as such in the report); verification reports, state and audit events are the
functions' own unsigned records and are shown as records, not as proof of data.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from drkit.configbackup import catalog as config_catalog
from drkit.core.errors import DrkitError, StoreError
from drkit.policy import layout
from drkit.storage import catalog
from drkit.storage.store import Store

WINDOW = dt.timedelta(days=30)
TESTS_WINDOW = dt.timedelta(days=400)  # an annual drill, and a month of grace
READERS = 16  # manifests and events are small objects: read many at once
_AUDIT_RE = re.compile(r"^(\d{8}T\d{6})(\d{3})Z-([a-z]+(?:-[a-z]+)*)-([a-z_.]+)-[0-9a-f]{6}\.json$")
# the events the report reads in full (the rest are counted from their keys)
READ_ACTIONS = ("backup.failed", "verify.failed", "verify.passed", "restore.completed", "restore.failed",
                "snapshot.created", "snapshot.started", "snapshot.deleted", "config.backup.failed", "failover.")
SCHEDULE_STATUS_KEY = "status/schedule.json"


@dataclass(frozen=True)
class Limits:
    """A database's objectives, as health-probe judges them."""
    rpo_s: float
    verify_max_age_s: float
    rto_s: float


def _read_all(store: Store, items: Sequence[Any], reader: Any) -> list[Any]:
    with ThreadPoolExecutor(max_workers=READERS) as pool:
        return list(pool.map(reader, items))


def audit_events(store: Store, now: dt.datetime, window: dt.timedelta = WINDOW,
                 only: tuple[str, ...] = ()) -> list[dict[str, Any]]:
    """Audit events of the window (listed a month at a time): time, function and action from the key,
    details read for the actions the report shows. `only`: keep just these action prefixes."""
    found = []
    month = (now - window).date().replace(day=1)
    while month <= now.date():
        for obj in store.list_objects(f"audit/{month:%Y/%m}/"):
            m = _AUDIT_RE.match(obj.key.rsplit("/", 1)[-1])
            if not m or (only and not m.group(4).startswith(only)):
                continue
            at = dt.datetime.strptime(m.group(1), "%Y%m%dT%H%M%S").replace(
                tzinfo=dt.UTC, microsecond=int(m.group(2)) * 1000)
            if now - window <= at <= now:
                found.append({"at": at.isoformat(), "function": m.group(3), "action": m.group(4), "key": obj.key})
        month = (month + dt.timedelta(days=32)).replace(day=1)
    wanted = [e for e in found if e["action"].startswith(READ_ACTIONS)]

    def read(event: dict[str, Any]) -> dict[str, Any]:
        try:
            body = store.get_json_or_none(event["key"]) or {}
        except DrkitError:
            body = {}
        return dict(body.get("details") or {}) if isinstance(body, dict) else {}

    for event, details in zip(wanted, _read_all(store, wanted, read), strict=True):
        event["details"] = details
    return sorted(found, key=lambda e: e["at"])


def _backup(store: Store, entry: catalog.Entry, trusted: Sequence[Any]) -> dict[str, Any]:
    row: dict[str, Any] = {"id": entry.id, "time": entry.time.isoformat(), "complete": entry.complete,
                           "stored_bytes": entry.size, "pinned": entry.pinned, "verified": entry.verified}
    if not entry.complete:
        return row
    try:
        manifest = catalog.read_manifest(store, entry, trusted)
        row.update(signature="trusted", dump_bytes=manifest.get("bytes_in"), duration_s=manifest.get("duration_s"),
                   finished_at=manifest.get("finished_at"))
    except DrkitError as exc:
        row.update(signature=f"not trusted: {exc}"[:200])
    if layout.REPORT_SUFFIX in entry.objects:
        try:
            report = store.get_json_or_none(layout.marker_key(entry.database, entry.id, layout.REPORT_SUFFIX)) or {}
        except DrkitError:
            report = {}
        restore = report.get("restore") or {}
        row["verification"] = {"status": report.get("status"), "finished_at": report.get("finished_at"),
                               "restore_s": restore.get("duration_s"), "error": report.get("error")}
    return row


def database(store: Store, name: str, limits: Limits, trusted: Sequence[Any], now: dt.datetime,
             window: dt.timedelta = WINDOW) -> dict[str, Any]:
    entries = catalog.list_backups(store, name)
    recent = [e for e in entries if e.time >= now - window]
    before = next((e for e in entries if e.time < now - window and e.complete), None)  # the age at the window start
    rows = _read_all(store, recent + ([before] if before else []), lambda e: _backup(store, e, trusted))
    try:
        verify_state = store.get_json_or_none(layout.verify_state_key(name)) or {}
        backup_state = store.get_json_or_none(layout.state_key(name)) or {}
    except StoreError:
        verify_state, backup_state = {}, {}
    return {"name": name, "rpo_s": limits.rpo_s, "rto_s": limits.rto_s, "verify_max_age_s": limits.verify_max_age_s,
            "backups": rows, "count_all": len(entries), "state": backup_state, "verify_state": verify_state}


def config_backups(store: Store, trusted: Sequence[Any], now: dt.datetime,
                   window: dt.timedelta = WINDOW) -> dict[str, Any]:
    entries = [e for e in config_catalog.list_entries(store) if e.time >= now - window and e.complete]

    def read(entry: config_catalog.ConfigEntry) -> dict[str, Any]:
        row: dict[str, Any] = {"id": entry.id, "time": entry.time.isoformat(), "stored_bytes": entry.size}
        try:
            m = config_catalog.read_manifest(store, entry, trusted)
        except DrkitError as exc:
            return row | {"signature": f"not trusted: {exc}"[:200]}
        sources = m.get("sources") or []
        drift = m.get("drift") or {}
        return row | {"signature": "trusted", "status": m.get("status"),
                      "ok": len([s for s in sources if s.get("status") == "ok"]),
                      "failed": [s.get("name") for s in sources if s.get("status") != "ok"],
                      "drift": drift.get("summary"), "drift_changes": sum((drift.get("counts") or {}).values())}

    try:
        state = store.get_json_or_none(layout.CONFIG_STATE_KEY) or {}
    except StoreError:
        state = {}
    return {"backups": _read_all(store, entries, read), "state": state}


def gather(store: Store, limits: dict[str, Limits], trusted: Sequence[Any], now: dt.datetime,
           window: dt.timedelta = WINDOW) -> dict[str, Any]:
    """Everything the report shows, as plain JSON (kept beside each report as its evidence)."""
    names = sorted(set(limits) | set(catalog.list_databases(store)))
    default = Limits(75 * 60, 8 * 86400, 4 * 3600)
    try:
        schedule = store.get_json_or_none(SCHEDULE_STATUS_KEY) or {}
        health = store.get_json_or_none(layout.HEALTH_STATE_KEY) or {}
    except StoreError:
        schedule, health = {}, {}
    return {"format": "drkit.dr-evidence/1", "generated_at": now.isoformat(), "window_days": window.days,
            "trusted_keys": len(trusted),
            "databases": [database(store, n, limits.get(n, default), trusted, now, window) for n in names],
            "config": config_backups(store, trusted, now, window),
            "events": audit_events(store, now, window),
            # the DR testing schedule looks further back: quarterly and annual tests
            "test_events": audit_events(store, now, TESTS_WINDOW, only=("failover.", "restore.", "verify.passed")),
            "schedule": schedule if isinstance(schedule, dict) else {},
            "health": health if isinstance(health, dict) else {}}


def of(events: Iterable[dict[str, Any]], *prefixes: str) -> list[dict[str, Any]]:
    return [e for e in events if e["action"].startswith(prefixes)]
