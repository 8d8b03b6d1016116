"""`drkit droplet rebuild`: a droplet from its newest drkit snapshot (runbook: droplet lost)."""

from __future__ import annotations

import argparse
from collections.abc import Mapping

from drkit.cli.common import console, print_result
from drkit.platform import envvars, runtime


def _plan_domains(env: Mapping[str, str]) -> list[str]:
    """The failover plan's domains (signed; the operator's view), where records naming the old IP are moved."""
    if not (env.get("DRKIT_FAILOVER_PLAN", "").strip() or env.get("DRKIT_FAILOVER_PLAN_KEY", "").strip()):
        return []
    from drkit.cli.common import open_store
    from drkit.failover import service

    plan = service.plan_from_env(env, open_store(env)[1])
    return sorted({r.domain for r in plan.records})


def cmd_droplet_rebuild(args: argparse.Namespace, env: Mapping[str, str]) -> int:
    from drkit.functions import snapshot_rotate

    params = {"action": "rebuild", "droplet": args.droplet, "name": args.name or "", "region": args.region or "",
              "size": args.size or "", "reserved_ip": args.reserved_ip or "", "wait": not args.no_wait,
              "dry_run": args.dry_run, "snapshot": args.snapshot, "rebuild_id": args.rebuild_id or "",
              "record": ",".join(args.record or []), "domain": ",".join(_plan_domains(env)),
              "old_ip": args.old_ip or ""}
    with console().status("rebuilding ..."):
        result = runtime.handle("snapshot-rotate", snapshot_rotate.run, params, None, envvars.as_deployed("snapshot-rotate", env), default_deadline_s=600)
    return print_result(result, args.json)
