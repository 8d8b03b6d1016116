"""`drkit apps stop|start|redeploy`: App Platform apps around a database restore (runbook, scenario 1)."""

from __future__ import annotations

import argparse
from collections.abc import Mapping
from typing import Any

from drkit.cli import common
from drkit.core.deadline import Deadline


def cmd_apps(args: argparse.Namespace, env: Mapping[str, str]) -> int:
    from drkit.digitalocean.api import DoApi
    from drkit.failover import appcontrol

    _, store = common.open_store(env)
    api = DoApi.from_env(env, Deadline(None))
    con = common.console()
    for name in args.app:
        if args.command == "redeploy":
            done = appcontrol.redeploy(api, store, name, dry_run=args.dry_run)
        else:
            done = appcontrol.set_maintenance(api, store, name, args.command == "stop",
                                              offline_page_url=getattr(args, "offline_page_url", None),
                                              dry_run=args.dry_run)
        con.print(done["sentence"])
    return 0


def register(root: Any) -> None:
    g = root.add_parser("apps", help="App Platform apps around a restore: stop (maintenance mode), start, "
                                     "redeploy").add_subparsers(dest="command", required=True)
    for verb, text in (("stop", "maintenance mode: users see the maintenance page, nothing writes to the database"),
                       ("start", "maintenance mode off: the app serves again"),
                       ("redeploy", "a new deployment of the current spec (fresh connections, e.g. after a restore)")):
        c = g.add_parser(verb, help=text)
        c.add_argument("app", nargs="+", help="the app's name (its spec name) or id")
        c.add_argument("--dry-run", action="store_true", help="say what would change; change nothing")
        if verb == "stop":
            c.add_argument("--offline-page-url", help="an https page to show instead of App Platform's own")
        c.set_defaults(fn=cmd_apps)
