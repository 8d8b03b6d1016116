"""Data protection right now: the newest good backup of each database and of the config, against its RPO."""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass

from drkit.health import probe
from drkit.policy import layout
from drkit.policy.durations import human, interval_or_default
from drkit.storage import catalog
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

def data_protection(store: Store, p: Protection, now: dt.datetime) -> list[probe.Result]:
    db = p.database
    out = []
    entries = [e for e in catalog.list_backups(store, db) if e.complete]
    if entries:
        age = now - entries[0].time
        ok = age <= p.rpo
        out.append(probe.Result(f"backup-age:{db}", "backup", ok,
                                f"newest backup {entries[0].id} is {_human(age)} old (RPO limit {_human(p.rpo)})",
                                0.0, metrics={"backup_age_seconds": age.total_seconds(),
                                              "backup_rpo_seconds": p.rpo.total_seconds()}))
    else:
        out.append(probe.Result(f"backup-age:{db}", "backup", False, "no complete backup in the bucket", 0.0,
                                metrics={"backup_rpo_seconds": p.rpo.total_seconds()}))
    state = store.get_json_or_none(layout.state_key(db)) or {}
    failures = int(state.get("consecutive_failures", 0))
    last = state.get("last_run") or {}
    out.append(probe.Result(f"backup-failures:{db}", "backup", failures == 0,
                            "last backup run succeeded" if failures == 0 else
                            f"{failures} failed backup run(s) since the last success; last error: {last.get('error')}",
                            0.0, metrics={"backup_consecutive_failures": float(failures)}))
    verify = store.get_json_or_none(layout.verify_state_key(db)) or {}
    passed = verify.get("last_success") or {}
    if passed.get("at"):
        vage = now - dt.datetime.fromisoformat(passed["at"])
        out.append(probe.Result(f"verify-age:{db}", "verify", vage <= p.verify_max_age,
                                f"last verified restore {_human(vage)} ago (limit {_human(p.verify_max_age)})", 0.0,
                                metrics={"verify_age_seconds": vage.total_seconds(),
                                         "verify_max_age_seconds": p.verify_max_age.total_seconds()}))
        duration = float(passed.get("duration_s") or 0.0)
        out.append(probe.Result(f"restore-duration:{db}", "verify", duration <= p.rto.total_seconds(),
                                f"last verified restore took {_human(dt.timedelta(seconds=duration))} "
                                f"(RTO {_human(p.rto)})", 0.0,
                                metrics={"restore_duration_seconds": duration, "rto_seconds": p.rto.total_seconds()}))
    else:
        out.append(probe.Result(f"verify-age:{db}", "verify", False, "no passed restore verification yet", 0.0,
                                metrics={"verify_max_age_seconds": p.verify_max_age.total_seconds()}))
    return out


def config_protection(store: Store, max_age: dt.timedelta, now: dt.datetime) -> list[probe.Result]:
    """config-backup: the newest complete archive is young enough, and the last run stored one."""
    from drkit.configbackup import catalog

    entries = [e for e in catalog.list_entries(store) if e.complete]
    if entries:
        age = now - entries[0].time
        out = [probe.Result("config-age", "backup", age <= max_age,
                            f"newest config backup {entries[0].id} is {_human(age)} old (limit {_human(max_age)})", 0.0,
                            metrics={"config_backup_age_seconds": age.total_seconds()})]
    else:
        out = [probe.Result("config-age", "backup", False, "no complete config backup in the bucket", 0.0)]
    state = store.get_json_or_none(layout.CONFIG_STATE_KEY) or {}
    last = state.get("last_run") or {}
    failed_units = list(last.get("failed_units") or [])
    ok = int(state.get("consecutive_failures", 0)) == 0 and not failed_units
    detail = "last config backup run stored every source" if ok else (
        f"last config backup failed: {last.get('error')}" if last.get("status") == "failed"
        else f"last config backup was partial: {', '.join(failed_units)} failed")
    out.append(probe.Result("config-failures", "backup", ok, detail, 0.0, metrics={
        "config_backup_consecutive_failures": float(state.get("consecutive_failures", 0)),
        "config_backup_failed_sources": float(len(failed_units)),
        "config_drift_changes": float(last.get("drift_changes") or 0)}))
    return out


def _human(d: dt.timedelta) -> str:
    return human(d.total_seconds())


# -- the scheduler ----------------------------------------------------------------------------

SCHEDULE_STATUS_KEY = "status/schedule.json"  # written by the scheduler each tick (scheduling/runs.py)
SCHEDULER_SILENT = dt.timedelta(minutes=10)


def schedule_protection(store: Store, now: dt.datetime) -> list[probe.Result]:
    """The scheduler ticks, and every job it runs succeeded within its window (none when no scheduler
    has written a status: drkit deployed without one, or before its first tick)."""
    status = store.get_json_or_none(SCHEDULE_STATUS_KEY)
    if not isinstance(status, dict) or not status.get("at"):
        return []
    age = now - dt.datetime.fromisoformat(status["at"])
    out = [probe.Result("scheduler", "schedule", age <= SCHEDULER_SILENT,
                        f"last tick {_human(age)} ago" if age <= SCHEDULER_SILENT else
                        f"the scheduler is silent: last tick {_human(age)} ago (it ticks every minute); "
                        "check dr/scheduler's activations and its trigger", 0.0,
                        metrics={"scheduler_last_tick_age_seconds": age.total_seconds()})]
    for job in status.get("jobs") or []:
        if not isinstance(job, dict) or job.get("job") == "health-probe":
            continue
        failed = job.get("state") in ("failed", "timed_out", "lost", "dispatch_failed")
        ok = not failed and not job.get("overdue")
        detail = (f"last run {job.get('state')}: {job.get('error')} (activation {job.get('activation_id')})" if failed
                  else f"no success within {_human(dt.timedelta(seconds=float(job.get('within_s') or 0)))}"
                  if job.get("overdue") else f"last run {job.get('state')}, next {job.get('next_run')}")
        out.append(probe.Result(f"schedule:{job.get('name')}", "schedule", ok, detail, 0.0,
                                metrics={"schedule_failures_in_a_row": float(job.get("failures_in_a_row") or 0),
                                         "schedule_overdue": float(bool(job.get("overdue")))}))
    return out
