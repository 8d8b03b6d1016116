"""What the scheduler remembers in the bucket: one signed record per dispatch attempt, one per job subject.

* `state/schedule/claims/<job>[/<subject>]/<slot>.json` (and `<slot>.a<n>.json` for the n-th attempt):
  an `Attempt`, created with a conditional write by the tick that claims it, so overlapping, late or
  duplicated ticks start each attempt once. It carries the claiming tick's owner token, so a tick whose
  write was stored but whose answer was lost knows the claim is its own. Only the claimer dispatches;
  later ticks read the activation record and write the outcome into the same record, so no tick ever
  overwrites another's dispatch, and every attempt is watched until it ended, even superseded ones.
* `state/schedule/runs/<job>[/<subject>].json`: a `JobRecord`, the subject's summary (newest slot
  claimed, last success with the run's own end time, failures in a row), derived from the attempts.
* Finished attempts older than `CLAIM_KEEP` are pruned, except each subject's newest one (it names the
  slot that ran last, which is all `due` needs; the audit events keep the history).
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass, replace
from typing import Any, ClassVar

from drkit.core.errors import DrkitError
from drkit.core.fields import Fields
from drkit.policy.schedule import Slot, stamp
from drkit.storage import records
from drkit.storage.records import Record
from drkit.storage.store import ObjectInfo, Store

CLAIMS = "state/schedule/claims/"
RUNS = "state/schedule/runs/"
CLAIM_KEEP = dt.timedelta(hours=2)
ACTIVE = ("dispatched", "uncertain")  # an outcome is still to be read
WAITING = ("claimed", "retrying")  # not started yet: the claimer (or, when it is late, any tick) dispatches
FAILED = ("failed", "timed_out", "lost", "dispatch_failed")
ENDED = ("succeeded", *FAILED, "skipped")
STATES = (*WAITING, *ACTIVE, *ENDED)
WRITERS = ("scheduler",)
KEY_RE = re.compile(r"^(?P<name>.+)/(?P<when>\d{8}T\d{4}Z(?:-manual-[0-9a-f]{6})?)(?:\.a(?P<n>\d{1,3}))?\.json$")


def _when(f: Fields, name: str) -> dt.datetime | None:
    t: dt.datetime | None = f.time(name, None, nullable=True)
    return t


@dataclass(frozen=True)
class Attempt(Record):
    TYPE: ClassVar[str] = "schedule-attempt"
    WRITERS: ClassVar[tuple[str, ...]] = WRITERS

    job: str
    subject: str
    slot: dt.datetime
    attempt: int
    owner: str  # the claiming tick's token (a lost answer to its own write is recognised)
    state: str
    claimed_at: dt.datetime
    manual: bool = False
    missed: int = 0
    dispatch_ref: str = ""  # passed to the function and echoed in its result: finds an uncertain dispatch
    dispatched_at: dt.datetime | None = None
    activation_id: str | None = None
    error: str | None = None
    next_attempt_at: dt.datetime | None = None
    finished_at: dt.datetime | None = None  # when the activation ended (its record's own time)
    duration_ms: int | None = None
    alerted: bool = False

    @property
    def name(self) -> str:
        return f"{self.job}/{self.subject}" if self.subject else self.job

    def to_json(self) -> dict[str, Any]:
        def t(v: dt.datetime | None) -> str | None:
            return v.isoformat() if v else None

        return {"job": self.job, "subject": self.subject, "slot": self.slot.isoformat(), "attempt": self.attempt,
                "owner": self.owner, "state": self.state, "claimed_at": self.claimed_at.isoformat(),
                "manual": self.manual, "missed": self.missed, "dispatch_ref": self.dispatch_ref,
                "dispatched_at": t(self.dispatched_at), "activation_id": self.activation_id, "error": self.error,
                "next_attempt_at": t(self.next_attempt_at), "finished_at": t(self.finished_at),
                "duration_ms": self.duration_ms, "alerted": self.alerted}

    @classmethod
    def from_fields(cls, f: Fields) -> Attempt:
        return cls(f.text("job", max_len=40), f.text("subject", max_len=120), f.time("slot"),
                   f.integer("attempt", lo=1, hi=999), f.text("owner", max_len=40), f.text("state", choices=STATES),
                   f.time("claimed_at"), f.flag("manual"), f.integer("missed", lo=0, hi=10**6),
                   f.text("dispatch_ref", max_len=120), _when(f, "dispatched_at"),
                   f.text("activation_id", None, nullable=True, max_len=120), f.text("error", None, nullable=True),
                   _when(f, "next_attempt_at"), _when(f, "finished_at"),
                   f.integer("duration_ms", None, lo=0, hi=10**9, nullable=True), f.flag("alerted"))


@dataclass(frozen=True)
class JobRecord(Record):
    """One job subject's summary: the newest scheduled slot claimed, the last success, failures in a row."""

    TYPE: ClassVar[str] = "schedule-job"
    WRITERS: ClassVar[tuple[str, ...]] = WRITERS

    job: str
    subject: str
    last_slot: dt.datetime | None = None
    success_slot: dt.datetime | None = None
    success_at: dt.datetime | None = None  # when that run ended (never when it was read)
    success_activation: str | None = None
    success_duration_ms: int | None = None
    failures_in_a_row: int = 0
    last_state: str = "never_run"
    last_error: str | None = None
    last_activation: str | None = None
    last_duration_ms: int | None = None
    last_attempt_slot: dt.datetime | None = None

    def to_json(self) -> dict[str, Any]:
        def t(v: dt.datetime | None) -> str | None:
            return v.isoformat() if v else None

        return {"job": self.job, "subject": self.subject, "last_slot": t(self.last_slot),
                "success_slot": t(self.success_slot), "success_at": t(self.success_at),
                "success_activation": self.success_activation, "success_duration_ms": self.success_duration_ms,
                "failures_in_a_row": self.failures_in_a_row, "last_state": self.last_state,
                "last_error": self.last_error, "last_activation": self.last_activation,
                "last_duration_ms": self.last_duration_ms, "last_attempt_slot": t(self.last_attempt_slot)}

    @classmethod
    def from_fields(cls, f: Fields) -> JobRecord:
        return cls(f.text("job", max_len=40), f.text("subject", max_len=120), _when(f, "last_slot"),
                   _when(f, "success_slot"), _when(f, "success_at"),
                   f.text("success_activation", None, nullable=True, max_len=120),
                   f.integer("success_duration_ms", None, lo=0, hi=10**9, nullable=True),
                   f.integer("failures_in_a_row", lo=0, hi=10**7),
                   f.text("last_state", choices=("never_run", *STATES)), f.text("last_error", None, nullable=True),
                   f.text("last_activation", None, nullable=True, max_len=120),
                   f.integer("last_duration_ms", None, lo=0, hi=10**9, nullable=True), _when(f, "last_attempt_slot"))

    def after(self, a: Attempt) -> JobRecord:
        """The summary once attempt `a` ended (a success resets the failures; an older success never
        replaces a newer one, whichever tick reads it first)."""
        out = replace(self, last_state=a.state, last_error=a.error, last_activation=a.activation_id,
                      last_duration_ms=a.duration_ms, last_attempt_slot=a.slot)
        if a.state == "succeeded":
            ended = a.finished_at or a.dispatched_at or a.claimed_at
            if self.success_at is None or ended >= self.success_at:
                out = replace(out, success_slot=a.slot, success_at=ended, success_activation=a.activation_id,
                              success_duration_ms=a.duration_ms)
            return replace(out, failures_in_a_row=0)
        if a.state in FAILED:
            return replace(out, failures_in_a_row=min(10**7, self.failures_in_a_row + 1))
        return out


def attempt_key(name: str, when: str, n: int = 1) -> str:
    return f"{CLAIMS}{name}/{when}{'' if n == 1 else f'.a{n}'}.json"


def slot_stamp(slot: dt.datetime | str) -> str:
    return slot if isinstance(slot, str) else stamp(slot)


def run_key(name: str) -> str:
    return f"{RUNS}{name}.json"


def parse_key(key: str) -> tuple[str, str, int] | None:
    """`state/schedule/claims/<name>/<when>[.a<n>].json` -> (name, when, n)."""
    if not key.startswith(CLAIMS):
        return None
    m = KEY_RE.match(key[len(CLAIMS):])
    return (m.group("name"), m.group("when"), int(m.group("n") or 1)) if m else None


@dataclass
class Loaded:
    """Every attempt record and job record, and what could not be believed (to alert on, never to follow)."""

    attempts: dict[str, Attempt]  # key -> attempt
    jobs: dict[str, JobRecord]  # name -> record
    problems: dict[str, str]  # key -> why it is not believed
    listed: dict[str, ObjectInfo]


def load(store: Store, now: dt.datetime, cache: dict[str, Any] | None = None) -> Loaded:
    """One LIST of claims and one of runs; records whose ETag is in `cache` (the last status) are not re-read."""
    known = cache or {}
    listed = {o.key: o for prefix in (CLAIMS, RUNS) for o in store.list_objects(prefix) if o.key.endswith(".json")}
    out = Loaded({}, {}, {}, listed)
    stale = []
    for key, obj in listed.items():
        hit = known.get(key)
        if isinstance(hit, dict) and obj.etag and hit.get("etag") == obj.etag and isinstance(hit.get("record"), dict):
            try:
                _keep(out, key, Fields(hit["record"], key))
                continue
            except (DrkitError, ValueError):
                pass
        stale.append(key)

    wanted: list[tuple[str, type[Record]]] = [(k, Attempt if k.startswith(CLAIMS) else JobRecord) for k in stale]
    for o in records.read_many(store, wanted, now):
        value = o.got.value if o.got else None
        if o.problem:
            out.problems[o.key] = o.problem
        elif isinstance(value, Attempt):
            if _placed(o.key, value):
                out.attempts[o.key] = value
            else:
                out.problems[o.key] = "a signed attempt copied under another slot's key"
        elif isinstance(value, JobRecord):
            out.jobs[o.key[len(RUNS):-len(".json")]] = value
    return out


def _placed(key: str, a: Attempt) -> bool:
    parsed = parse_key(key)
    return parsed is not None and parsed[0] == a.name and parsed[2] == a.attempt and \
        parsed[1].startswith(stamp(a.slot)) and ("-manual-" in parsed[1]) == a.manual


def _keep(out: Loaded, key: str, f: Fields) -> None:
    if key.startswith(CLAIMS):
        a = Attempt.from_fields(f)
        f.done()
        if _placed(key, a):
            out.attempts[key] = a
    else:
        j = JobRecord.from_fields(f)
        f.done()
        out.jobs[key[len(RUNS):-len(".json")]] = j


def cache_of(loaded: Loaded) -> dict[str, Any]:
    """What the next tick may take without reading again: each believed record by key and ETag."""
    out: dict[str, Any] = {}
    for key, a in loaded.attempts.items():
        if key in loaded.listed:
            out[key] = {"etag": loaded.listed[key].etag, "record": a.to_json()}
    for name, j in loaded.jobs.items():
        key = run_key(name)
        if key in loaded.listed:
            out[key] = {"etag": loaded.listed[key].etag, "record": j.to_json()}
    return out


def claim(store: Store, key: str, attempt: Attempt, now: dt.datetime) -> records.Claimed[Attempt]:
    """Create the attempt once; `ours` also when an earlier try of this very tick stored it (same owner)."""
    return records.claim(store, key, attempt, now, is_ours=lambda a: a.owner == attempt.owner)


def save(store: Store, key: str, attempt: Attempt, now: dt.datetime) -> Attempt:
    records.write(store, key, attempt, now)
    return attempt


def save_job(store: Store, record: JobRecord, now: dt.datetime) -> JobRecord:
    records.write(store, run_key(record.job if not record.subject else f"{record.job}/{record.subject}"), record, now)
    return record


def prune(store: Store, loaded: Loaded, now: dt.datetime) -> int:
    """Finished attempts older than CLAIM_KEEP, except each subject's newest (it says which slot ran last)."""
    newest: dict[str, str] = {}
    for key, a in loaded.attempts.items():
        if not a.manual and (a.name not in newest or loaded.attempts[newest[a.name]].slot < a.slot):
            newest[a.name] = key
    gone = 0
    for key, a in loaded.attempts.items():
        if a.state in ENDED and now - a.claimed_at > CLAIM_KEEP and key not in newest.values():
            store.delete(key)
            gone += 1
    return gone


def last_slot(slot: Slot, loaded: Loaded) -> dt.datetime | None:
    """The newest scheduled (not manual) slot of this subject that was claimed: from its job record, or
    from the attempts themselves (a job record that is missing or not believed never re-runs a slot)."""
    times = [a.slot for a in loaded.attempts.values() if a.name == slot.name and not a.manual]
    record = loaded.jobs.get(slot.name)
    if record is not None and record.last_slot is not None:
        times.append(record.last_slot)
    return max(times, default=None)


def overdue(slot: Slot, record: JobRecord | None, first_tick: dt.datetime, now: dt.datetime) -> bool:
    """No success within the job's window: since its last success, or since the scheduler first ran."""
    since = record.success_at if record and record.success_at else first_tick
    return now - since > slot.within
