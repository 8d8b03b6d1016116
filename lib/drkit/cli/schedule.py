"""`drkit schedule status|run`: what the scheduler ran, when it runs next, and dispatching a job now."""

from __future__ import annotations

import argparse
import datetime as dt
import json
from collections.abc import Mapping
from typing import Any

from drkit.cli import common
from drkit.core.errors import ConfigError
from drkit.functions import scheduler
from drkit.platform import envvars, runtime
from drkit.policy.schedule import JOBS
from drkit.storage import jobs, records

STATE_COLOURS = {"succeeded": "green", "dispatched": "cyan", "uncertain": "yellow", "never_run": "dim"}


def cmd_schedule_status(args: argparse.Namespace, env: Mapping[str, str]) -> int:
    _, store = common.open_store(env)
    now = dt.datetime.now(dt.UTC)
    got = records.read(store, jobs.KEY, jobs.ScheduleStatus, now)  # not believed: RecordError, exit 1
    if got is None:
        raise ConfigError(f"no {jobs.KEY} in the bucket: the scheduler has not ticked yet (is dr/scheduler "
                          "deployed with its trigger? `doctl serverless activations list dr/scheduler`)")
    status = {k: v for k, v in got.value.to_json().items() if k != "cache"}
    if args.json:
        print(json.dumps(status, indent=2))
        return 0
    from rich.table import Table

    at = got.value.at
    con = common.console()
    silent = now - at > dt.timedelta(minutes=10)
    if silent:  # what that tick said ("every job on schedule") was true then, not now
        con.print(f"[red]the scheduler is silent: its last tick was {common.age(at, now)} ago[/red] "
                  f"({at:%Y-%m-%d %H:%M} UTC); nothing has been dispatched since, so every job below may be overdue. "
                  "Check its trigger: doctl serverless activations list dr/scheduler (runbook §1)")
        con.print(f"  at that tick: {status.get('decision')}", highlight=False)
    else:
        con.print(f"[green]last tick {common.age(at, now)} ago[/]: {status.get('decision')}")
    table = Table("job", "subject", "last slot", "activation", "result", "duration", "last success", "next run")
    bad = 0
    for job in status.get("jobs") or []:
        state = str(job.get("state"))
        failing = state in ("failed", "timed_out", "lost", "dispatch_failed") or job.get("overdue")
        bad += bool(failing)
        colour = "red" if failing else STATE_COLOURS.get(state, "white")
        result = state + (" (overdue)" if job.get("overdue") else "")
        duration = f"{job['duration_ms'] / 1000:.1f} s" if job.get("duration_ms") is not None else ""
        success = job.get("last_success")
        table.add_row(job["job"], job.get("subject") or "", _short(job.get("last_slot")),
                      (job.get("activation_id") or "")[:12], f"[{colour}]{result}[/]", duration,
                      common.age(dt.datetime.fromisoformat(success), now) + " ago" if success else "never",
                      _short(job.get("next_run")))
    con.print(table)
    for job in status.get("jobs") or []:
        if job.get("error") and job.get("state") != "succeeded":
            con.print(f"  {job['name']}: {job['error']}")
    return 1 if bad or silent else 0


def _short(iso: Any) -> str:
    return dt.datetime.fromisoformat(iso).strftime("%Y-%m-%d %H:%M") if iso else ""


def cmd_schedule_run(args: argparse.Namespace, env: Mapping[str, str]) -> int:
    params: dict[str, Any] = {"job": args.job, "dry_run": args.dry_run}
    if args.db:
        params["database"] = args.db
    if args.tag:
        params["tag"] = args.tag
    with common.console().status(f"dispatching {args.job} ..."):
        result = runtime.handle("scheduler", scheduler.run, params, None, envvars.as_deployed("scheduler", env), default_deadline_s=None)
    return common.print_result(result, args.json)


def register(root: Any) -> None:
    g = root.add_parser("schedule", help="the scheduler: what ran, what is next, run a job now").add_subparsers(
        dest="command", required=True)
    c = g.add_parser("status", help="every job: last slot, activation, result, duration, last success, next run "
                                    "(exit 1 when one is failing or overdue, or the scheduler is silent)")
    c.add_argument("--json", action="store_true", help="print status/schedule.json")
    c.set_defaults(fn=cmd_schedule_status)
    c = g.add_parser("run", help="dispatch a job now through the Functions API (needs DRKIT_FUNCTIONS_KEY, "
                                 "DRKIT_FUNCTIONS_API_HOST and DRKIT_FUNCTIONS_NAMESPACE)")
    c.add_argument("job", choices=list(JOBS))
    c.add_argument("--db", help="the database, for db-backup and restore-verify (default: every database)")
    c.add_argument("--tag", help="the snapshot policy's tag, for snapshot-rotate (default: every policy)")
    c.add_argument("--dry-run", action="store_true", help="say what would be dispatched")
    c.add_argument("--json", action="store_true", help="print the full JSON result")
    c.set_defaults(fn=cmd_schedule_run)
