"""`drkit droplet rebuild`: a droplet from its newest drkit snapshot (runbook: droplet lost)."""

from __future__ import annotations

import argparse
from collections.abc import Mapping

from drkit.cli.common import console, print_result
from drkit.platform import envvars, runtime


def cmd_droplet_rebuild(args: argparse.Namespace, env: Mapping[str, str]) -> int:
    from drkit.functions import snapshot_rotate

    params = {"action": "rebuild", "droplet": args.droplet, "name": args.name or "", "region": args.region or "",
              "size": args.size or "", "reserved_ip": args.reserved_ip or "", "wait": not args.no_wait,
              "dry_run": args.dry_run}
    with console().status("rebuilding ..."):
        result = runtime.handle("snapshot-rotate", snapshot_rotate.run, params, None, envvars.as_deployed("snapshot-rotate", env), default_deadline_s=600)
    return print_result(result, args.json)
