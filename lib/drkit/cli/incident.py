"""`drkit incident record`: the post-incident record from the bucket's signed records, as markdown."""

from __future__ import annotations

import argparse
import datetime as dt
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from drkit.cli import common
from drkit.core.errors import ConfigError
from drkit.reporting import incident


def cmd_incident_record(args: argparse.Namespace, env: Mapping[str, str]) -> int:
    _, store = common.open_store(env, args)
    now = dt.datetime.now(dt.UTC)
    since = common.utc_time(args.since, "--since")
    until = common.utc_time(args.until, "--until") if args.until else now
    if until <= since:
        raise ConfigError("--until must be after --since")
    if until - since > dt.timedelta(days=31):
        raise ConfigError("the window is longer than 31 days: an incident record covers one incident")
    gathered = incident.gather(store, since, until, now)
    text = incident.render(gathered, since=since, until=until, scenario=args.scenario, title=args.title)
    if args.out:
        out = Path(args.out)
        fd = os.open(out, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(text)
        common.console().print(f"wrote {out}: {len(gathered.events)} events"
                               + (f", {len(gathered.not_believed)} not believed" if gathered.not_believed else ""))
    else:
        print(text)
    return 0


def register(root: Any) -> None:
    g = root.add_parser("incident", help="the post-incident record").add_subparsers(dest="command", required=True)
    c = g.add_parser("record", help="timeline, detection, time to recover against the RTO, data age against the RPO, "
                                    "who did what: markdown from the signed records")
    c.add_argument("--since", required=True, help="the window's start (UTC, e.g. 2026-12-08T03:00Z)")
    c.add_argument("--until", help="the window's end (default: now)")
    c.add_argument("--scenario", choices=sorted(incident.SCENARIOS), help="the DR plan's scenario: "
                   + "; ".join(f"{k} {v[0]} (RTO {v[1]})" for k, v in incident.SCENARIOS.items()))
    c.add_argument("--title", default="incident", help="a name for it (default: %(default)s)")
    c.add_argument("--out", help="write the markdown here (0600) instead of printing it")
    common.add_repo_args(c)
    c.set_defaults(fn=cmd_incident_record)
