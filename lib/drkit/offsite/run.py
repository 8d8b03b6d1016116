"""One backup-copy run: copy what the primary's signed records name and the copy lacks, and record it.

Each object is verified and locked; the copy's own retention is applied; the ledger is kept in the copy,
the status in both buckets.

Only what a trusted writer signed is copied: each database's backups as db-backup's catalog names them
(or their manifests verify), the config archives as config-backup's catalog names them, the files blobs
config-backup's signed files catalog names, and the catalog heads themselves. A planted entry in the
primary is never copied. The order in the copy is the order of a backup: data, signature, manifest
(the commit marker), and each catalog head last, so the copy never names what it does not hold.

A run that runs out of time, or meets a fault, records what it did; the next run (after the next backup, or
the 6-hourly catch-up) carries on from the ledger. Nothing is marked copied unless it was read back and matched.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import time
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from drkit.configbackup import catalog as config_catalog
from drkit.core import log
from drkit.core.deadline import Deadline
from drkit.core.errors import DrkitError
from drkit.offsite.plan import Plan, Want, decide
from drkit.offsite.target import Target
from drkit.policy import layout
from drkit.storage import audit, catalog, chain, records, signed
from drkit.storage.copies import Copied, CopyStatus, DbCopy, Ledger
from drkit.storage.store import Store

FUNCTION = "backup-copy"
SAVE_EVERY = 25  # objects between ledger saves (a killed run loses at most this many records of copies)
SAVE_EVERY_S = 20.0
RESERVE_S = 45.0  # stop starting copies this long before the deadline: the ledger and status must fit


@dataclass
class Run:
    primary: Store
    target: Target
    now: dt.datetime
    deadline: Deadline
    databases: Sequence[str] = ()
    dry_run: bool = False
    ledger: dict[str, Copied] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)  # what could not be read or trusted (alerted)
    failures: list[str] = field(default_factory=list)  # objects that could not be copied (alerted)
    copied: list[str] = field(default_factory=list)
    bytes: int = 0
    extended: int = 0
    expired: list[str] = field(default_factory=list)
    left: int = 0  # not reached before the deadline: the next run copies them
    newest: dict[str, str] = field(default_factory=dict)  # database -> the primary's newest trusted backup id
    _saved_at: float = 0.0
    _unsaved: int = 0


def execute(r: Run) -> CopyStatus:
    """The whole run (see the module text); the status it recorded."""
    t0 = time.monotonic()
    caps = r.target.capabilities()
    _load_ledger(r)
    wanted = collect(r)
    plan = decide(wanted, r.ledger, r.now, r.target.lock_days)
    log.info("copy plan", copy=len(plan.copy), present=plan.present, extend=len(plan.extend), expire=len(plan.expire),
             immutability=caps.immutability)
    if not r.dry_run:
        _copy_all(r, plan)
        _extend(r, plan)
        _expire(r, plan)
        _save_ledger(r, force=True)
    seconds = round(time.monotonic() - t0, 3)
    status = _status(r, plan, caps.immutability, seconds)
    if not r.dry_run:
        _publish(r, status)
    return status


# -- what the primary's signed records name --------------------------------------------------------------
def collect(r: Run) -> list[Want]:
    wanted: list[Want] = []
    names = sorted(set(r.databases) | set(catalog.list_databases(r.primary)))
    for name in names:
        wanted += _database(r, name)
    wanted += _config(r)
    wanted += _files(r)
    return wanted


def _held(r: Run, key: str, sha: str | None = None) -> bool:
    have = r.ledger.get(key)
    return have is not None and (sha is None or have.sha256 == sha)


def _database(r: Run, name: str) -> list[Want]:
    v = catalog.trusted_view(r.primary, name, r.now)
    if v.head_error:
        r.problems.append(f"db-backup's catalog of {name} is not believed ({v.head_error}); copying only backups "
                          "whose manifests verify on their own")
    for e, why in v.untrusted:
        r.problems.append(f"{name} {e.id} is not signed by db-backup ({why[:160]}): not copied")
    if v.newest is not None:
        r.newest[name] = v.newest.id
    return (_backups(r, v, f"db:{name}", name, catalog.WRITERS)
            + _head(r, layout.catalog_key(name), chain.DbHead))


def _config(r: Run) -> list[Want]:
    v = config_catalog.trusted_view(r.primary, r.now)
    if v.head_error:
        r.problems.append(f"config-backup's catalog is not believed ({v.head_error})")
    return _backups(r, v, "config", "config", config_catalog.WRITERS) + _head(r, layout.CONFIG_CATALOG_KEY,
                                                                               chain.ConfigHead)


def _backups(r: Run, v: chain.View[Any], group: str, label: str, writers: Sequence[str]) -> list[Want]:
    """The objects of each trusted backup in `v`: from the ledger when the copy holds them all (and the manifest is
    the one the head names), else read from the primary and verified."""
    links = {x.id: x for x in v.head.live} if v.head else {}
    out: list[Want] = []
    for e in v.trusted:
        link = links.get(e.id)
        manifest_sha = link.sha256 if link else None
        sig = e.manifest_key + signed.SIG
        if _held(r, e.manifest_key, manifest_sha) and _held(r, e.data_key) and _held(r, sig):
            have = r.ledger[e.data_key]
            out += [Want(e.data_key, have.size, have.sha256, f"{group}:{e.id}", 0),
                    Want(sig, None, None, f"{group}:{e.id}", 1),
                    Want(e.manifest_key, None, r.ledger[e.manifest_key].sha256, f"{group}:{e.id}", 2)]
            continue
        try:
            data, sig_bytes, manifest = _verified(r.primary, e.manifest_key, e.id, writers)
        except DrkitError as exc:
            r.problems.append(f"{label} {e.id}: manifest unreadable or not believed ({str(exc)[:200]}): not copied")
            continue
        if manifest_sha is not None and hashlib.sha256(data).hexdigest() != manifest_sha:
            r.problems.append(f"{label} {e.id}: the manifest is not the one its writer's catalog names: not copied")
            continue
        out += _backup_wants(e.data_key, sig, e.manifest_key, manifest, data, sig_bytes, f"{group}:{e.id}")
    return out


def _verified(store: Store, key: str, entry_id: str, roles: Sequence[str]) -> tuple[bytes, bytes, dict[str, Any]]:
    """A manifest and its signature as read once: verified by a key trusted for `roles`, for this entry. What is
    copied must hash to these very bytes (a manifest or signature swapped after the check is not copied)."""
    data = store.get_bytes(key)
    sig_bytes = store.get_bytes_or_none(key + signed.SIG)
    signed.verify(store, key, data, sig_bytes, roles, f"the manifest of {entry_id}")
    try:
        manifest = json.loads(data)
    except ValueError:
        raise records.RecordError(key, "signed, but not JSON") from None
    if not isinstance(manifest, dict) or manifest.get("id") != entry_id:
        raise records.RecordError(key, f"signed, but not the manifest of {entry_id}")
    return data, sig_bytes or b"", manifest


def _backup_wants(data_key: str, sig_key: str, manifest_key: str, manifest: dict[str, Any], data: bytes,
                  sig_bytes: bytes, group: str) -> list[Want]:
    size, sha = manifest.get("bytes_out"), manifest.get("sha256")
    return [Want(data_key, size if isinstance(size, int) else None, sha if isinstance(sha, str) else None, group, 0),
            Want(sig_key, len(sig_bytes), hashlib.sha256(sig_bytes).hexdigest(), group, 1),
            Want(manifest_key, len(data), hashlib.sha256(data).hexdigest(), group, 2)]


def _files(r: Run) -> list[Want]:
    """Each files source's blobs its signed catalog names, and the catalog (with its signature)."""
    sources = sorted({o.key.split("/")[1] for o in r.primary.list_objects(layout.FILES_PREFIX)
                      if o.key.count("/") >= 2})
    out: list[Want] = []
    for source in sources:
        key = layout.files_catalog_key(source)
        try:
            data = signed.get_bytes(r.primary, key, config_catalog.WRITERS, f"files catalog of {source}")
        except DrkitError as exc:
            r.problems.append(f"files catalog of {source} is not believed ({str(exc)[:200]}): its blobs are not copied")
            continue
        try:
            blobs = json.loads(data).get("blobs", {})
        except (ValueError, AttributeError):
            blobs = {}
        listed = {o.key: o.size for o in r.primary.list_objects(layout.files_prefix(source) + "blobs/")}
        for blob in sorted(blobs):
            bkey = layout.files_blob_key(source, blob)
            if bkey in listed:
                out.append(Want(bkey, listed[bkey], r.ledger[bkey].sha256 if bkey in r.ledger else None,
                                f"files:{source}", 0))
        sig = r.primary.get_bytes_or_none(key + signed.SIG) or b""
        out += [Want(key + signed.SIG, len(sig), hashlib.sha256(sig).hexdigest(), f"files:{source}", 8),
                Want(key, len(data), hashlib.sha256(data).hexdigest(), f"files:{source}", 9)]
    return out


def _head(r: Run, key: str, cls: type[chain.Head]) -> list[Want]:
    data = r.primary.get_bytes_or_none(key)
    if data is None:
        return []
    try:
        records.decode(data, key, cls, r.primary.identity.trust, r.now)
    except records.RecordError as exc:
        r.problems.append(f"{key} is not believed ({exc.reason[:200]}): the copy keeps its last good head")
        return []
    return [Want(key, len(data), hashlib.sha256(data).hexdigest(), "catalog", 9)]


# -- the work ------------------------------------------------------------------------------------------
def _copy_all(r: Run, plan: Plan) -> None:
    broken: set[str] = set()  # a group whose data failed: its manifest is not copied (nothing half-listed)
    for i, w in enumerate(plan.copy):
        if r.deadline.remaining() < RESERVE_S:
            r.left = len(plan.copy) - i
            log.warning("copy stopped for the deadline; the next run continues", left=r.left)
            return
        if w.group in broken:
            continue
        try:
            copied = r.target.put(r.primary, w.key, w.size, w.sha256, r.now, r.deadline)
        except DrkitError as exc:
            r.failures.append(f"{w.key}: {str(exc)[:300]}")
            broken.add(w.group)
            log.error("not copied", key=w.key, error=str(exc))
            continue
        r.ledger[w.key] = copied
        r.copied.append(w.key)
        r.bytes += copied.size
        r._unsaved += 1
        _save_ledger(r)


def _extend(r: Run, plan: Plan) -> None:
    for key in plan.extend:
        if r.deadline.remaining() < RESERVE_S:
            return
        try:
            r.ledger[key] = r.target.extend(key, r.ledger[key], r.now)
            r.extended += 1
        except DrkitError as exc:
            r.failures.append(f"{key}: keeping it longer failed: {str(exc)[:200]}")


def _expire(r: Run, plan: Plan) -> None:
    for key in plan.expire:
        if r.deadline.remaining() < RESERVE_S:
            return
        have = r.ledger[key]
        try:
            if r.target.delete_version(key, have.version):
                del r.ledger[key]
                r.expired.append(key)
        except DrkitError as exc:
            r.failures.append(f"{key}: copy retention could not delete it: {str(exc)[:200]}")


# -- records --------------------------------------------------------------------------------------------
def _load_ledger(r: Run) -> None:
    try:
        got = records.read(r.target.store, layout.COPY_LEDGER_KEY, Ledger, r.now)
    except records.RecordError as exc:
        r.problems.append(f"the copy's ledger is not believed ({exc.reason[:200]}): objects already in the copy "
                          "are read back and adopted, the rest copied again")
        got = None
    if got is not None:
        r.ledger = dict(got.value.objects)
        _reconcile(r)
        return
    _adopt(r)


def _reconcile(r: Run) -> None:
    """The ledger against the copy's listing: an object the ledger holds that the copy no longer lists (deleted,
    or hidden behind a delete marker) is copied again, and said (someone with the copy's key did it)."""
    listed = {o.key: o.size for prefix in ("db/", "config/", layout.FILES_PREFIX)
              for o in r.target.store.list_objects(prefix)}
    gone = [k for k in r.ledger if not layout.changes_in_place(k) and listed.get(k) != r.ledger[k].size]
    for key in gone:
        del r.ledger[key]
    if gone:
        r.problems.append(f"{len(gone)} object(s) recorded as copied are missing from the copy or changed "
                          f"(e.g. {gone[0]}): copied again; who holds the copy's key?")


def _adopt(r: Run) -> None:
    """No ledger (first run, or it was lost): every object already in the copy is read back and hashed;
    it is recorded only if it matches what the primary's signed records say (checked again when planned)."""
    found = {o.key: o for prefix in ("db/", "config/", layout.FILES_PREFIX) for o in r.target.store.list_objects(prefix)}
    for key, info in sorted(found.items()):
        if r.deadline.remaining() < RESERVE_S * 2:
            return
        try:
            data = r.target.store.get_bytes(key) if info.size <= (8 << 20) else None
        except DrkitError:
            continue
        if data is None:
            h = hashlib.sha256()
            body = r.target.store.open_read(key)
            while chunk := body.read(1 << 20):
                h.update(chunk)
            digest = h.hexdigest()
        else:
            digest = hashlib.sha256(data).hexdigest()
        version = r.target._newest_version(key)
        keep = r.now + dt.timedelta(days=r.target.lock_days)
        r.ledger[key] = Copied(info.size, digest, version, info.last_modified, keep, None)


def _save_ledger(r: Run, *, force: bool = False) -> None:
    if not r._unsaved and not force:
        return
    if not force and r._unsaved < SAVE_EVERY and time.monotonic() - r._saved_at < SAVE_EVERY_S:
        return
    try:
        records.write(r.target.store, layout.COPY_LEDGER_KEY, Ledger(dict(r.ledger)), r.now)
        r._unsaved, r._saved_at = 0, time.monotonic()
    except DrkitError as exc:
        r.failures.append(f"the copy's ledger could not be written: {str(exc)[:200]}")


def _status(r: Run, plan: Plan, immutability: str, seconds: float) -> CopyStatus:
    dbs = []
    for name in sorted(set(r.databases) | set(r.newest)):
        complete = sorted({bid for key in r.ledger if (p := layout.parse_key(key)) and p[0] == name
                           and p[2] == layout.MANIFEST_SUFFIX
                           and layout.data_key(name, (bid := p[1])) in r.ledger}, reverse=True)
        newest = complete[0] if complete else None
        primary = r.newest.get(name)
        lock = r.ledger[layout.data_key(name, newest)].locked_until if newest else None
        dbs.append(DbCopy(name, newest, layout.id_time(newest) if newest else None, primary,
                          layout.id_time(primary) if primary else None, len(complete), lock))
    config = sorted((c[0] for key in r.ledger if (c := layout.parse_config_key(key))
                     and c[1] == layout.MANIFEST_SUFFIX), reverse=True)
    ok = not r.failures and not r.problems and not r.left
    behind = [d.name for d in dbs if d.newest_primary and d.newest_copied != d.newest_primary]
    decision = (f"{'would copy' if r.dry_run else 'copied'} {len(plan.copy) if r.dry_run else len(r.copied)} "
                f"object(s) ({r.bytes / 1e6:.1f} MB), {plan.present} already there"
                + (f", kept {r.extended} blob(s) longer" if r.extended else "")
                + (f", let {len(r.expired)} go by the copy's retention" if r.expired else "")
                + (f"; {r.left} left for the next run (deadline)" if r.left else "")
                + (f"; {len(r.failures)} failed" if r.failures else "")
                + (f"; {len(r.problems)} record(s) not believed or not copied" if r.problems else "")
                + (f"; behind the primary: {', '.join(behind)}" if behind else
                   "; every database's newest backup is in the copy" if dbs else ""))
    return CopyStatus(r.now, r.target.describe(), immutability, r.target.lock_days, decision, ok, tuple(dbs),
                      config[0] if config else None, len(r.copied), r.bytes, seconds,
                      tuple((r.failures + r.problems)[:200]))


def _publish(r: Run, status: CopyStatus) -> None:
    for where, store in (("copy", r.target.store), ("primary", r.primary)):
        try:
            records.write(store, layout.COPY_STATUS_KEY, status, r.now)
        except DrkitError as exc:
            log.error("copy status not written", bucket=where, error=str(exc))
            if where == "primary":
                r.failures.append(f"the copy status could not be written to the primary: {str(exc)[:200]}")
    audit.record(r.primary, FUNCTION, "copy.completed" if status.ok else "copy.failed",
                 {"target": status.target, "copied": len(r.copied), "bytes": r.bytes, "keys": r.copied[:50],
                  "expired": r.expired[:50], "failures": status.failures[:20], "immutability": status.immutability},
                 now=r.now)


def with_failures(status: CopyStatus, more: Sequence[str]) -> CopyStatus:
    return replace(status, ok=status.ok and not more, failures=(*status.failures, *more))
