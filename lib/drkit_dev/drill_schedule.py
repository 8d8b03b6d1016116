"""The drill's compressed day: the scheduler's ticks over 24 simulated hours, one injected failure, its alert.

The Functions API is the spec-checked stand-in (fakewhisk): dispatched activations complete at once
(db-backup and the others are exercised for real by the drill's other steps), except config-backup,
which fails, so the day shows a failure being found on the next tick and alerted once, through a
local webhook receiver.
"""

from __future__ import annotations

import datetime as dt
import json
import threading
import time
from collections import defaultdict
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from rich.table import Table

from drkit.core.deadline import Deadline
from drkit.functions import scheduler

from .fakewhisk import FakeWhisk

DAY = dt.datetime(2026, 11, 30, tzinfo=dt.UTC)  # a Monday: the weekly restore proof is due too
TICK = dt.timedelta(minutes=15)


class Receiver:
    """A webhook endpoint on 127.0.0.1 that keeps what it is sent."""

    def __init__(self) -> None:
        self.events: list[dict[str, Any]] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                receiver.events.append(json.loads(body or b"{}"))
                self.send_response(204)
                self.end_headers()

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/alerts"

    def stop(self) -> None:
        self.server.shutdown()


def _at(when: dt.datetime) -> Callable[[], dt.datetime]:
    return lambda: when


def compressed_day(drill: Any, env: dict[str, str]) -> None:
    t = time.monotonic()
    whisk = FakeWhisk().start()
    receiver = Receiver()
    policies = json.dumps([{"tag": "dr:snapshot", "schedule": "0 4 * * *", "retention": "keep_last=7"}])
    day_env = {**env, **whisk.env(), "DRKIT_SNAPSHOT_POLICIES": policies, "DRKIT_NOTIFY_WEBHOOK_URL": receiver.url,
               "DRKIT_SCHEDULE": json.dumps([{"job": "health-probe", "cron": "*/15 * * * *"}])}
    by_hour: dict[int, list[str]] = defaultdict(list)
    alerts = 0
    try:
        at = DAY - dt.timedelta(minutes=1)  # the deploy: each job's latest slot runs at once
        scheduler.run({}, day_env, Deadline(50), clock=_at(at))
        whisk.wait_idle()
        whisk.outcomes["config-backup"] = "failed"  # the one injected failure: tonight's config backup
        at = DAY
        while at < DAY + dt.timedelta(days=1):
            result = scheduler.run({}, day_env, Deadline(50), clock=_at(at))
            for d in result["dispatched"]:
                if d["state"] == "dispatched" and not d["name"].startswith("health-probe"):
                    by_hour[at.hour].append(f"{at:%H:%M} {d['name']}")
            alerts += int(result["alerts"])
            whisk.wait_idle()
            at += TICK
        counts = {action: len(whisk.invoked(action)) for action in
                  ("health-probe", "db-backup", "config-backup", "snapshot-rotate", "restore-verify", "report",
                   "backup-copy")}
        # then the live tick, at the real now: the scheduler is not silent when the report step reads its
        # heartbeat, and whatever fell due since the simulated day is dispatched (not counted above)
        whisk.outcomes.pop("config-backup", None)
        live = scheduler.run({}, day_env, Deadline(50))
        whisk.wait_idle()
    finally:
        whisk.stop()
        receiver.stop()
    table = Table(title="a compressed day of the scheduler (UTC; health-probe every 15 minutes not shown)")
    table.add_column("hour", justify="right")
    table.add_column("dispatched")
    for hour in sorted(by_hour):
        table.add_row(f"{hour:02d}", ", ".join(by_hour[hour]))
    drill.console.print(table)
    failed = [e for e in receiver.events if "config-backup" in json.dumps(e)]
    expected = {"health-probe": 97, "db-backup": 25, "config-backup": 2, "snapshot-rotate": 2, "restore-verify": 2,
                "report": 2, "backup-copy": 30}  # one after each backup slot, and 5 catch-ups (every 6 h)
    caught_up = sum(d["state"] == "dispatched" for d in live["dispatched"])
    ok = counts == expected and len(failed) == 1 and alerts == 1 and live["ok"] and not whisk.violations
    alert_text = failed[0].get("decision", "") if failed else "none"
    drill.facts["scheduler day"] = (f"{sum(counts.values())} activations from one trigger "
                                    f"({', '.join(f'{k} {v}' for k, v in counts.items())}, deploy tick included; "
                                    f"then a live tick caught up {caught_up} due job(s)); "
                                    f"injected config-backup failure alerted once: {alert_text}")
    drill.step("scheduler", ok, drill.facts["scheduler day"] if ok else
               f"UNEXPECTED: {counts} alerts={alerts} received={len(failed)} {whisk.violations[:2]}",
               time.monotonic() - t)
