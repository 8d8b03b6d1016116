"""What the scheduler remembers in the bucket: one claim per slot, one run record per job subject.

* `state/schedule/claims/<job>[/<subject>]/<slot>.json`: created with a conditional write before a
  slot is dispatched, so overlapping, late or duplicated ticks dispatch it once (where the store
  ignores conditional writes, drkit falls back to HEAD-then-PUT: racy, and the jobs are safe to run
  twice). Claims older than two days are pruned when their subject next runs.
* `state/schedule/runs/<job>[/<subject>].json`: the newest dispatch (slot, activation id, state),
  the last success, failures in a row and whether the failure was alerted. The tick reads them all
  from one LIST, re-reading only objects whose ETag changed since the last summary.
* `status/schedule.json`: the summary an operator and health-probe read (written last, each tick).
"""

from __future__ import annotations

import datetime as dt
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from drkit.policy.schedule import Slot, stamp
from drkit.storage.store import Store

CLAIMS = "state/schedule/claims/"
RUNS = "state/schedule/runs/"
STATUS_KEY = "status/schedule.json"
CLAIM_KEEP = dt.timedelta(days=2)
ACTIVE = ("dispatched", "uncertain")  # an outcome is still to be read
FAILED = ("failed", "timed_out", "lost", "dispatch_failed")


def claim_key(slot: Slot, when: dt.datetime | str) -> str:
    return f"{CLAIMS}{slot.name}/{when if isinstance(when, str) else stamp(when)}.json"


def run_key(name: str) -> str:
    return f"{RUNS}{name}.json"


def claim(store: Store, slot: Slot, when: dt.datetime | str, by: dict[str, Any]) -> bool:
    """True if this call owns the slot (nobody dispatched it before)."""
    return store.put_if_absent(claim_key(slot, when), by)


def prune_claims(store: Store, slot: Slot, now: dt.datetime) -> int:
    """Delete this subject's claims older than CLAIM_KEEP (bounded: one LIST of one subject)."""
    prefix = f"{CLAIMS}{slot.name}/"
    old = [o.key for o in store.list_objects(prefix) if o.last_modified < now - CLAIM_KEEP]
    for key in old:
        store.delete(key)
    return len(old)


def load(store: Store, previous: dict[str, Any] | None) -> dict[str, dict[str, Any]]:
    """Every run record by name; unchanged ones (same ETag as in the previous summary) are not re-read."""
    known = {name: r for name, r in ((previous or {}).get("runs") or {}).items() if isinstance(r, dict)}
    listed = {o.key[len(RUNS):-len(".json")]: o.etag for o in store.list_objects(RUNS) if o.key.endswith(".json")}
    out: dict[str, dict[str, Any]] = {}
    stale = []
    for name, etag in listed.items():
        if etag and known.get(name, {}).get("_etag") == etag:
            out[name] = known[name]
        else:
            stale.append((name, etag))

    def read(item: tuple[str, str]) -> tuple[str, dict[str, Any] | None]:
        return item[0], store.get_json_or_none(run_key(item[0]))

    with ThreadPoolExecutor(max_workers=16) as pool:
        for (name, record), (_, etag) in zip(pool.map(read, stale), stale, strict=True):
            if isinstance(record, dict):
                out[name] = {**record, "_etag": etag}
    return out


def save(store: Store, name: str, record: dict[str, Any]) -> dict[str, Any]:
    clean = {k: v for k, v in record.items() if not k.startswith("_")}
    store.put_json(run_key(name), clean)
    return clean  # no ETag: re-read on the next tick


def finished(record: dict[str, Any], state: str, error: str | None, duration_ms: int | None,
             now: dt.datetime) -> dict[str, Any]:
    """The record after its activation ended (success resets the failure count and the alert)."""
    out = {**record, "state": state, "error": error, "duration_ms": duration_ms, "finished_at": now.isoformat()}
    if state == "succeeded":
        out.update(failures_in_a_row=0, alerted=False, overdue_alerted=False,
                   last_success={"slot": record.get("slot"), "at": now.isoformat(), "duration_ms": duration_ms,
                                 "activation_id": record.get("activation_id")})
    else:
        out["failures_in_a_row"] = int(record.get("failures_in_a_row", 0)) + 1
    return out


def overdue(slot: Slot, record: dict[str, Any] | None, first_tick: dt.datetime, now: dt.datetime) -> bool:
    """No success within the job's window: since its last success, or since the scheduler first ran."""
    success = ((record or {}).get("last_success") or {}).get("at")
    since = dt.datetime.fromisoformat(success) if success else first_tick
    return now - since > slot.within
