"""`drkit copy run|status`: the off-site copy from a laptop: copy what is new now, or see how far behind it is."""

from __future__ import annotations

import argparse
import datetime as dt
import json
from collections.abc import Mapping
from typing import Any

from drkit.cli import common
from drkit.core.errors import ConfigError
from drkit.functions import backup_copy
from drkit.platform import envvars, runtime
from drkit.policy import layout
from drkit.storage import records
from drkit.storage.copies import CopyStatus


def cmd_copy_run(args: argparse.Namespace, env: Mapping[str, str]) -> int:
    """What dr/backup-copy runs, from this machine, signing as backup-copy (its key must be in the .env)."""
    mine = envvars.as_deployed(backup_copy.FUNCTION, env)
    if not mine.get("DRKIT_SIGNING_KEY", "").strip():
        raise ConfigError("drkit copy run signs what it records as backup-copy: set DRKIT_SIGNING_KEY_BACKUP_COPY "
                          "in the .env (drkit keygen --signing --for backup-copy)")
    params: dict[str, Any] = {"dry_run": args.dry_run}
    if args.db:
        params["database"] = ",".join(args.db)
    with common.console().status("copying to the off-site bucket (each object read back and checked) ..."):
        result = runtime.handle(backup_copy.FUNCTION, backup_copy.run, params, None, mine, default_deadline_s=None)
    if args.json or not result.get("ok"):
        code = common.print_result(result, args.json)
        for line in [] if args.json else (result.get("failures") or [])[:20]:
            common.console().print(f"  - {line}")
        return code
    con = common.console()
    con.print(f"[green]{result['decision']}[/green]")
    con.print(f"to {result['target']}: {result['immutability_detail']}")
    if result.get("throughput_mb_s"):
        con.print(f"{result['bytes'] / 1e6:.1f} MB in {result['seconds']:.1f} s ({result['throughput_mb_s']} MB/s)")
    _databases(con, result.get("databases") or [], dt.datetime.now(dt.UTC))
    return 0


def cmd_copy_status(args: argparse.Namespace, env: Mapping[str, str]) -> int:
    """backup-copy's last report, from the primary (or, with --from copy, from the copy itself)."""
    _, store = common.open_store(env, args)
    now = dt.datetime.now(dt.UTC)
    got = records.read(store, layout.COPY_STATUS_KEY, CopyStatus, now)  # not believed: RecordError, exit 1
    if got is None:
        raise ConfigError("no off-site copy status: dr/backup-copy has not run yet (`drkit copy run`, or "
                          "`doctl serverless functions invoke dr/backup-copy`)")
    s = got.value
    if args.json:
        print(json.dumps(s.to_json(), indent=2))
        return 0 if s.ok else 1
    con = common.console()
    colour = "green" if s.ok else "red"
    con.print(f"[{colour}]last copy {common.age(s.at, now)} ago[/] to {s.target} ({s.immutability}, kept "
              f"{s.lock_days} days): {s.decision}")
    _databases(con, [d.to_json() | {"lag_s": d.lag.total_seconds()} for d in s.databases], now)
    for line in s.failures[:20]:
        con.print(f"  - {line}")
    return 0 if s.ok else 1


def _databases(con: Any, rows: list[dict[str, Any]], now: dt.datetime) -> None:
    from rich.table import Table

    table = Table("database", "newest in the copy", "newest in the primary", "copies", "locked until", "lag")
    for d in rows:
        lag = float(d.get("lag_s") or 0)
        table.add_row(d["name"], d.get("newest_copied") or "none", d.get("newest_primary") or "none",
                      str(d.get("copies", 0)), (d.get("locked_until") or "not locked")[:16],
                      "[green]current[/]" if lag <= 0 else f"[yellow]{common.age(now - dt.timedelta(seconds=lag), now)}[/]")
    con.print(table)


def register(root: Any) -> None:
    g = root.add_parser("copy", help="the off-site copy (dr/backup-copy): run it now, or its status").add_subparsers(
        dest="command", required=True)
    c = g.add_parser("run", help="copy every new signed backup, archive, blob and catalog head to the copy bucket, "
                                 "verified and locked (what dr/backup-copy runs)")
    c.add_argument("--db", action="append", help="only this database's backups (repeatable; config and files always)")
    c.add_argument("--dry-run", action="store_true", help="say what would be copied; write nothing")
    c.add_argument("--json", action="store_true", help="print the full JSON result")
    c.set_defaults(fn=cmd_copy_run)
    c = g.add_parser("status", help="the copy's last run, immutability, and each database's lag behind the primary")
    c.add_argument("--json", action="store_true")
    common.add_repo_args(c)
    c.set_defaults(fn=cmd_copy_status)

