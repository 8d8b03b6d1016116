"""The DR testing schedule from evidence (pure): each test's last run, result and next due date, from the records.

The plan's tests and how each is proven:
- restore proof, weekly, per database: restore-verify's last run (its state records: of the primary or of
  the off-site copy, whichever ran last);
- failover rehearsal, quarterly: a `failover.drill` (every check, nothing changed) or a real move;
- full DR drill, yearly: an operator restore (`drkit restore`, `restore.completed`) and a failover
  rehearsal or move within 7 days of each other.
Nothing here is typed in by hand: a test that left no record was not performed.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from typing import Any

from drkit.policy.durations import human

WEEKLY, QUARTERLY, YEARLY = dt.timedelta(days=7), dt.timedelta(days=92), dt.timedelta(days=365)
DRILL_SPAN = dt.timedelta(days=7)  # a drill's restore and failover rehearsal happen within a week


def _row(test: str, every: dt.timedelta, every_text: str, last: dt.datetime | None, result: str, evidence: str,
         now: dt.datetime) -> dict[str, Any]:
    due = last + every if last else None
    return {"test": test, "every": every_text, "last": last.isoformat() if last else None, "result": result,
            "evidence": evidence, "next_due": due.isoformat() if due else None,
            "overdue": due is None or now > due, "failed": result not in ("passed", "applied", "never")}


def _t(event: Mapping[str, Any]) -> dt.datetime:
    return dt.datetime.fromisoformat(str(event["at"]))


def schedule(databases: Sequence[Mapping[str, Any]], test_events: Sequence[Mapping[str, Any]],
             now: dt.datetime) -> list[dict[str, Any]]:
    rows = []
    for db in databases:
        runs = [(db.get(k) or {}).get("last_run") or {} for k in ("verify_state", "copy_verify_state")]
        last = max(runs, key=lambda r: str(r.get("at") or ""))  # the proof alternates with the off-site copy
        at = dt.datetime.fromisoformat(last["at"]) if last.get("at") else None
        took = f", restore {human(float(last['duration_s']))}" if isinstance(last.get("duration_s"), (int, float)) else ""
        rows.append(_row(f"Restore proof: {db['name']}", WEEKLY, "weekly", at, str(last.get("status") or "never"),
                         f"restore-verify of {last.get('backup_id')}{took}" if at else "no verification on record",
                         now))
    rehearsals = [e for e in test_events if e["action"] in ("failover.drill", "failover.applied")]
    newest = rehearsals[-1] if rehearsals else None
    details = (newest or {}).get("details") or {}
    rows.append(_row("Failover rehearsal", QUARTERLY, "quarterly", _t(newest) if newest else None,
                     ("passed" if newest["action"] == "failover.drill" and details.get("outcome") == "dry_run"
                      else str(details.get("outcome") or "unknown")) if newest else "never",
                     f"{newest['action']} by {details.get('who') or newest['function']}: "
                     f"{str(details.get('sentence') or '')[:160]}" if newest else "no failover drill on record", now))
    restores = [e for e in test_events if e["action"] == "restore.completed"]
    drill: tuple[dt.datetime, str] | None = None
    for r in restores:
        near = [f for f in rehearsals if abs(_t(f) - _t(r)) <= DRILL_SPAN]
        if near:
            at = max(_t(r), *(_t(f) for f in near))
            if drill is None or at > drill[0]:
                what = (r.get("details") or {}).get("database") or "?"
                drill = (at, f"restore of {what} on {_t(r):%Y-%m-%d} and {near[-1]['action']} on {_t(near[-1]):%Y-%m-%d}")
    rows.append(_row("Full DR drill", YEARLY, "yearly", drill[0] if drill else None, "passed" if drill else "never",
                     drill[1] if drill else "no operator restore and failover rehearsal within a week on record",
                     now))
    return rows
