"""`drkit failover plan push|show`: the failover plan in the bucket, signed (dns-failover believes no other)."""

from __future__ import annotations

import argparse
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from drkit.cli import common
from drkit.core.errors import ConfigError
from drkit.failover import plans
from drkit.platform.config import signing_key_from_env
from drkit.storage import audit, signed


def cmd_plan_push(args: argparse.Namespace, env: Mapping[str, str]) -> int:
    text = Path(args.file).read_text()
    plan = plans.parse_plan(text, args.file)  # every problem at once, before anything is written
    source = dict(env)
    if args.signing_key:
        source["DRKIT_SIGNING_KEY"] = Path(args.signing_key).read_text()
    problems: list[str] = []
    secret = signing_key_from_env(source, problems)
    if secret is None:
        raise ConfigError(problems)
    key = args.key or env.get("DRKIT_FAILOVER_PLAN_KEY", "").strip()
    if not key:
        raise ConfigError("say where the plan goes: --key, or DRKIT_FAILOVER_PLAN_KEY (what dns-failover reads)")
    _, store = common.open_store(env)
    signed.put_bytes(store, key, text.encode(), secret.reveal())
    audit.record(store, "cli", "failover.plan.pushed", {"key": key, "sites": list(plan.sites),
                                                         "records": len(plan.records)})
    print(f"signed and stored the failover plan at {key} ({len(plan.records)} records, sites {', '.join(plan.sites)}); "
          "dns-failover verifies it against DRKIT_TRUSTED_KEYS on its next call")
    return 0


def cmd_plan_show(args: argparse.Namespace, env: Mapping[str, str]) -> int:
    key = args.key or env.get("DRKIT_FAILOVER_PLAN_KEY", "").strip()
    if not key:
        raise ConfigError("say which plan: --key, or DRKIT_FAILOVER_PLAN_KEY")
    _, store = common.open_store(env)
    data = signed.get_bytes(store, key, common.trusted_keys_of(args, env), f"the failover plan {key}")
    print(json.dumps(json.loads(data), indent=2))
    return 0


def register(root: Any) -> None:
    g = root.add_parser("failover", help="the failover plan dns-failover reads (signed)").add_subparsers(
        dest="command", required=True)
    plan = g.add_parser("plan", help="push or show the failover plan").add_subparsers(dest="action", required=True)
    c = plan.add_parser("push", help="check, sign and upload a failover plan (JSON)")
    c.add_argument("file", help="the plan, JSON (docs/dns-failover.md)")
    c.add_argument("--key", help="bucket key (default: DRKIT_FAILOVER_PLAN_KEY)")
    c.add_argument("--signing-key", help="signing key file from `drkit keygen --signing` (default: DRKIT_SIGNING_KEY)")
    c.set_defaults(fn=cmd_plan_push)
    c = plan.add_parser("show", help="print the plan in the bucket, if a trusted key signed it")
    c.add_argument("--key", help="bucket key (default: DRKIT_FAILOVER_PLAN_KEY)")
    c.set_defaults(fn=cmd_plan_show)
