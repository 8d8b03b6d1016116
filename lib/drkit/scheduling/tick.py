"""One scheduler tick's work on the records: watch what runs, retry what did not start, start what is due, report.

functions/scheduler.py decides and orchestrates; this module does each step against the bucket and the
Functions API, alerting through the outbox (storage/outbox.py). See that module for the whole tick.
"""

from __future__ import annotations

import datetime as dt
import secrets
from dataclasses import dataclass, field, replace
from typing import Any

from drkit.core import log
from drkit.core.deadline import Deadline
from drkit.core.errors import DrkitError
from drkit.policy import schedule
from drkit.policy.schedule import Due, Slot
from drkit.scheduling import runs
from drkit.scheduling.openwhisk import DISPATCH_REF, DispatchError, FunctionsApi, ended_at, outcome
from drkit.scheduling.runs import Attempt, JobRecord, Loaded
from drkit.storage import audit, jobs, outbox
from drkit.storage.store import Store

FUNCTION = "scheduler"
LOST_AFTER = dt.timedelta(minutes=20)  # no record this long after dispatch: the activation never ran or was lost
STALE_CLAIM = dt.timedelta(minutes=2)  # a claim its tick never dispatched (the tick died)
WATCH_MARGIN_S = 25.0  # stop reading activation records this long before the deadline
DISPATCH_RESERVE_S = 20.0  # stop dispatching this long before the deadline: status, alerts, heartbeat must fit
MAX_ATTEMPTS = 20


@dataclass
class Tick:
    """One tick's view: the settings, what the bucket holds, the clock, and what it did."""

    store: Store
    api: FunctionsApi
    slots: list[Slot]
    loaded: Loaded
    now: dt.datetime
    deadline: Deadline
    owner: str = field(default_factory=lambda: secrets.token_hex(6))
    raised: list[str] = field(default_factory=list)
    resolved: list[str] = field(default_factory=list)
    watched: list[dict[str, Any]] = field(default_factory=list)
    dispatched: list[dict[str, Any]] = field(default_factory=list)
    _open: set[str] | None = None

    def open_conditions(self) -> set[str]:
        """The conditions with an open alert (read once a tick, kept up to date by alert/recover)."""
        if self._open is None:
            try:
                self._open = set(outbox.open_conditions(self.store, self.now))
            except DrkitError as exc:
                log.error("open alerts unreadable", error=str(exc))
                self._open = set()
        return self._open

    def alert(self, condition: str, name: str, detail: str, activation: str | None = None,
              event: str | None = None) -> None:
        message = {"event": event or f"schedule.{condition.split(':', 1)[0].split('.', 1)[-1]}", "function": FUNCTION,
                   "status": "failed", "decision": f"{name}: {detail}",
                   "failed_checks": [f"{name}: {detail}" + (f" (activation {activation})" if activation else "")]}
        if condition in self.open_conditions():
            return
        try:
            if outbox.raise_alert(self.store, condition, message, self.now):
                self.raised.append(condition)
            self.open_conditions().add(condition)
        except DrkitError as exc:  # the condition is seen again next tick, and raised then
            log.error("alert not stored", condition=condition, error=str(exc))

    def recover(self, condition: str, name: str, detail: str) -> None:
        message = {"event": "schedule.resolved", "function": FUNCTION, "status": "passed",
                   "decision": f"{name}: resolved: {detail}"}
        if condition not in self.open_conditions():
            return
        try:
            if outbox.resolve(self.store, condition, message, self.now):
                self.resolved.append(condition)
            self.open_conditions().discard(condition)
        except DrkitError as exc:
            log.error("alert not resolved", condition=condition, error=str(exc))

    def slot_of(self, a: Attempt) -> Slot | None:
        return next((s for s in self.slots if s.name == a.name), None)


def can_dispatch(t: Tick) -> bool:
    """Room left for one more invoke (its timeout) and the tick's reporting after it."""
    return t.deadline.remaining() >= DISPATCH_RESERVE_S + t.api.timeout_s


def limit_of(a: Attempt) -> dt.timedelta:
    return schedule.LIMITS.get(a.job, dt.timedelta(minutes=15))


def current(loaded: Loaded) -> dict[tuple[str, str], Attempt]:
    """The newest attempt of each slot (a slot's earlier attempts were given up for it)."""
    out: dict[tuple[str, str], tuple[int, Attempt]] = {}
    for key, a in loaded.attempts.items():
        parsed = runs.parse_key(key)
        if parsed is None:
            continue
        slot_id = (a.name, parsed[1])
        if slot_id not in out or out[slot_id][0] < a.attempt:
            out[slot_id] = (a.attempt, a)
    return {k: v[1] for k, v in out.items()}


def _when(a: Attempt) -> str:
    """The slot as keys name it, with a manual run's own mark."""
    return runs.slot_stamp(a.slot) + (f"-manual-{a.dispatch_ref.split('-manual-')[-1][:6]}" if a.manual else "")


def _key(a: Attempt, n: int | None = None) -> str:
    return runs.attempt_key(a.name, _when(a), n or a.attempt)


def untrusted(t: Tick) -> None:
    """Records that are not believed are alerted (once each) and never followed; one that is gone or believed
    again resolves its alert."""
    for key, why in t.loaded.problems.items():
        t.alert(f"record.untrusted:{key}", key, f"not believed, ignored: {why}", event="record.untrusted")
    for condition in sorted(t.open_conditions()):
        if condition.startswith("record.untrusted:") and condition.split(":", 1)[1] not in t.loaded.problems:
            t.recover(condition, condition.split(":", 1)[1], "the record is believed again, or gone")


def watch(t: Tick) -> None:
    for _, a in sorted(current(t.loaded).items()):
        if a.state not in (*runs.ACTIVE, "claimed"):
            continue
        if t.deadline.expired(WATCH_MARGIN_S):
            log.warning("stopped reading activation records: the deadline is near", left=a.name)
            break
        since = a.dispatched_at or a.claimed_at
        if a.state == "claimed" and t.now - a.claimed_at < STALE_CLAIM:
            continue  # its tick is dispatching it right now
        record = None
        try:
            if a.state == "dispatched" and a.activation_id:
                record = t.api.activation(a.activation_id)
            else:  # uncertain, or claimed by a tick that died: did it start after all?
                record = t.api.find(a.job, a.dispatch_ref, since - dt.timedelta(minutes=1))
        except Exception as exc:  # noqa: BLE001 - one unreadable record must not stop the tick
            log.warning("activation record unreadable", name=a.name, error=str(exc)[:200])
            continue
        if record is not None:
            state, error, duration = outcome(record)
            a = replace(a, state=state, error=error, duration_ms=duration,
                        activation_id=a.activation_id or str(record.get("activationId") or "") or None,
                        finished_at=ended_at(record) or t.now)
        elif t.now - since > LOST_AFTER:
            why = ("no activation record 20 minutes after dispatch: it never started or was lost"
                   if a.state == "dispatched" else
                   f"no activation found for the dispatch 20 minutes on ({a.error or 'its tick ended before recording it'})")
            a = replace(a, state="lost", error=why, finished_at=None)
        else:
            continue
        _ended(t, a)


def _ended(t: Tick, a: Attempt) -> None:
    """Record an attempt's outcome, its job's summary, the audit event and the alert (or its resolution)."""
    store = t.store
    slot = t.slot_of(a)
    failed = a.state in runs.FAILED
    if failed and not a.alerted:
        t.alert(f"schedule.{a.state}:{a.name}:{_when(a)}", a.name, str(a.error), a.activation_id)
        a = replace(a, alerted=True)
    runs.save(store, _key(a), a, t.now)
    t.loaded.attempts[_key(a)] = a
    job = t.loaded.jobs.get(a.name) or JobRecord(a.job, a.subject)
    t.loaded.jobs[a.name] = runs.save_job(store, job.after(a), t.now)
    if a.state == "succeeded":
        for condition in sorted(t.open_conditions()):
            if condition.startswith(("schedule.failed:", "schedule.timed_out:", "schedule.lost:",
                                     "schedule.dispatch_failed:", "schedule.overdue:", "schedule.skipped:")) \
                    and condition.split(":")[1] == a.name:
                t.recover(condition, a.name, f"succeeded again (slot {runs.slot_stamp(a.slot)})")
    audit.record(store, FUNCTION, f"schedule.{a.state}",
                 {"job": a.name, "slot": a.slot.isoformat(), "attempt": a.attempt, "activation_id": a.activation_id,
                  "error": a.error, "duration_ms": a.duration_ms}, now=t.now)
    t.watched.append({"name": a.name, "state": a.state, "activation_id": a.activation_id, "error": a.error,
                      "duration_ms": a.duration_ms, "attempt": a.attempt})
    if a.state == "lost" and slot is not None and not a.manual and t.now < schedule.window_end(slot, a.slot):
        _again(t, slot, a, "its earlier attempt was lost")
    if a.state == "succeeded":
        try:
            follow(t, a)
        except DrkitError as exc:  # the follower's own catch-up slot starts it; this tick's reporting goes on
            log.error("follower not started", after=a.name, error=str(exc))


def follow(t: Tick, a: Attempt) -> None:
    """After a job that another one follows (db-backup -> backup-copy): start the follower once for that slot.
    Every database's success of one slot claims the same key, so one copy runs per backup slot; while a copy
    is still running, or with no room left in this tick, the follower's own hourly slot catches up."""
    job = schedule.AFTER.get(a.job)
    s = next((x for x in t.slots if x.job == job), None) if job else None
    if s is None:
        return
    if any(x.name == s.name and x.state in runs.ACTIVE and t.now - (x.dispatched_at or x.claimed_at) < limit_of(x)
           for x in current(t.loaded).values()) or not can_dispatch(t):
        return
    ref = f"{s.name}@{runs.slot_stamp(a.slot)}-after-{a.job}"
    nxt = Attempt(s.job, s.subject, a.slot, 1, t.owner, "claimed", t.now, False, 0, ref)
    got = runs.claim(t.store, _key(nxt), nxt, t.now)
    if got.ours and got.holder is None:
        log.info("follower started", job=s.name, after=a.name, slot=a.slot.isoformat())
        _job_slot(t, s, nxt)
        _dispatch(t, s, nxt)


def retry(t: Tick) -> None:
    """Attempts that did not start: the next one, once its wait is over, until the slot's next firing."""
    for _, a in sorted(current(t.loaded).items()):
        if a.state != "retrying" or (a.next_attempt_at and a.next_attempt_at > t.now):
            continue
        slot = t.slot_of(a)
        if slot is None:
            continue
        if t.now >= schedule.window_end(slot, a.slot) or a.attempt >= MAX_ATTEMPTS:
            done = replace(a, state="dispatch_failed", error=f"{a.error}; not started within the slot's window "
                                                             f"({a.attempt} attempt(s))")
            _ended(t, done)
            continue
        if not can_dispatch(t):
            return
        _again(t, slot, a, a.error or "retry")


def _again(t: Tick, slot: Slot, a: Attempt, why: str) -> None:
    n = a.attempt + 1
    nxt = Attempt(a.job, a.subject, a.slot, n, t.owner, "claimed", t.now, a.manual, a.missed,
                  f"{a.dispatch_ref.rsplit('#', 1)[0]}#{n}")
    got = runs.claim(t.store, _key(a, n), nxt, t.now)
    if not got.ours:
        return  # another tick retries it
    log.info("slot retried", job=a.name, slot=a.slot.isoformat(), attempt=n, why=why)
    _dispatch(t, slot, nxt)


def start(t: Tick, s: Slot, d: Due, manual: bool) -> None:
    ref = f"{s.name}@{runs.slot_stamp(d.slot)}{'-manual-' + secrets.token_hex(3) if manual else ''}"
    a = Attempt(s.job, s.subject, d.slot, 1, t.owner, "claimed", t.now, manual, d.missed, ref)
    key = _key(a)
    got = runs.claim(t.store, key, a, t.now)
    if got.forged:
        t.alert(f"record.untrusted:{key}", key, f"a claim not signed by the scheduler was in the way: {got.forged}",
                event="record.untrusted")
    if not got.ours:
        t.dispatched.append({"name": s.name, "state": "claimed_elsewhere", "slot": d.slot.isoformat(), "error": None})
        return
    if got.holder is not None:  # our own claim from a try whose answer was lost: carry on with it
        a = got.holder.value
    running = [x for x in current(t.loaded).values() if x.name == s.name and x.state in runs.ACTIVE
               and t.now - (x.dispatched_at or x.claimed_at) < limit_of(x)]
    if running and not manual:
        other = running[0]
        skipped = replace(a, state="skipped", error=f"the {runs.slot_stamp(other.slot)} run (activation "
                                                    f"{other.activation_id or 'not known yet'}) is still running",
                          finished_at=t.now)
        t.alert(f"schedule.skipped:{s.name}", s.name, f"slot {runs.slot_stamp(d.slot)} skipped: {skipped.error}")
        runs.save(t.store, key, skipped, t.now)
        t.loaded.attempts[key] = skipped
        _job_slot(t, s, skipped)
        t.dispatched.append({"name": s.name, "state": "skipped", "slot": d.slot.isoformat(), "missed": d.missed,
                             "activation_id": None, "error": skipped.error})
        return
    if not manual:
        _job_slot(t, s, a)
    _dispatch(t, s, a)


def _job_slot(t: Tick, s: Slot, a: Attempt) -> None:
    """The job record names the newest scheduled slot claimed (what `due` compares against)."""
    job = t.loaded.jobs.get(s.name) or JobRecord(s.job, s.subject)
    if job.last_slot is None or a.slot > job.last_slot:
        t.loaded.jobs[s.name] = runs.save_job(t.store, replace(job, last_slot=a.slot), t.now)


def _dispatch(t: Tick, s: Slot, a: Attempt) -> None:
    key = _key(a)
    try:
        activation = t.api.invoke(s.job, {**s.params, DISPATCH_REF: a.dispatch_ref}, t.deadline)
        a = replace(a, state="dispatched", activation_id=activation, dispatched_at=t.now, error=None)
    except DispatchError as exc:
        if exc.uncertain:
            a = replace(a, state="uncertain", dispatched_at=t.now, error=str(exc))
        elif exc.retryable:  # not started: the next tick tries again, after a wait
            wait = dt.timedelta(seconds=min(300, 30 * 2 ** (a.attempt - 1)))
            a = replace(a, state="retrying", error=str(exc), next_attempt_at=t.now + wait)
        else:  # refused for good (a revoked key, a missing function): alerted now, not retried
            a = replace(a, state="dispatch_failed", error=str(exc), finished_at=t.now)
    if a.state == "dispatch_failed":
        _ended(t, a)
    else:
        try:
            runs.save(t.store, key, a, t.now)
        except DrkitError as exc:  # the claim says "claimed": a later tick looks the dispatch up by its ref
            log.error("dispatch not recorded; a later tick looks it up", job=s.name, error=str(exc))
        t.loaded.attempts[key] = a
        audit.record(t.store, FUNCTION, f"schedule.{a.state}",
                     {"job": s.name, "slot": a.slot.isoformat(), "attempt": a.attempt, "missed": a.missed,
                      "manual": a.manual, "activation_id": a.activation_id, "error": a.error}, now=t.now)
    if a.state == "dispatched":
        t.recover(f"schedule.skipped:{s.name}", s.name, f"slot {runs.slot_stamp(a.slot)} started")
    log.info("slot dispatched" if a.state == "dispatched" else "slot not dispatched", job=s.name,
             slot=a.slot.isoformat(), attempt=a.attempt, activation_id=a.activation_id, error=a.error)
    t.dispatched.append({"name": s.name, "state": a.state, "slot": a.slot.isoformat(), "missed": a.missed,
                         "attempt": a.attempt, "activation_id": a.activation_id, "error": a.error})


def overdue(t: Tick, first_tick: dt.datetime) -> None:
    """A job with no success within its window is alerted once (resolved by its next success)."""
    for slot in t.slots:
        if runs.overdue(slot, t.loaded.jobs.get(slot.name), first_tick, t.now):
            record = t.loaded.jobs.get(slot.name)
            success = record.success_at.isoformat() if record and record.success_at else None
            detail = (f"no success within {slot.within} (last success {success})" if success else
                      f"no success within {slot.within} of the scheduler's first tick")
            t.alert(f"schedule.overdue:{slot.name}", slot.name, detail)


def status(t: Tick, first_tick: dt.datetime, deferred: list[Any]) -> jobs.ScheduleStatus:
    latest_of = current(t.loaded)
    lines: list[dict[str, Any]] = []
    for slot in t.slots:
        record = t.loaded.jobs.get(slot.name) or JobRecord(slot.job, slot.subject)
        mine = sorted((a for a in latest_of.values() if a.name == slot.name), key=lambda a: (a.slot, a.attempt))
        latest = mine[-1] if mine else None
        state = latest.state if latest else "never_run"
        lines.append({"name": slot.name, "job": slot.job, "subject": slot.subject, "cron": slot.cron,
                      "last_slot": latest.slot.isoformat() if latest else None,
                      "activation_id": latest.activation_id if latest else None, "state": state,
                      "duration_ms": latest.duration_ms if latest else None,
                      "error": latest.error if latest and state != "succeeded" else None,
                      "last_success": record.success_at.isoformat() if record.success_at else None,
                      "failures_in_a_row": record.failures_in_a_row,
                      "overdue": runs.overdue(slot, record, first_tick, t.now),
                      "within_s": slot.within.total_seconds(), "next_run": slot.next(t.now).isoformat(),
                      **({"attempts": latest.attempt} if latest and latest.attempt > 1 else {})})
    started = [d for d in t.dispatched if d["state"] == "dispatched"]
    missed = sum(d.get("missed", 0) for d in started if d.get("attempt", 1) == 1)
    failing = [j["name"] for j in lines if j["state"] in runs.FAILED or j["overdue"]]
    waiting = [j["name"] for j in lines if j["state"] == "retrying"]
    decision = (f"dispatched {len(started)}" + (f" ({', '.join(d['name'] for d in started[:8])}"
                                               f"{', …' if len(started) > 8 else ''})" if started else "")
                + (f"; caught up {missed} missed slot(s) with one run each" if missed else "")
                + (f"; {len(deferred)} wait for the next tick" if deferred else "")
                + (f"; retrying: {', '.join(waiting)}" if waiting else "")
                + (f"; {len(t.loaded.problems)} record(s) not believed" if t.loaded.problems else "")
                + (f"; failing or overdue: {', '.join(failing)}" if failing else
                   "; every job on schedule" if not t.loaded.problems and not waiting else ""))
    return jobs.ScheduleStatus(t.now, first_tick, decision, tuple(lines), {"records": runs.cache_of(t.loaded)})
