"""The schedule table: which job runs for which subject when, and which slot is due now (pure).

One scheduled trigger runs the scheduler every minute; this table decides the rest. Defaults follow
the DR plan (times in UTC):

| job | cron | subjects | expected to succeed within |
|---|---|---|---|
| health-probe | `* * * * *` | one | 10 minutes |
| db-backup | `7 * * * *` (hourly at :07) | each database | 2 hours |
| config-backup | `15 2 * * *` (daily) | one | 26 hours |
| snapshot-rotate | each policy's own `schedule` | each snapshot policy (tag) | its period + 6 hours |
| restore-verify | `17 3 * * 1` (Mondays 03:17, the newest backup) | each database | 8 days |
| report | `40 5 * * *` (daily: the DR report, after the night's backups) | one | 26 hours |
| backup-copy | after each db-backup slot that succeeded, and `37 */6 * * *` (catch-up) | one | 13 hours |

`DRKIT_SCHEDULE` (JSON list) changes a job: `{"job": "db-backup", "cron": "*/30 * * * *",
"within": "90m", "enabled": true, "databases": ["odoo"]}`; every key but `job` is optional, unknown
keys and jobs are refused, and every problem is reported at once. A `cron` without `within` keeps the
default window or two periods of the new cron, whichever is longer.

A slot is one firing of a job's cron for one subject. `due` answers with the newest slot at or
before now that was not run yet, and how many older slots it replaces: after an outage each job runs
once (the latest missed slot), not once per missed slot.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from croniter import croniter

from drkit.core import jsontext, suggest
from drkit.core.errors import ConfigError
from drkit.policy.durations import parse_interval

JOBS = ("health-probe", "db-backup", "config-backup", "snapshot-rotate", "restore-verify", "report",
        "backup-copy")  # dispatch order
AFTER = {"db-backup": "backup-copy"}  # a success of the first starts the second (one run per slot of the first)
PER_DATABASE = ("db-backup", "restore-verify")
DEFAULTS: dict[str, tuple[str, dt.timedelta]] = {
    "health-probe": ("* * * * *", dt.timedelta(minutes=10)),
    "db-backup": ("7 * * * *", dt.timedelta(hours=2)),
    "config-backup": ("15 2 * * *", dt.timedelta(hours=26)),
    "snapshot-rotate": ("", dt.timedelta(hours=6)),  # cron: each policy's; within: its period + this
    "restore-verify": ("17 3 * * 1", dt.timedelta(days=8)),
    "report": ("40 5 * * *", dt.timedelta(hours=26)),
    "backup-copy": ("37 */6 * * *", dt.timedelta(hours=13)),
}
# each job's own time limit (project.yml's `timeout`): a run younger than this may still be going
LIMITS: dict[str, dt.timedelta] = {
    "health-probe": dt.timedelta(seconds=55), "db-backup": dt.timedelta(minutes=15),
    "config-backup": dt.timedelta(minutes=15), "snapshot-rotate": dt.timedelta(minutes=5),
    "restore-verify": dt.timedelta(minutes=15), "report": dt.timedelta(minutes=5),
    "backup-copy": dt.timedelta(minutes=15),
}
KEYS = ("job", "cron", "within", "enabled", "databases")
MAX_CATCH_UP_SCAN = 10_000  # slots counted back when saying how many were missed


@dataclass(frozen=True)
class Slot:
    """One run of one job for one subject."""

    job: str
    subject: str  # "odoo" for per-database jobs, the policy tag for snapshot-rotate, "" otherwise
    cron: str
    within: dt.timedelta  # a success older than this is overdue
    params: Mapping[str, Any] = field(default_factory=dict)  # what the function is invoked with

    @property
    def name(self) -> str:
        return f"{self.job}/{self.subject}" if self.subject else self.job

    def previous(self, now: dt.datetime) -> dt.datetime:
        """The newest firing at or before `now`."""
        return _aware(croniter(self.cron, now + dt.timedelta(seconds=1)).get_prev(dt.datetime))

    def next(self, now: dt.datetime) -> dt.datetime:
        return _aware(croniter(self.cron, now).get_next(dt.datetime))


def _aware(t: dt.datetime) -> dt.datetime:
    return t.replace(tzinfo=dt.UTC) if t.tzinfo is None else t.astimezone(dt.UTC)


def valid_cron(text: Any) -> bool:
    return isinstance(text, str) and len(text.split()) == 5 and bool(croniter.is_valid(text))


def period(cron: str, now: dt.datetime) -> dt.timedelta:
    it = croniter(cron, now)
    a = it.get_next(dt.datetime)
    return it.get_next(dt.datetime) - a  # type: ignore[no-any-return]


def parse(text: str, databases: Sequence[str], snapshot_policies: Sequence[tuple[str, str]], now: dt.datetime,
          where: str = "DRKIT_SCHEDULE") -> list[Slot]:
    """Every job subject the scheduler runs, in dispatch order; ConfigError with every problem.

    `snapshot_policies`: (tag, cron) of each DRKIT_SNAPSHOT_POLICIES item."""

    problems: list[str] = []
    overrides: dict[str, dict[str, Any]] = {}
    if text.strip():
        try:
            items = jsontext.loads(text)
        except ValueError as exc:
            raise ConfigError(f"{where} is not valid JSON ({exc})") from None
        if not isinstance(items, list):
            raise ConfigError(f"{where} must be a JSON list of {{job, cron, within, enabled, databases}}")
        for n, item in enumerate(items, 1):
            label = f"{where} item {n}"
            if not isinstance(item, dict):
                problems.append(f"{label}: must be an object with keys {', '.join(KEYS)}")
                continue
            unknown = sorted(set(item) - set(KEYS))
            if unknown:
                problems.append(f"{label}: unknown key(s) {', '.join(map(repr, unknown))}; keys: {', '.join(KEYS)}")
            job = item.get("job")
            if job not in JOBS:
                problems.append(f"{label}: job must be one of {', '.join(JOBS)}, not {job!r}")
                continue
            if job in overrides:
                problems.append(f"{label}: job {job!r} appears twice")
            if "cron" in item and (job == "snapshot-rotate" or not valid_cron(item["cron"])):
                problems.append(f"{label}: cron {item['cron']!r} is not a 5-field cron expression (UTC)"
                                if job != "snapshot-rotate" else
                                f"{label}: snapshot-rotate runs on each policy's own schedule "
                                "(DRKIT_SNAPSHOT_POLICIES); set it there")
            if "within" in item:
                try:
                    parse_interval(str(item["within"]), f"{label} within")
                except ConfigError as exc:
                    problems.extend(exc.problems)
            if "enabled" in item and not isinstance(item["enabled"], bool):
                problems.append(f"{label}: enabled must be true or false")
            if "databases" in item:
                names = item["databases"]
                if job not in PER_DATABASE:
                    problems.append(f"{label}: databases applies to {' and '.join(PER_DATABASE)} only")
                elif not isinstance(names, list) or not all(isinstance(d, str) for d in names):
                    problems.append(f"{label}: databases must be a list of names")
                else:
                    unknown_db = [d for d in names if d not in databases]
                    if unknown_db:
                        problems.append(f"{label}: {suggest.unknown('database(s)', unknown_db, databases)}")
            overrides[job] = item
    if problems:
        raise ConfigError(problems)
    out: list[Slot] = []
    for job in JOBS:
        o = overrides.get(job, {})
        if not o.get("enabled", True):
            continue
        cron, within = DEFAULTS[job]
        cron = o.get("cron", cron)
        if "within" in o:
            within = parse_interval(str(o["within"]), where)
        elif "cron" in o:  # a slower cron than the default's stretches the window: two periods at least
            within = max(within, 2 * period(cron, now))
        base = Slot(job, "", cron, within)
        if job in PER_DATABASE:
            extra = {"backup": "latest"} if job == "restore-verify" else {}
            for db in o.get("databases", databases):
                out.append(replace(base, subject=db, params={"database": db, **extra}))
        elif job == "snapshot-rotate":
            for tag, policy_cron in snapshot_policies:
                out.append(replace(base, subject=tag, cron=policy_cron, params={"tag": tag},
                                   within=within if "within" in o else period(policy_cron, now) + within))
        else:
            out.append(base)
    return out


@dataclass(frozen=True)
class Due:
    slot: dt.datetime  # the firing to run now
    missed: int  # older firings since the last run that this one replaces (0: on time)


def due(s: Slot, last_slot: dt.datetime | None, now: dt.datetime) -> Due | None:
    """The slot to run now, or None when the newest firing already ran (or has not come yet)."""
    newest = s.previous(now)
    if last_slot is not None and newest <= last_slot:
        return None
    missed = 0
    if last_slot is not None:
        it = croniter(s.cron, newest)
        while missed < MAX_CATCH_UP_SCAN and _aware(it.get_prev(dt.datetime)) > last_slot:
            missed += 1
    return Due(newest, missed)


def window_end(s: Slot, slot: dt.datetime) -> dt.datetime:
    """Until when a slot that did not start may still be started: its next firing (then that one is due)."""
    return s.next(slot)


def stamp(t: dt.datetime) -> str:
    """A slot's name in keys: 20261130T1100Z."""
    return t.astimezone(dt.UTC).strftime("%Y%m%dT%H%MZ")
