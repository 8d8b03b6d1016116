"""scheduler: the one scheduled trigger; each minute it decides, claims, dispatches and watches every DR job.

DigitalOcean allows three scheduled triggers, and the DR plan needs more schedules than that. The
scheduler holds the only one (every minute). Each tick:

1. **watches** every attempt that has not ended (scheduling/runs.py): reads its activation record; an
   uncertain dispatch (no activation id: a 5xx, a timeout, a tick that died after invoking) is looked
   up among the finished activations by the `dispatch_ref` the function echoes; an attempt with no
   record 20 minutes after dispatch is `lost`. Outcomes keep the run's own end time;
2. **retries** what did not start (429, 503 or a refused connection after the in-tick retries, an
   attempt lost or never dispatched) as the slot's next attempt, with backoff, until the slot's next
   firing; then it is `dispatch_failed`;
3. **decides** which slots are due (policy/schedule.py: after an outage, the latest missed slot of
   each job, once) and skips one whose previous run of the same job and subject is still running
   (the overlap policy: recorded and alerted);
4. **claims** each attempt once (a conditional write with this tick's owner token) and **dispatches**
   it with a non-blocking invoke; at most 100 invokes per tick and 100 activations in flight (110 for
   health-probe); it stops dispatching `DISPATCH_RESERVE_S` before its own deadline and leaves the
   rest to the next tick;
5. **reports**: job records, `status/schedule.json`, an audit event per dispatch, alerts through the
   outbox (storage/outbox.py: stored first, sent and marked sent after a 2xx, retried, one per
   condition across concurrent ticks, and one "resolved" when the job succeeds again), and a GET to
   `DRKIT_HEARTBEAT_URL`.

Every record it reads is signed by the scheduler; one that is not believed is alerted, never followed
(a planted run record dated 2999 stops nothing: the slot is judged from the claims themselves).

Parameters: `dry_run` (say what is due, dispatch nothing), `job` with `database` or `tag` (run that
job now: `drkit schedule run`).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from drkit.core import log
from drkit.core.deadline import Clock, Deadline, utcnow
from drkit.core.errors import ConfigError
from drkit.digitalocean.snapshot_policy import parse_policies
from drkit.platform import identity
from drkit.platform.config import collect_spaces, secure_url
from drkit.platform.databases import database_names
from drkit.platform.notify import Notifier
from drkit.platform.runtime import Params
from drkit.policy import schedule
from drkit.policy.schedule import Due, Slot
from drkit.scheduling import runs, tick
from drkit.scheduling.openwhisk import FunctionsApi
from drkit.storage import jobs, outbox, records
from drkit.storage.records import RecordError
from drkit.storage.store import Store

FUNCTION = "scheduler"
MAX_PER_TICK = 100  # of 600 invocations per minute per namespace
MAX_IN_FLIGHT = 100  # of 120 concurrent activations: room for web calls and operators
PROBE_IN_FLIGHT = 110  # health-probe still starts while 100 long jobs run
HEARTBEAT_TIMEOUT_S = 5.0


@dataclass(frozen=True)
class Settings:
    store: Store
    api: FunctionsApi
    slots: list[Slot]
    notifier: Notifier
    heartbeat: str | None

    @classmethod
    def from_env(cls, environ: Mapping[str, str], now: dt.datetime, api: FunctionsApi | None = None) -> Settings:
        problems: list[str] = []
        spaces = collect_spaces(environ, problems)
        me = identity.collect(environ, FUNCTION, problems)
        if api is None:
            api = FunctionsApi.from_env(environ, problems)
        databases: list[str] = []
        try:
            databases = database_names(environ)
        except ConfigError as exc:
            problems += exc.problems
        policies: list[tuple[str, str]] = []
        if environ.get("DRKIT_SNAPSHOT_POLICIES", "").strip():
            try:
                policies = [(p.tag, p.schedule) for p in parse_policies(environ["DRKIT_SNAPSHOT_POLICIES"])]
            except ConfigError as exc:
                problems += exc.problems
        slots: list[Slot] = []
        try:
            slots = schedule.parse(environ.get("DRKIT_SCHEDULE", ""), databases, policies, now)
        except ConfigError as exc:
            problems += exc.problems
        heartbeat = environ.get("DRKIT_HEARTBEAT_URL", "").strip() or None
        if heartbeat and not secure_url(heartbeat):
            problems.append("DRKIT_HEARTBEAT_URL must be an https:// URL")
        notifier = Notifier.collect(environ, problems)
        if problems or spaces is None or api is None:
            raise ConfigError(problems)
        return cls(Store(spaces, identity=me), api, slots, notifier, heartbeat)


def check(environ: Mapping[str, str]) -> str:
    """The configuration run() needs, validated as it validates it (drkit config check); every problem at once."""
    settings = Settings.from_env(environ, utcnow())
    text = f"{len(settings.slots)} scheduled job subject(s); namespace {settings.api.namespace}"
    if settings.heartbeat is None:
        text += ("; WARNING: no DRKIT_HEARTBEAT_URL: a scheduler that stops is seen only by health-probe (10 minutes) "
                 "and the DR report, not by a monitor outside DigitalOcean")
    return text


def run(params: Mapping[str, Any], environ: Mapping[str, str], deadline: Deadline, *,
        clock: Clock = utcnow, api: FunctionsApi | None = None) -> dict[str, Any]:
    p = Params(params, known=("dry_run", "job", "database", "tag"))
    dry_run = p.boolean("dry_run", False)
    job, subject = p.string("job", ""), p.string("database", "") or p.string("tag", "")
    if job and job not in schedule.JOBS:
        p.problems.append(f"parameter 'job' must be one of {', '.join(schedule.JOBS)}, not {job!r}")
    if subject and not job:
        p.problems.append("say which job runs for it: job:db-backup database:NAME")
    p.finish()
    now = clock()
    settings = Settings.from_env(environ, now, api)
    store = settings.store
    previous, status_problem = _previous_status(store, now)
    loaded = runs.load(store, now, previous.cache.get("records") if previous else None)
    if status_problem:
        loaded.problems[jobs.KEY] = status_problem
    first_tick = previous.first_tick if previous else min([now, *(a.claimed_at for a in loaded.attempts.values())])
    t = tick.Tick(store, settings.api, settings.slots, loaded, now, deadline)
    if not dry_run:
        tick.untrusted(t)
        tick.watch(t)
        tick.retry(t)
    if job:
        chosen = [s for s in settings.slots if s.job == job and (not subject or s.subject == subject)]
        if not chosen:
            names = ", ".join(s.name for s in settings.slots if s.job == job) or "none (disabled or not configured)"
            raise ConfigError(f"nothing to run for {job}{'/' + subject if subject else ''}; scheduled: {names}")
        plan = [(s, Due(now, 0), True) for s in chosen]
    else:
        plan = [(s, d, False) for s in settings.slots
                if (d := schedule.due(s, runs.last_slot(s, loaded), now)) is not None]
        plan.sort(key=lambda item: item[1].slot)  # the oldest slot first: what waited a tick is not starved
    in_flight = sum(1 for a in tick.current(loaded).values() if a.state in runs.ACTIVE
                    and now - (a.dispatched_at or a.claimed_at) < tick.limit_of(a) + dt.timedelta(minutes=1))
    now_plan: list[tuple[Slot, Due, bool]] = []
    deferred: list[tuple[Slot, Due, bool]] = []
    for item in plan:  # health-probe (under a minute) may use the headroom the long jobs leave
        limit = PROBE_IN_FLIGHT if item[0].job == "health-probe" else MAX_IN_FLIGHT
        if len(now_plan) + len(t.dispatched) < MAX_PER_TICK and in_flight < limit:
            now_plan.append(item)
            in_flight += 1
        else:
            deferred.append(item)
    if dry_run:
        due_names = [f"{s.name} ({_when(d, manual)})" for s, d, manual in now_plan]
        return {"ok": True, "status": "dry_run", "due": due_names, "deferred": [s.name for s, _, _ in deferred],
                "decision": f"dry run: {len(now_plan)} due now" + (f": {', '.join(due_names)}" if due_names else "")
                            + (f"; {len(deferred)} would wait for the next tick" if deferred else "")}
    for n, (s, d, manual) in enumerate(now_plan):
        if not tick.can_dispatch(t):
            log.warning("dispatching stopped before the deadline; the rest wait for the next tick",
                        left=len(now_plan) - n)
            deferred += now_plan[n:]
            break
        tick.start(t, s, d, manual)
    tick.overdue(t, first_tick)
    runs.prune(store, loaded, now)
    status = tick.status(t, first_tick, deferred)
    records.write(store, jobs.KEY, status, now)
    notifications = outbox.flush(store, settings.notifier, now, deadline, margin_s=HEARTBEAT_TIMEOUT_S + 1) \
        if settings.notifier.configured else []
    _heartbeat(settings.heartbeat)
    failed = [d for d in t.dispatched if d["state"] == "dispatch_failed"]
    return {"ok": not failed, "status": "failed" if failed else "ok", "decision": status.decision,
            "dispatched": t.dispatched, "watched": t.watched, "deferred": [s.name for s, _, _ in deferred],
            "alerts": len(t.raised), "resolved": len(t.resolved), "notifications": notifications,
            **({"error": "; ".join(f"{d['name']}: {d['error']}" for d in failed)} if failed else {})}


def _previous_status(store: Store, now: dt.datetime) -> tuple[jobs.ScheduleStatus | None, str | None]:
    try:
        got = records.read(store, jobs.KEY, jobs.ScheduleStatus, now)
    except RecordError as exc:
        return None, exc.reason
    return (got.value if got else None), None


def _when(d: Due, manual: bool) -> str:
    if manual:
        return "now, on request"
    return f"slot {d.slot:%Y-%m-%d %H:%M}" + (f", replacing {d.missed} missed" if d.missed else "")


def _heartbeat(url: str | None) -> None:
    if not url:
        return
    import requests

    try:
        requests.get(url, timeout=HEARTBEAT_TIMEOUT_S)
    except requests.RequestException as exc:
        log.warning("heartbeat not delivered", error=type(exc).__name__)

