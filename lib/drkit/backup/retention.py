"""Retention applied to one database: only backups db-backup's signed catalog trusts count, the catalog first.

The plan is pure (policy/retention.py); here it is applied. A planted entry is never counted, never
displaces a genuine backup and is never deleted here (it is reported; `drkit backups untrusted --delete`
removes it). The catalog head is rewritten before any object is deleted, manifest first, then data;
leftovers of killed runs (data or a signature without a manifest, stale multipart uploads) go once
they are older than the grace period, except data the catalog still names (evidence, not garbage).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import replace
from typing import Any

from drkit.backup.pipeline import best_effort_delete
from drkit.core import log
from drkit.platform.databases import DatabaseConfig
from drkit.policy import layout
from drkit.policy.retention import Decision, Verdict, plan
from drkit.storage import audit, catalog, chain, markers, records, signed
from drkit.storage.store import Store

FUNCTION = "db-backup"


def prune(db: DatabaseConfig, store: Store, new_id: str | None, now: dt.datetime, *, dry_run: bool) -> dict[str, Any]:
    """Apply retention to one database. `new_id`: the backup just taken (must be listed).

    Only backups db-backup's signed catalog trusts count, and only believed markers protect: a planted
    entry is never counted, never displaces a genuine backup and is never deleted here (it is reported;
    `drkit backups untrusted --delete` removes it). The catalog head is rewritten before any object is
    deleted, so a listed backup the catalog still names was never meant to go."""
    entries = catalog.list_backups(store, db.name)
    v = chain.view(store, entries, layout.catalog_key(db.name), chain.DbHead, now)
    if new_id is not None and new_id not in v.trusted_ids():
        log.warning("new backup not visible in listing yet; retention skipped this run", backup_id=new_id)
        return {"summary": "retention skipped (new backup not yet listed)", "deleted": [], "kept": len(entries)}
    head = chain.reconciled(v.head, db.name, chain.DbHead, v)
    marks = markers.read_markers(store, v.trusted, now)
    untrusted = {e.id: why for e, why in v.untrusted}
    trusted = v.trusted_ids()
    items = []
    for e in entries:
        if e.id in untrusted:
            items.append(replace(e.item(trusted=False),
                                 ignore_reason="not signed by db-backup: never counted, never deleted by retention"))
        elif e.id in trusted:
            item = e.item(pinned=e.id in marks.pinned, verified=e.id in marks.verified)
            # the backup just taken is never deleted, even when another one shares its second (ids sort by second)
            items.append(replace(item, keep_reason="the backup just taken") if e.id == new_id else item)
        else:
            items.append(e.item(trusted=False))
    decisions = plan(items, db.retention, now)
    by_id = {e.id: e for e in entries}
    doomed = [d for d in decisions if d.deletes]
    deleted: list[str] = []
    if not dry_run and (doomed or v.deleting):
        if doomed:  # the catalog first: a crash after this leaves objects the next run finishes deleting
            records.write(store, layout.catalog_key(db.name),
                          head.remove([d.id for d in doomed], f"retention {db.retention}", now), now)
        for e in v.deleting:
            _delete_backup(store, e)
            deleted.append(e.id)
        for d in sorted(doomed, key=lambda d: d.time):  # oldest first
            _delete_backup(store, by_id[d.id])
            deleted.append(d.id)
            audit.record(store, FUNCTION, "backup.deleted", {
                "database": db.name, "backup_id": d.id, "policy": str(db.retention), "reasons": list(d.reasons)})
    junk = catalog.garbage(store, entries, db.name, now, keep=head.ids())
    cleaned = []
    if not dry_run:
        for e in junk.orphans:
            best_effort_delete(store, e.data_key)
            best_effort_delete(store, e.manifest_key + signed.SIG)
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
    if v.untrusted:
        summary += (f", {len(v.untrusted)} UNTRUSTED entries ignored (not signed by db-backup: "
                    f"{', '.join(e.id for e, _ in v.untrusted[:5])}; drkit backups untrusted --db {db.name})")
    if v.missing:
        summary += (f", {len(v.missing)} MISSING from the bucket though the catalog names them: "
                    f"{', '.join(x.id for x in v.missing[:5])}")
    if marks.problems:
        summary += f", {len(marks.problems)} marker(s) not believed"
    return {
        "summary": summary,
        "policy": str(db.retention),
        "plan": [_decision_dict(d) for d in decisions],
        "deleted": deleted if not dry_run else [d.id for d in doomed],
        "kept": len(kept),
        "leftovers": [e.data_key for e in junk.orphans] + [f"upload:{u.key}" for u in junk.stale_uploads],
        "broken": [e.id for e in junk.broken],
        "untrusted": [{"id": e.id, "reason": why} for e, why in v.untrusted],
        "missing": [x.id for x in v.missing],
        "marker_problems": marks.problems,
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
