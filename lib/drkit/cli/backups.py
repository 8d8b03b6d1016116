"""`drkit backup`, `backups list|show|pin`, `restore`, `swap-back`, `retention plan`: database backups for operators."""

from __future__ import annotations

import argparse
import datetime as dt
import json
import sys
from collections.abc import Mapping
from typing import Any

from drkit.cli.common import age, console, load_identities, open_store, print_result, size, trusted_keys_of
from drkit.core import suggest
from drkit.core.errors import ConfigError
from drkit.functions import db_backup
from drkit.platform import runtime
from drkit.platform.config import Config
from drkit.policy import layout
from drkit.storage import audit, catalog
from drkit.storage.store import Store


def cmd_backup(args: argparse.Namespace, env: Mapping[str, str]) -> int:
    params: dict[str, Any] = {"dry_run": args.dry_run, "prune": not args.no_prune}
    if args.db:
        params["database"] = ",".join(args.db)
    with console().status("backing up ..."):
        result = runtime.handle("db-backup", db_backup.run, params, None, env, default_deadline_s=None)
    return print_result(result, args.json)


def cmd_backups_list(args: argparse.Namespace, env: Mapping[str, str]) -> int:
    from rich.table import Table

    _, store = open_store(env)
    names = args.db or catalog.list_databases(store)
    now = dt.datetime.now(dt.UTC)
    rows = [e for name in names for e in catalog.list_backups(store, name)[:args.limit]]
    if args.json:
        print(json.dumps([e.summary() for e in rows], indent=2))
        return 0
    table = Table("database", "backup id", "taken (UTC)", "age", "size", "state", "verified", "pinned")
    for e in rows:
        state = "ok" if e.complete else ("ORPHAN (no manifest)" if e.orphan else "BROKEN (no data)")
        table.add_row(e.database, e.id, e.time.strftime("%Y-%m-%d %H:%M"), age(e.time, now), size(e.size),
                      state, "yes" if e.verified else "", "pinned" if e.pinned else "")
    con = console()
    con.print(table)
    con.print(f"{len(rows)} backups of {len(names)} database(s); `drkit backups show ID --db NAME` for details")
    return 0


def cmd_backups_show(args: argparse.Namespace, env: Mapping[str, str]) -> int:
    from rich.table import Table

    _, store = open_store(env)
    entry = catalog.find(store, args.backup, args.db)
    manifest = catalog.read_manifest(store, entry, trusted_keys_of(args, env))
    if args.json:
        print(json.dumps(manifest, indent=2))
        return 0
    con = console()
    src = manifest.get("source", {})
    con.print(f"[bold]{entry.database} {entry.id}[/bold]  {entry.data_key}")
    con.print(f"  taken {manifest['started_at']} in {manifest['duration_s']} s; PostgreSQL {src.get('server_version')} "
              f"({src.get('display')}); pg_dump {manifest['dump']['tool_version']}, snapshot {manifest['dump']['snapshot']}")
    con.print(f"  dump {size(manifest['bytes_in'])} -> stored {size(manifest['bytes_out'])} "
              f"(zstd {manifest['compression']['level']}, age to {len(manifest['encryption']['recipients'])} recipient(s))")
    con.print(f"  sha256 {manifest['sha256']}; verified: {'yes' if entry.verified else 'no'}; "
              f"pinned: {'yes' if entry.pinned else 'no'}")
    how = manifest["restore"].get("without_drkit") or manifest["restore"].get("pipeline")
    con.print("  signature: valid, by a trusted key (DRKIT_TRUSTED_KEYS)")
    con.print(f"  restore with standard tools: {how}")
    objects = manifest.get("objects") or {}
    if "counts" in objects:
        c = objects["counts"]
        custom = [r["name"] for r in objects.get("roles", []) if not r.get("platform") and not r.get("superuser")]
        con.print(f"  objects: {c['policies']} policies on {c['rls_tables']} RLS tables, {c['triggers']} triggers, "
                  f"{c['event_triggers']} event triggers, {c['publication_members']} publication members; extensions "
                  f"{', '.join(e['name'] for e in objects.get('extensions', [])) or '-'}; roles "
                  f"{', '.join(custom) or '-'}" + ("; a Supabase project's database" if objects.get("supabase") else ""))
    for line in objects.get("not_in_dump") or []:
        con.print(f"  cannot carry: {line}")
    table = Table("schema", "table", "kind", "estimated rows", "exact rows")
    for t in manifest.get("tables", [])[: args.tables]:
        table.add_row(t["schema"], t["name"], t["kind"], str(t["estimated_rows"] if t["estimated_rows"] is not None else "-"),
                      str(t["exact_rows"] if t["exact_rows"] is not None else "-"))
    con.print(table)
    more = len(manifest.get("tables", [])) - args.tables
    if more > 0:
        con.print(f"  … {more} more tables (--tables N, or --json)")
    return 0


def cmd_backups_pin(args: argparse.Namespace, env: Mapping[str, str]) -> int:
    _, store = open_store(env)
    entry = catalog.find(store, args.backup, args.db)
    key = layout.marker_key(entry.database, entry.id, layout.PINNED_SUFFIX)
    if args.command == "pin":
        store.put_bytes(key, json.dumps({"reason": args.reason, "by": audit.actor()}).encode(), "application/json")
    else:
        store.delete(key)
    audit.record(store, "cli", f"backup.{args.command}ned", {"database": entry.database, "backup_id": entry.id,
                                                               "reason": args.reason})
    print(f"{entry.database} {entry.id} {'pinned: retention will never delete it' if args.command == 'pin' else 'unpinned'}")
    return 0


def cmd_restore(args: argparse.Namespace, env: Mapping[str, str]) -> int:
    from rich.progress import BarColumn, DownloadColumn, Progress, TimeRemainingColumn, TransferSpeedColumn

    from drkit.postgres import operator_restore

    _, store = open_store(env)
    identities = load_identities(args, env)
    plan = operator_restore.make_plan(store, args.db, args.backup, args.before, args.target,
                                      download_to=args.download_to, jobs=args.jobs, force=args.force,
                                      no_privileges=args.no_privileges, trusted=trusted_keys_of(args, env))
    con = console()
    con.print("[bold]restore plan[/bold]")
    for line in plan.lines():
        con.print("  " + line)
    if args.dry_run:
        con.print("dry run: nothing was changed")
        return 0
    ask = (lambda prompt: con.input(prompt)) if sys.stdin.isatty() else None
    operator_restore.guard(plan, force=args.force, yes_i_know=args.yes_i_know, ask=ask)
    with Progress("[progress.description]{task.description}", BarColumn(), DownloadColumn(), TransferSpeedColumn(),
                  TimeRemainingColumn(), console=con, transient=False) as bar:
        task = bar.add_task("restoring", total=plan.manifest["bytes_out"])
        detail = operator_restore.execute(store, plan, identities, progress=lambda n: bar.advance(task, n))
    con.print(f"[green]restored[/green] {detail['database']} {detail['backup_id']} into {detail['target']} in "
              f"{detail['duration_s']:.1f} s ({detail['strategy']}{', jobs ' + str(detail['jobs']) if 'jobs' in detail else ''})")
    for check in detail["checks"]:
        con.print(f"  {'PASS' if check['passed'] else 'FAIL'} {check['name']}: {check['detail']}")
    if detail.get("kept"):
        con.print(f"the previous database is kept as [bold]{detail['kept']}[/bold]. To go back: "
                  f"./scripts/drkit swap-back --target URL --kept {detail['kept']}; when sure: DROP DATABASE "
                  f"\"{detail['kept']}\"")
    if args.download_to:
        con.print(f"{args.download_to} holds the database in plaintext (mode 0600): delete it when done")
    else:
        con.print("for large databases: --download-to PATH --jobs N restores in parallel from a verified local copy")
    return 0


def cmd_swap_back(args: argparse.Namespace, env: Mapping[str, str]) -> int:
    from drkit.postgres import operator_restore

    _, store = open_store(env)
    detail = operator_restore.swap_back(store, args.target, args.kept)
    console().print(f"[green]swapped back[/green]: {detail['restored_from']} is {detail['target']} again; the "
                     f"restored database is kept as {detail['kept']}")
    return 0


def cmd_retention_plan(args: argparse.Namespace, env: Mapping[str, str]) -> int:
    from rich.table import Table

    cfg = Config.from_env(env)
    store = Store(cfg.spaces)
    names = args.db or list(cfg.databases)
    now = dt.datetime.now(dt.UTC)
    con = console()
    for name in names:
        if name not in cfg.databases:
            raise ConfigError(suggest.unknown("database", [name], list(cfg.databases)))
        result = db_backup.prune(cfg.databases[name], store, None, now, dry_run=True)
        table = Table("backup id", "age", "verdict", "why", title=f"{name}: {result['policy']}")
        for d in result["plan"]:
            t = dt.datetime.fromisoformat(d["time"])
            color = {"delete": "red", "protected": "yellow", "pinned": "cyan"}.get(d["verdict"], "green")
            table.add_row(d["id"], age(t, now), f"[{color}]{d['verdict']}[/{color}]", ", ".join(d["reasons"]))
        con.print(table)
        con.print(result["summary"])
    return 0
