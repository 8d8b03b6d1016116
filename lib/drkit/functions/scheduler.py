"""scheduler: the one scheduled trigger; each minute it decides, claims, dispatches and watches every DR job.

DigitalOcean allows three scheduled triggers, and the DR plan needs more schedules than that. The
scheduler holds the only one (every minute). Each tick:

1. **watches** what it dispatched before: reads each activation record; a failed, timed-out or lost
   activation (no record 20 minutes after dispatch) is alerted once and counted as a failure;
2. **decides** which slots are due (policy/schedule.py: after an outage, the latest missed slot of
   each job, once, and says how many it replaced);
3. **claims** each slot exactly once in the bucket (scheduling/runs.py), then **dispatches** it with a
   non-blocking invoke (scheduling/openwhisk.py): db-backup and restore-verify fan out to one
   activation per database, each with its own 15-minute budget; at most 100 invokes per tick and
   100 activations in flight, 110 for health-probe (the namespace allows 600 per minute and 120 at
   once); the rest wait for the next tick, oldest slot first;
4. **reports**: a run record per job subject, an audit event per dispatch, `status/schedule.json`,
   one alert per failure and per overdue job (no success within its window), and a GET to
   `DRKIT_HEARTBEAT_URL` (a dead man's switch: an external monitor alerts when the pings stop).

Parameters: `dry_run` (say what is due, dispatch nothing), `job` with `database` or `tag` (run that
job now: `drkit schedule run`).
"""

from __future__ import annotations

import datetime as dt
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from drkit.core import log
from drkit.core.deadline import Clock, Deadline, utcnow
from drkit.core.errors import ConfigError
from drkit.digitalocean.snapshot_policy import parse_policies
from drkit.platform.config import collect_spaces, secure_url
from drkit.platform.databases import database_names
from drkit.platform.notify import Notifier
from drkit.platform.runtime import Params
from drkit.policy import schedule
from drkit.policy.schedule import Due, Slot
from drkit.scheduling import runs
from drkit.scheduling.openwhisk import DispatchError, FunctionsApi, outcome
from drkit.storage import audit
from drkit.storage.store import Store

FUNCTION = "scheduler"
MAX_PER_TICK = 100  # of 600 invocations per minute per namespace
MAX_IN_FLIGHT = 100  # of 120 concurrent activations: room for web calls and operators
PROBE_IN_FLIGHT = 110  # health-probe still starts while 100 long jobs run
IN_FLIGHT_FOR = dt.timedelta(minutes=16)  # an activation runs at most 15 minutes
LOST_AFTER = dt.timedelta(minutes=20)
WATCH_MARGIN_S = 15.0  # stop reading activation records this long before the deadline
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
        return cls(Store(spaces), api, slots, notifier, heartbeat)


def check(environ: Mapping[str, str]) -> str:
    """The configuration run() needs, validated as it validates it (drkit config check); every problem at once."""
    settings = Settings.from_env(environ, utcnow())
    return f"{len(settings.slots)} scheduled job subject(s); namespace {settings.api.namespace}"


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
    previous = store.get_json_or_none(runs.STATUS_KEY) or {}
    records = runs.load(store, previous)
    first_tick = dt.datetime.fromisoformat(previous["first_tick"]) if previous.get("first_tick") else now
    alerts: list[dict[str, Any]] = []
    watched = [] if dry_run else _watch(settings, records, now, deadline, alerts)
    if job:
        chosen = [s for s in settings.slots if s.job == job and (not subject or s.subject == subject)]
        if not chosen:
            names = ", ".join(s.name for s in settings.slots if s.job == job) or "none (disabled or not configured)"
            raise ConfigError(f"nothing to run for {job}{'/' + subject if subject else ''}; scheduled: {names}")
        plan = [(s, Due(now, 0), True) for s in chosen]
    else:
        plan = [(s, d, False) for s in settings.slots
                if (d := schedule.due(s, _last_slot(records.get(s.name)), now)) is not None]
        plan.sort(key=lambda item: item[1].slot)  # the oldest slot first: what waited a tick is not starved
    in_flight = sum(1 for r in records.values() if r.get("state") in runs.ACTIVE
                    and now - dt.datetime.fromisoformat(r["dispatched_at"]) < IN_FLIGHT_FOR)
    now_plan: list[tuple[Slot, Due, bool]] = []
    deferred: list[tuple[Slot, Due, bool]] = []
    for item in plan:  # health-probe (under a minute) may use the headroom the long jobs leave
        limit = PROBE_IN_FLIGHT if item[0].job == "health-probe" else MAX_IN_FLIGHT
        if len(now_plan) < MAX_PER_TICK and in_flight < limit:
            now_plan.append(item)
            in_flight += 1
        else:
            deferred.append(item)
    if dry_run:
        due_names = [f"{s.name} ({_when(d, manual)})" for s, d, manual in now_plan]
        return {"ok": True, "status": "dry_run", "due": due_names, "deferred": [s.name for s, _, _ in deferred],
                "decision": f"dry run: {len(now_plan)} due now" + (f": {', '.join(due_names)}" if due_names else "")
                            + (f"; {len(deferred)} would wait for the next tick" if deferred else "")}
    dispatched = [_dispatch(settings, s, d, manual, records, now, deadline, alerts) for s, d, manual in now_plan]
    _overdue(settings, records, first_tick, now, alerts)
    status = _status(settings, records, first_tick, now, dispatched, deferred)
    store.put_json(runs.STATUS_KEY, status)
    notifications = [r for a in alerts for r in settings.notifier.send(a)] if settings.notifier.configured else []
    _heartbeat(settings.heartbeat)
    failed = [d for d in dispatched if d["state"] == "dispatch_failed"]
    return {"ok": not failed, "status": "failed" if failed else "ok", "decision": status["decision"],
            "dispatched": dispatched, "watched": watched, "deferred": [s.name for s, _, _ in deferred],
            "alerts": len(alerts), "notifications": notifications,
            **({"error": "; ".join(f"{d['name']}: {d['error']}" for d in failed)} if failed else {})}


def _last_slot(record: dict[str, Any] | None) -> dt.datetime | None:
    slot = (record or {}).get("cron_slot")
    return dt.datetime.fromisoformat(slot) if slot else None


def _when(d: Due, manual: bool) -> str:
    if manual:
        return "now, on request"
    return f"slot {d.slot:%Y-%m-%d %H:%M}" + (f", replacing {d.missed} missed" if d.missed else "")


def _alert(event: str, name: str, detail: str, activation: str | None = None) -> dict[str, Any]:
    return {"event": event, "function": FUNCTION, "status": "failed", "decision": f"{name}: {detail}",
            "failed_checks": [f"{name}: {detail}" + (f" (activation {activation})" if activation else "")]}


def _watch(settings: Settings, records: dict[str, dict[str, Any]], now: dt.datetime, deadline: Deadline,
           alerts: list[dict[str, Any]]) -> list[dict[str, Any]]:
    out = []
    for name, record in sorted(records.items()):
        state = record.get("state")
        if state not in runs.ACTIVE:
            continue
        if deadline.expired(WATCH_MARGIN_S):
            log.warning("stopped reading activation records: the deadline is near", left=name)
            break
        age = now - dt.datetime.fromisoformat(record["dispatched_at"])
        activation = record.get("activation_id")
        new = None
        if state == "dispatched" and activation:
            try:
                found = settings.api.activation(activation)
            except Exception as exc:  # noqa: BLE001 - one unreadable record must not stop the tick
                log.warning("activation record unreadable", activation_id=activation, error=str(exc)[:200])
                continue
            if found is not None:
                result, error, duration = outcome(found)
                new = runs.finished(record, result, error, duration, now)
        if new is None and age > LOST_AFTER:
            why = ("no activation record 20 minutes after dispatch: it never started or was lost"
                   if state == "dispatched" else f"the dispatch was uncertain ({record.get('error')}) and no "
                                                 "outcome could be read: treat the slot as missed")
            new = runs.finished(record, "lost", why, None, now)
        if new is None:
            continue
        if new["state"] != "succeeded" and not record.get("alerted"):
            alerts.append(_alert(f"schedule.{new['state']}", name, str(new["error"]), activation))
            new["alerted"] = True
        records[name] = runs.save(settings.store, name, new)
        audit.record(settings.store, FUNCTION, f"schedule.{new['state']}",
                     {"job": name, "slot": record.get("slot"), "activation_id": activation, "error": new["error"],
                      "duration_ms": new["duration_ms"]}, now=now)
        out.append({"name": name, "state": new["state"], "activation_id": activation, "error": new["error"],
                    "duration_ms": new["duration_ms"]})
    return out


def _dispatch(settings: Settings, slot: Slot, d: Due, manual: bool, records: dict[str, dict[str, Any]],
              now: dt.datetime, deadline: Deadline, alerts: list[dict[str, Any]]) -> dict[str, Any]:
    store = settings.store
    when = f"manual-{schedule.stamp(now)}-{secrets.token_hex(3)}" if manual else d.slot
    if not runs.claim(store, slot, when, {"at": now.isoformat(), "by": log.context().get("activation_id")}):
        return {"name": slot.name, "state": "claimed_elsewhere", "slot": d.slot.isoformat(), "error": None}
    previous = records.get(slot.name) or {}
    record: dict[str, Any] = {
        "job": slot.job, "subject": slot.subject, "slot": d.slot.isoformat(), "missed": d.missed, "manual": manual,
        "cron_slot": previous.get("cron_slot") if manual else d.slot.isoformat(),
        "dispatched_at": now.isoformat(), "activation_id": None, "error": None,
        "last_success": previous.get("last_success"), "failures_in_a_row": int(previous.get("failures_in_a_row", 0)),
        "alerted": False, "overdue_alerted": bool(previous.get("overdue_alerted"))}
    try:
        record["activation_id"] = settings.api.invoke(slot.job, slot.params, deadline)
        record["state"] = "dispatched"
    except DispatchError as exc:
        record.update(state="uncertain" if exc.uncertain else "dispatch_failed", error=str(exc))
        if not exc.uncertain:
            record["failures_in_a_row"] += 1
            record["alerted"] = True
            alerts.append(_alert("schedule.dispatch_failed", slot.name, str(exc)))
    records[slot.name] = runs.save(store, slot.name, record)
    audit.record(store, FUNCTION, f"schedule.{record['state']}",
                 {"job": slot.name, "slot": record["slot"], "missed": d.missed, "manual": manual,
                  "activation_id": record["activation_id"], "error": record["error"]}, now=now)
    if not manual:
        runs.prune_claims(store, slot, now)
    log.info("slot dispatched" if record["state"] == "dispatched" else "slot not dispatched", job=slot.name,
             slot=record["slot"], missed=d.missed, activation_id=record["activation_id"], error=record["error"])
    return {"name": slot.name, "state": record["state"], "slot": record["slot"], "missed": d.missed,
            "activation_id": record["activation_id"], "error": record["error"]}


def _overdue(settings: Settings, records: dict[str, dict[str, Any]], first_tick: dt.datetime, now: dt.datetime,
             alerts: list[dict[str, Any]]) -> None:
    """A job with no success within its window is alerted once, even when nothing was dispatched."""
    for slot in settings.slots:
        record = records.get(slot.name)
        if not runs.overdue(slot, record, first_tick, now) or (record or {}).get("overdue_alerted"):
            continue
        success = ((record or {}).get("last_success") or {}).get("at")
        detail = (f"no success within {slot.within} (last success {success})" if success else
                  f"no success within {slot.within} of the scheduler's first tick")
        alerts.append(_alert("schedule.overdue", slot.name, detail))
        base = record or {"job": slot.job, "subject": slot.subject, "state": "never_run"}
        records[slot.name] = runs.save(settings.store, slot.name, {**base, "overdue_alerted": True})


def _status(settings: Settings, records: dict[str, dict[str, Any]], first_tick: dt.datetime, now: dt.datetime,
            dispatched: list[dict[str, Any]], deferred: list[Any]) -> dict[str, Any]:
    jobs = []
    for slot in settings.slots:
        r = records.get(slot.name) or {}
        jobs.append({"name": slot.name, "job": slot.job, "subject": slot.subject, "cron": slot.cron,
                     "last_slot": r.get("slot"), "activation_id": r.get("activation_id"),
                     "state": r.get("state", "never_run"), "duration_ms": r.get("duration_ms"), "error": r.get("error"),
                     "last_success": (r.get("last_success") or {}).get("at"),
                     "failures_in_a_row": r.get("failures_in_a_row", 0),
                     "overdue": runs.overdue(slot, r, first_tick, now), "within_s": slot.within.total_seconds(),
                     "next_run": slot.next(now).isoformat()})
    started = [d for d in dispatched if d["state"] == "dispatched"]
    missed = sum(d.get("missed", 0) for d in started)
    failing = [j["name"] for j in jobs if j["state"] in runs.FAILED or j["overdue"]]
    decision = (f"dispatched {len(started)}" + (f" ({', '.join(d['name'] for d in started[:8])}"
                                               f"{', …' if len(started) > 8 else ''})" if started else "")
                + (f"; caught up {missed} missed slot(s) with one run each" if missed else "")
                + (f"; {len(deferred)} wait for the next tick (namespace limits)" if deferred else "")
                + (f"; failing or overdue: {', '.join(failing)}" if failing else "; every job on schedule"))
    return {"format": "drkit.schedule-status/1", "at": now.isoformat(), "first_tick": first_tick.isoformat(),
            "decision": decision, "jobs": jobs, "runs": records}


def _heartbeat(url: str | None) -> None:
    if not url:
        return
    import requests

    try:
        requests.get(url, timeout=HEARTBEAT_TIMEOUT_S)
    except requests.RequestException as exc:
        log.warning("heartbeat not delivered", error=type(exc).__name__)
