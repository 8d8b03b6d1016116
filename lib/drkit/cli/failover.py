"""`drkit failover status|dry-run|failover|failback|drill` and `plan push|show`: dns-failover from a laptop.

The actions run dns-failover's own operator path (`functions/dns_failover.run`: the same plan, the
same DR-site health check, hold time and exactly-once transition, the same audit events), with the
operator's environment; the plan in the bucket is believed only with a trusted signature."""

from __future__ import annotations

import argparse
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from drkit.cli import common
from drkit.core.errors import ConfigError
from drkit.failover import plans
from drkit.storage import audit, signed


def cmd_plan_push(args: argparse.Namespace, env: Mapping[str, str]) -> int:
    text = Path(args.file).read_text()
    plan = plans.parse_plan(text, args.file)  # every problem at once, before anything is written
    source = dict(env)
    if args.signing_key:
        source["DRKIT_SIGNING_KEY_OPERATOR"] = Path(args.signing_key).read_text()
    key = args.key or env.get("DRKIT_FAILOVER_PLAN_KEY", "").strip()
    if not key:
        raise ConfigError("say where the plan goes: --key, or DRKIT_FAILOVER_PLAN_KEY (what dns-failover reads)")
    _, store = common.open_store(source, args)
    if store.identity.signer is None:
        raise ConfigError("the failover plan is signed by the operator: --signing-key FILE, or "
                          "DRKIT_SIGNING_KEY_OPERATOR in the .env (drkit keygen --signing --for operator)")
    current = _current_version(store, key)
    if plan.version == 0:  # the file names none: one more than the plan it replaces
        doc = json.loads(text)
        doc["version"] = current + 1
        text = json.dumps(doc, indent=2) + "\n"
        plan = plans.parse_plan(text, args.file)
    elif plan.version <= current:
        raise ConfigError(f"{args.file}: version {plan.version} is not newer than the plan in the bucket (version "
                          f"{current}); dns-failover refuses an older plan. Raise it, or leave it out")
    signed.put_bytes(store, key, text.encode())
    audit.record(store, "cli", "failover.plan.pushed", {"key": key, "sites": list(plan.sites),
                                                         "records": len(plan.records)})
    print(f"signed and stored the failover plan at {key}, version {plan.version} ({len(plan.records)} records, sites "
          f"{', '.join(plan.sites)}); "
          "dns-failover verifies it against DRKIT_TRUSTED_KEYS on its next call")
    return 0


def _current_version(store: Any, key: str) -> int:
    """The version of the plan now in the bucket (0: none, or none the operator signed)."""
    from drkit.core.errors import DrkitError

    if store.head(key) is None:
        return 0
    try:
        return plans.parse_plan(signed.get_bytes(store, key, plans.WRITERS, "the failover plan").decode(), key).version
    except DrkitError:
        return 0


def cmd_plan_show(args: argparse.Namespace, env: Mapping[str, str]) -> int:
    key = args.key or env.get("DRKIT_FAILOVER_PLAN_KEY", "").strip()
    if not key:
        raise ConfigError("say which plan: --key, or DRKIT_FAILOVER_PLAN_KEY")
    _, store = common.open_store(env, args)
    data = signed.get_bytes(store, key, plans.WRITERS, f"the failover plan {key}")
    print(json.dumps(json.loads(data), indent=2))
    return 0


ACTIONS = {"status": "where traffic is, and whether DNS, reserved IPs and apps match it",
           "dry-run": "what a failover would change, changing nothing",
           "drill": "a rehearsal: every check and the planned changes, nothing changed (recorded as a drill)",
           "failover": "move traffic to the DR site (checks its health first; asks unless --yes)",
           "failback": "move traffic back to the primary site (asks unless --yes)"}


def cmd_action(args: argparse.Namespace, env: Mapping[str, str]) -> int:
    from drkit.functions import dns_failover
    from drkit.platform import envvars, runtime

    action = "failover" if args.command == "dry-run" else args.command
    params: dict[str, Any] = {"action": action, "dry_run": args.command == "dry-run"}
    for name in ("site", "reason"):
        if getattr(args, name, None):
            params[name] = getattr(args, name)
    if getattr(args, "force", False):
        params["force"] = True
    if action in ("failover", "failback") and not params["dry_run"] and not args.yes:
        try:
            answer = input(f"{action} moves production traffic now ({args.reason or 'no reason given'}). "
                           f"Type {action} to go on: ")
        except EOFError:
            answer = ""  # no terminal to ask: the refusal below says --yes
        if answer.strip() != action:
            print("nothing changed (not confirmed; pass --yes when there is no one to ask)")
            return 1
    result = runtime.handle("dns-failover", dns_failover.run, params, None, envvars.as_deployed("dns-failover", env), default_deadline_s=None)
    code = common.print_result(result, args.json)
    if not args.json:
        for change in result.get("changes", []):
            state = (f"NOT applied: {change['error']}" if change.get("error") else
                     "applied" if change.get("applied") else "planned")
            print(f"  {change.get('kind')} {change.get('target')}: {change.get('current')} -> {change.get('desired')} "
                  f"({state})")
    return code


def register(root: Any) -> None:
    g = root.add_parser("failover", help="where traffic is, fail over or back, and the plan dns-failover reads "
                                         "(docs/dns-failover.md)").add_subparsers(dest="command", required=True)
    for action, text in ACTIONS.items():
        c = g.add_parser(action, help=text)
        if action != "status":
            c.add_argument("--reason", default="", help="recorded in the state and the audit event")
            c.add_argument("--site", default="", help="the target site (default: dr for failover, primary for failback)")
        if action in ("failover", "failback"):
            c.add_argument("--force", action="store_true", help="move even if the target site's health check fails")
            c.add_argument("--yes", action="store_true", help="do not ask")
        c.add_argument("--json", action="store_true", help="print the full JSON result")
        c.set_defaults(fn=cmd_action)
    plan = g.add_parser("plan", help="push or show the failover plan").add_subparsers(dest="action", required=True)
    c = plan.add_parser("push", help="check, sign and upload a failover plan (JSON)")
    c.add_argument("file", help="the plan, JSON (docs/dns-failover.md)")
    c.add_argument("--key", help="bucket key (default: DRKIT_FAILOVER_PLAN_KEY)")
    c.add_argument("--signing-key", help="signing key file from `drkit keygen --signing` (default: DRKIT_SIGNING_KEY)")
    c.set_defaults(fn=cmd_plan_push)
    c = plan.add_parser("show", help="print the plan in the bucket, if a trusted key signed it")
    c.add_argument("--key", help="bucket key (default: DRKIT_FAILOVER_PLAN_KEY)")
    c.set_defaults(fn=cmd_plan_show)
