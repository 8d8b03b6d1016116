"""Data protection right now: the newest good backup of each database and of the config, against its RPO."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from drkit.core.errors import DrkitError
from drkit.health import probe
from drkit.policy import layout
from drkit.policy.durations import human, interval_or_default
from drkit.storage import catalog, chain, jobs, records, state
from drkit.storage.records import RecordError
from drkit.storage.store import Store


@dataclass(frozen=True)
class Protection:
    database: str
    rpo: dt.timedelta  # newest complete backup no older than this (RPO + grace)
    verify_max_age: dt.timedelta  # newest passed verification no older than this
    rto: dt.timedelta  # the last verified restore took at most this


# the objectives' defaults (RPO 1 h + 15 min grace; weekly verification + 1 day; RTO 4 h): DRKIT_<X>, then per
# database DRKIT_DB_<NAME>_<X>
DEFAULTS = (("RPO", "75m"), ("VERIFY_MAX_AGE", "8d"), ("RTO", "4h"))


def protections_from_env(environ: Mapping[str, str], problems: list[str]) -> list[Protection]:
    """Every database's objectives (health-probe judges them, the report charts them); problems appended."""
    from drkit.core.errors import ConfigError
    from drkit.platform.databases import database_names, env_name

    def interval(var: str, default: str) -> dt.timedelta:
        return interval_or_default(environ, var, default, problems)

    try:
        names = database_names(environ)
    except ConfigError as exc:
        problems.extend(exc.problems)
        names = []
    defaults = {suffix: environ.get(f"DRKIT_{suffix}", "").strip() or text for suffix, text in DEFAULTS}
    for suffix, text in defaults.items():
        interval(f"DRKIT_{suffix}", text)  # report a bad global value under its own name
    return [Protection(name, *(interval(env_name(name, suffix), text) for suffix, text in defaults.items()))
            for name in names]


# -- data protection ----------------------------------------------------------------------

VERIFY_NEW = 8  # listed backups the catalog does not name yet, verified by their own signature each run


def data_protection(store: Store, p: Protection, now: dt.datetime, seen: dict[str, int],
                    views: dict[str, chain.View[Any]] | None = None) -> list[probe.Result]:
    """The database's backups read against db-backup's signed catalog, and the signed run states.

    `seen`: the highest catalog sequence number health-probe has seen per subject (updated here). Everything
    that does not verify or parse is a failing result (alerted on its first run), never a crash. `views`:
    receives the catalog view (the off-site copy's lag is judged against it)."""
    db = p.database
    v = catalog.trusted_view(store, db, now, verify_limit=VERIFY_NEW)
    if views is not None:
        views[db] = v
    out = catalog_results(f"db:{db}", "db-backup", v, seen, now)
    newest = v.newest
    if newest is not None:
        age = now - newest.time
        ok = dt.timedelta(0) <= age <= p.rpo
        detail = (f"newest backup {newest.id} is {_human(age)} old (RPO limit {_human(p.rpo)})" if age.total_seconds() >= 0
                  else f"newest backup {newest.id} is dated {_human(-age)} in the future: a forged or clock-skewed "
                       "backup; the RPO is not met until a genuine one is")
        out.append(probe.Result(f"backup-age:{db}", "backup", ok, detail, 0.0,
                                metrics={"backup_age_seconds": max(age.total_seconds(), 0.0),
                                         "backup_rpo_seconds": p.rpo.total_seconds()}))
        out += _newest_matches(store, v, newest, f"backup-match:{db}")
    else:
        out.append(probe.Result(f"backup-age:{db}", "backup", False, "no complete backup in the bucket"
                                + (f" that db-backup signed ({len(v.untrusted)} untrusted)" if v.untrusted else ""), 0.0,
                                metrics={"backup_rpo_seconds": p.rpo.total_seconds()}))
    try:
        got = state.read(store, layout.state_key(db), state.BackupState, now)
    except RecordError as exc:
        out.append(_distrust(f"backup-failures:{db}", "backup", exc))
    else:
        failures = got.consecutive_failures if got else 0
        last = got.last_run if got else None
        out.append(probe.Result(f"backup-failures:{db}", "backup", failures == 0,
                                "last backup run succeeded" if failures == 0 else
                                f"{failures} failed backup run(s) since the last success; last error: "
                                f"{last.error if last else None}", 0.0,
                                metrics={"backup_consecutive_failures": float(failures)}))
    try:
        verify = state.read(store, layout.verify_state_key(db), state.VerifyState, now)
    except RecordError as exc:
        out.append(_distrust(f"verify-age:{db}", "verify", exc))
        return out
    passed = verify.last_success if verify else None
    try:  # the weekly proof alternates with the off-site copy: a pass of either proves the backups restore
        copy = state.read(store, layout.verify_state_key(db, "copy"), state.VerifyState, now)
    except RecordError as exc:
        out.append(_distrust(f"verify-copy:{db}", "verify", exc))
        copy = None
    if copy and copy.last_success and (passed is None or copy.last_success.at > passed.at):
        passed = copy.last_success
    if passed is not None:
        vage = now - passed.at
        fresh = dt.timedelta(0) <= vage <= p.verify_max_age
        out.append(probe.Result(f"verify-age:{db}", "verify", fresh,
                                f"last verified restore {_human(vage)} ago (limit {_human(p.verify_max_age)})"
                                if vage.total_seconds() >= 0 else "the last verification is dated in the future", 0.0,
                                metrics={"verify_age_seconds": max(vage.total_seconds(), 0.0),
                                         "verify_max_age_seconds": p.verify_max_age.total_seconds()}))
        duration = passed.duration_s or 0.0
        out.append(probe.Result(f"restore-duration:{db}", "verify", duration <= p.rto.total_seconds(),
                                f"last verified restore took {_human(dt.timedelta(seconds=duration))} "
                                f"(RTO {_human(p.rto)})", 0.0,
                                metrics={"restore_duration_seconds": duration, "rto_seconds": p.rto.total_seconds()}))
    else:
        out.append(probe.Result(f"verify-age:{db}", "verify", False, "no passed restore verification yet", 0.0,
                                metrics={"verify_max_age_seconds": p.verify_max_age.total_seconds()}))
    return out


COPY_SEEN = "copy"  # in health-probe's memory: a copy status was seen once, so its absence is an alert


def copy_protection(store: Store, views: Mapping[str, chain.View[Any]], max_lag: dt.timedelta, expected: bool,
                    now: dt.datetime, seen: dict[str, int]) -> list[probe.Result]:
    """The off-site copy, from backup-copy's signed status in the primary (health-probe holds no copy key):
    its last run, and per database how long the oldest backup not yet in the copy has waited (the copy's lag).
    Checked once backup-copy has run (remembered), or always when DRKIT_OFFSITE_MAX_LAG is set."""
    from drkit.storage.copies import CopyStatus

    try:
        got = records.read(store, layout.COPY_STATUS_KEY, CopyStatus, now)
    except RecordError as exc:
        return [_distrust("copy", "backup", exc)]
    if got is None:
        if seen.get(COPY_SEEN) or expected:
            return [probe.Result("copy", "backup", False, "no off-site copy status in the bucket: backup-copy has not "
                                 "run, or its record was deleted (drkit copy status)", 0.0, threshold=1)]
        return []
    seen[COPY_SEEN] = 1
    status = got.value
    out = [probe.Result("copy", "backup", status.ok,
                        f"last copy {_human(now - status.at)} ago to {status.target} ({status.immutability}): "
                        f"{status.decision}"[:1000], 0.0, threshold=1,
                        metrics={"copy_last_run_age_seconds": max((now - status.at).total_seconds(), 0.0)})]
    for db, v in sorted(views.items()):
        d = status.database(db)
        newest = d.newest_copied if d else None
        waiting = [e for e in v.trusted if newest is None or e.id > newest]
        lag = max(now - min(e.time for e in waiting), dt.timedelta(0)) if waiting else dt.timedelta(0)
        detail = (f"the copy holds the newest backup {newest}" if not waiting else
                  f"the copy is {_human(lag)} behind: {len(waiting)} backup(s) not copied yet, the oldest "
                  f"{min(e.id for e in waiting)} (newest copied: {newest or 'none'}; limit {_human(max_lag)})")
        out.append(probe.Result(f"copy-lag:{db}", "backup", lag <= max_lag, detail, 0.0,
                                metrics={"copy_lag_seconds": lag.total_seconds(),
                                         "copy_max_lag_seconds": max_lag.total_seconds()}))
    return out


def catalog_results(subject: str, writer: str, v: chain.View[Any], seen: dict[str, int],
                    now: dt.datetime) -> list[probe.Result]:
    """The catalog's integrity: believed, not rolled back, nothing it names missing, nothing planted beside it."""
    name = f"catalog:{subject.split(':', 1)[1] if subject.startswith('db:') else subject}"
    last = seen.get(subject, 0)
    problems: list[str] = []
    warning = None
    head = v.head
    if v.head_error:
        problems.append(f"{writer}'s catalog head is not believed ({v.head_error})")
    elif head is None and last:
        problems.append(f"{writer}'s catalog head is gone (health-probe last saw sequence {last})")
    elif head is None and v.trusted:
        warning = f"no catalog head yet ({writer} writes one on its next run)"
    elif head is not None and head.seq < last:
        problems.append(f"{writer}'s catalog was rolled back: sequence {head.seq}, health-probe saw {last}")
    if v.missing:
        problems.append(f"{len(v.missing)} backup(s) the catalog names are missing from the bucket: "
                        + ", ".join(f"{x.id} (seq {x.seq})" for x in v.missing[:5]))
    if v.untrusted:
        problems.append(f"{len(v.untrusted)} entr{'y' if len(v.untrusted) == 1 else 'ies'} in the listing not signed "
                        f"by {writer} (planted?): " + ", ".join(e.id for e, _ in v.untrusted[:5]))
    if head is not None and not v.head_error:
        seen[subject] = max(last, head.seq, *(x.seq for x in v.adopted))
    ok = not problems
    detail = "; ".join(problems) if problems else (
        f"catalog sequence {head.seq}: {len(head.live)} backups, all present" if head else "no catalog yet")
    return [probe.Result(name, "integrity", ok, detail, 0.0, warning=warning, threshold=1,
                         metrics={"catalog_problems": float(len(problems))})]


def _newest_matches(store: Store, v: chain.View[Any], newest: Any, name: str) -> list[probe.Result]:
    """The newest backup's manifest is the one the catalog recorded, and its data object has the stored size:
    a replaced or truncated backup is noticed before anyone restores it."""
    link = next((x for x in (v.head.live if v.head else ()) if x.id == newest.id), None)
    if link is None:
        return []  # adopted: verified by its own signature in trusted_view
    try:
        data = store.get_bytes(newest.manifest_key)
        manifest = json.loads(data)
    except (DrkitError, ValueError) as exc:
        return [probe.Result(name, "integrity", False, f"newest backup {newest.id}: manifest unreadable ({exc})", 0.0,
                             threshold=1)]
    problems = []
    if hashlib.sha256(data).hexdigest() != link.sha256:
        problems.append("its manifest is not the one its writer recorded (replaced?)")
    size = getattr(newest, "size", None)
    if isinstance(manifest, dict) and size is not None and manifest.get("bytes_out") != size:
        problems.append(f"its data object is {size} bytes, the manifest says {manifest.get('bytes_out')} (replaced or cut?)")
    return [probe.Result(name, "integrity", not problems, f"newest backup {newest.id}: "
                         + ("; ".join(problems) if problems else "manifest and size as recorded"), 0.0, threshold=1)]


def _distrust(name: str, kind: str, exc: RecordError) -> probe.Result:
    return probe.Result(name, kind, False, f"record not believed: {exc}", 0.0, threshold=1)


def config_protection(store: Store, max_age: dt.timedelta | None, now: dt.datetime, seen: dict[str, int]
                      ) -> list[probe.Result]:
    """config-backup: its catalog holds (whenever config backups exist) and, with `max_age` (DRKIT_CONFIG_MAX_AGE),
    the newest trusted archive is young enough and the last run stored one."""
    from drkit.configbackup import catalog as config_catalog

    v = config_catalog.trusted_view(store, now, verify_limit=VERIFY_NEW)
    if max_age is None and v.head is None and not v.head_error and not v.trusted and not v.untrusted \
            and not seen.get("config"):
        return []
    out = catalog_results("config", "config-backup", v, seen, now)
    if max_age is None:
        return out
    newest = v.newest
    if newest is not None:
        age = now - newest.time
        out += _newest_matches(store, v, newest, "config-match")
        out.append(probe.Result("config-age", "backup", dt.timedelta(0) <= age <= max_age,
                                f"newest config backup {newest.id} is {_human(age)} old (limit {_human(max_age)})", 0.0,
                                metrics={"config_backup_age_seconds": max(age.total_seconds(), 0.0)}))
    else:
        out.append(probe.Result("config-age", "backup", False, "no complete config backup in the bucket", 0.0))
    try:
        got = state.read(store, layout.CONFIG_STATE_KEY, state.ConfigState, now)
    except RecordError as exc:
        return [*out, _distrust("config-failures", "backup", exc)]
    last = got.last_run if got else None
    failures = got.consecutive_failures if got else 0
    failed_units = list(last.failed_units or []) if last else []
    ok = failures == 0 and not failed_units
    detail = "last config backup run stored every source" if ok else (
        f"last config backup failed: {last.error if last else None}" if last and last.status == "failed"
        else f"last config backup was partial: {', '.join(failed_units)} failed")
    out.append(probe.Result("config-failures", "backup", ok, detail, 0.0, metrics={
        "config_backup_consecutive_failures": float(failures),
        "config_backup_failed_sources": float(len(failed_units)),
        "config_drift_changes": float((last.drift_changes if last else 0) or 0)}))
    return out


def _human(d: dt.timedelta) -> str:
    return human(d.total_seconds())


# -- the scheduler ----------------------------------------------------------------------------

SCHEDULER_SILENT = dt.timedelta(minutes=10)
FAILED = ("failed", "timed_out", "lost", "dispatch_failed")


def schedule_protection(store: Store, now: dt.datetime, seen: dict[str, int]) -> list[probe.Result]:
    """The scheduler ticks, and every job it runs succeeded within its window. None before a scheduler wrote
    its first status (drkit deployed without one); once health-probe has seen one, a missing or unbelieved
    status is an alert (a deleted status must not silence the check)."""
    try:
        got = records.read(store, jobs.KEY, jobs.ScheduleStatus, now)
    except RecordError as exc:
        return [_distrust("scheduler", "schedule", exc)]
    if got is None:
        if seen.get("scheduler"):
            return [probe.Result("scheduler", "schedule", False, "the scheduler's status is gone (health-probe saw one "
                                 "before): the scheduler is not running, or someone deleted it", 0.0, threshold=1)]
        return []
    seen["scheduler"] = 1
    status = got.value
    age = now - status.at
    silent = age > SCHEDULER_SILENT
    out = [probe.Result("scheduler", "schedule", not silent,
                        f"last tick {_human(age)} ago" if not silent else
                        f"the scheduler is silent: last tick {_human(age)} ago (it ticks every minute); "
                        "check dr/scheduler's activations and its trigger", 0.0,
                        metrics={"scheduler_last_tick_age_seconds": max(age.total_seconds(), 0.0)})]
    for job in status.jobs:
        if job["job"] == "health-probe":
            continue
        failed = job["state"] in FAILED
        overdue = job["overdue"] or (silent and _overdue_now(job, now))  # a silent scheduler updates nothing
        ok = not failed and not overdue
        detail = (f"last run {job['state']}: {job['error']} (activation {job['activation_id']})" if failed
                  else f"no success within {_human(dt.timedelta(seconds=job['within_s']))}"
                       f"{' (the scheduler is silent)' if silent and not job['overdue'] else ''}"
                  if overdue else f"last run {job['state']}, next {job['next_run']}")
        out.append(probe.Result(f"schedule:{job['name']}", "schedule", ok, detail, 0.0,
                                metrics={"schedule_failures_in_a_row": float(job["failures_in_a_row"]),
                                         "schedule_overdue": float(bool(overdue))}))
    return out


def snapshot_protection(store: Store, now: dt.datetime, seen: dict[str, int]) -> list[probe.Result]:
    """Every protected droplet and volume has a snapshot younger than its policy allows, and, with a DR region,
    a copy there (allowed one period more: it is transferred on the run after the snapshot). From
    snapshot-rotate's signed status; a status seen once and then gone is an alert."""
    from drkit.storage.snapshots import STATUS_KEY, SnapshotStatus

    try:
        got = records.read(store, STATUS_KEY, SnapshotStatus, now)
    except RecordError as exc:
        return [_distrust("snapshots", "snapshot", exc)]
    if got is None:
        if seen.get("snapshots"):
            return [probe.Result("snapshots", "snapshot", False, "snapshot-rotate's status is gone (health-probe saw "
                                 "one before): is it running, or was it deleted?", 0.0, threshold=1)]
        return []
    seen["snapshots"] = 1
    out = []
    for r in got.value.resources:
        limit = dt.timedelta(seconds=int(r["max_age_s"]))
        out.append(_snapshot_age(f"snapshot:{r['resource']}", r["newest_at"], limit, now,
                                 f"newest snapshot {r['newest']}"))
        if r.get("dr_region"):
            out.append(_snapshot_age(f"snapshot-dr:{r['resource']}", r["dr_newest_at"], limit * 3 / 2, now,
                                     f"newest copy in {r['dr_region']}"))
    return out


def _snapshot_age(name: str, at: str | None, limit: dt.timedelta, now: dt.datetime, what: str) -> probe.Result:
    if at is None:
        return probe.Result(name, "snapshot", False, f"no {what.split(' ', 1)[1]}: nothing to rebuild from", 0.0,
                            threshold=1)
    age = now - dt.datetime.fromisoformat(at)
    return probe.Result(name, "snapshot", age <= limit, f"{what} is {_human(age)} old"
                        + ("" if age <= limit else f", older than its policy allows ({_human(limit)})"), 0.0,
                        threshold=1, metrics={"snapshot_age_seconds": max(age.total_seconds(), 0.0)})


def _overdue_now(job: Mapping[str, Any], now: dt.datetime) -> bool:
    success = job.get("last_success")
    return success is None or now - dt.datetime.fromisoformat(str(success)) > dt.timedelta(seconds=job["within_s"])
