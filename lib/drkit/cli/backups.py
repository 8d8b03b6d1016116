"""`drkit backup`, `backups list|show|pin`, `restore`, `swap-back`, `retention plan`: database backups for operators."""

from __future__ import annotations

import argparse
import datetime as dt
import json
import sys
from collections.abc import Mapping
from typing import Any

from drkit.backup import retention
from drkit.cli.common import age, console, load_identities, open_store, print_result, size
from drkit.core import suggest
from drkit.core.errors import ConfigError
from drkit.functions import db_backup
from drkit.platform import envvars, runtime
from drkit.platform.config import Config
from drkit.policy import layout
from drkit.storage import audit, catalog, markers, records


def cmd_backup(args: argparse.Namespace, env: Mapping[str, str]) -> int:
    params: dict[str, Any] = {"dry_run": args.dry_run, "prune": not args.no_prune}
    if args.db:
        params["database"] = ",".join(args.db)
    with console().status("backing up ..."):
        result = runtime.handle("db-backup", db_backup.run, params, None, envvars.as_deployed("db-backup", env),
                                default_deadline_s=None)
    return print_result(result, args.json)


def known_databases(store: Any, env: Mapping[str, str], names: list[str] | str | None) -> None:
    """Refuse a database name that is neither configured nor in the bucket (a typo would list nothing)."""
    wanted = [names] if isinstance(names, str) else list(names or [])
    if not wanted:
        return
    configured = [d for d in str(env.get("DRKIT_DATABASES", "")).replace(",", " ").split() if d]
    known = sorted({*configured, *catalog.list_databases(store)})
    unknown = [n for n in wanted if n not in known]
    if unknown:
        raise ConfigError(suggest.unknown("database", unknown, known) + " (DRKIT_DATABASES and the bucket's db/)")


def cmd_backups_list(args: argparse.Namespace, env: Mapping[str, str]) -> int:
    from rich.table import Table

    _, store = open_store(env, args)
    known_databases(store, env, args.db)
    names = args.db or catalog.list_databases(store)
    now = dt.datetime.now(dt.UTC)
    rows: list[dict[str, Any]] = []
    for name in names:
        entries = catalog.list_backups(store, name)
        v = catalog.trusted_view(store, name, now)
        marks = markers.read_markers(store, v.trusted, now)
        untrusted = dict((e.id, why) for e, why in v.untrusted)
        trusted = v.trusted_ids()
        for e in entries[:args.limit]:
            state = ("ok" if e.id in trusted else f"UNTRUSTED ({untrusted[e.id][:60]})" if e.id in untrusted
                     else "deleting (retention finishes it)" if e.complete
                     else "ORPHAN (no manifest)" if e.orphan else "BROKEN (no data)")
            rows.append(e.summary() | {"state": state, "verified": e.id in marks.verified, "pinned": e.id in marks.pinned})
        rows += [{"database": name, "id": x.id, "time": layout.id_time(x.id).isoformat(), "size": 0, "complete": False,
                  "state": f"MISSING (seq {x.seq}: in db-backup's catalog, not in the bucket)", "verified": False,
                  "pinned": False} for x in v.missing]
    rows.sort(key=lambda r: (r["database"], r["id"]), reverse=True)
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    table = Table("database", "backup id", "taken (UTC)", "age", "size", "state", "verified", "pinned")
    for r in rows:
        t = dt.datetime.fromisoformat(r["time"])
        table.add_row(r["database"], r["id"], t.strftime("%Y-%m-%d %H:%M"), age(t, now), size(r["size"]), r["state"],
                      "yes" if r["verified"] else "", "pinned" if r["pinned"] else "")
    con = console()
    con.print(table)
    con.print(f"{len(rows)} backups of {len(names)} database(s); `drkit backups show ID --db NAME` for details")
    if any(r["state"].startswith(("UNTRUSTED", "MISSING")) for r in rows):
        con.print("[red]UNTRUSTED entries were not written by db-backup (drkit never restores or counts them; "
                  "`drkit backups untrusted --db NAME --delete` removes them); MISSING ones were deleted behind "
                  "drkit's back: restore from the off-site copy, and find out who holds the bucket key[/red]")
    return 0


def cmd_backups_show(args: argparse.Namespace, env: Mapping[str, str]) -> int:
    from rich.table import Table

    _, store = open_store(env, args)
    known_databases(store, env, args.db)
    entry = catalog.find(store, args.backup, args.db, accept_rollback=True)
    manifest = catalog.read_manifest(store, entry)
    marks = markers.read_markers(store, [entry], dt.datetime.now(dt.UTC))
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
    con.print(f"  sha256 {manifest['sha256']}; verified: {'yes' if entry.id in marks.verified else 'no'}; "
              f"pinned: {'yes' if entry.id in marks.pinned else 'no'}"
              + (f"; catalog seq {manifest['chain']['seq']}" if isinstance(manifest.get("chain"), dict) else ""))
    how = manifest["restore"].get("without_drkit") or manifest["restore"].get("pipeline")
    con.print("  signature: valid, by db-backup's key (DRKIT_TRUSTED_KEYS)")
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
    _, store = open_store(env, args)
    if store.identity.signer is None:
        raise ConfigError("pinning is signed by the operator: set DRKIT_SIGNING_KEY_OPERATOR in the .env "
                          "(drkit keygen --signing --for operator), and its public key as operator=RW… in "
                          "DRKIT_TRUSTED_KEYS")
    known_databases(store, env, args.db)
    entry = catalog.find(store, args.backup, args.db, accept_rollback=True)
    key = layout.marker_key(entry.database, entry.id, layout.PINNED_SUFFIX)
    if args.command == "pin":
        records.write(store, key, markers.PinMarker(entry.id, args.reason, audit.actor()), dt.datetime.now(dt.UTC))
    else:
        store.delete(key)
    audit.record(store, "cli", f"backup.{args.command}ned", {"database": entry.database, "backup_id": entry.id,
                                                               "reason": args.reason})
    print(f"{entry.database} {entry.id} {'pinned: retention will never delete it' if args.command == 'pin' else 'unpinned'}")
    return 0


def cmd_restore(args: argparse.Namespace, env: Mapping[str, str]) -> int:
    from rich.progress import BarColumn, DownloadColumn, Progress, TimeRemainingColumn, TransferSpeedColumn

    from drkit.postgres import operator_restore

    _, store = open_store(env, args)
    known_databases(store, env, args.db)
    if args.jobs is not None and not args.download_to:
        raise ConfigError("--jobs runs pg_restore in parallel from a local copy: add --download-to PATH (a streamed "
                          "restore is one job). Nothing was changed.")
    identities = load_identities(args, env)
    plan = operator_restore.make_plan(store, args.db, args.backup, args.before, args.target,
                                      download_to=args.download_to, jobs=args.jobs or 4, force=args.force,
                                      no_privileges=args.no_privileges, accept_rollback=args.accept_rollback,
                                      keep_jobs=args.keep_jobs)
    con = console()
    con.print("[bold]restore plan[/bold]")
    for line in plan.lines():
        con.print("  " + line)
    if not _identity_opens(store, plan.entry, identities):
        where = f"--identity {args.identity}" if args.identity else "DRKIT_AGE_IDENTITY"
        raise ConfigError(f"wrong age identity ({where}): it does not open backup "
                          f"{plan.entry.id}: it was encrypted to {', '.join(plan.manifest.get('encryption', {}).get('recipients') or ['?'])}. "
                          "Use the identity of one of those recipients. Nothing was changed.")
    if args.dry_run:
        con.print("dry run: nothing was changed (the identity opens the backup)")
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
    for why, skipped in (detail.get("skipped") or {}).items():
        con.print(f"  skipped {skipped['count']}: {why}: {', '.join(skipped['entries'][:6])}"
                  + (" …" if skipped["count"] > 6 else ""))
    if detail.get("disarmed_sentence"):
        con.print(f"  {detail['disarmed_sentence']}")
    for job in detail.get("cron_jobs_to_schedule") or []:
        con.print(f"  pg_cron job not restored: {job['name']} ({job['schedule']}): schedule it again with "
                  "cron.schedule() once the new project is live")
    if detail.get("kept"):
        con.print(f"the previous database is kept as [bold]{detail['kept']}[/bold]. To go back: "
                  f"./scripts/drkit swap-back --target URL --kept {detail['kept']} (it asks for the name); when sure: DROP DATABASE "
                  f"\"{detail['kept']}\"")
    if args.download_to:
        con.print(f"{args.download_to} holds the database in plaintext (mode 0600): delete it when done")
    else:
        con.print("for large databases: --download-to PATH --jobs N restores in parallel from a verified local copy")
    return 0


def _identity_opens(store: Any, entry: Any, identities: list[Any]) -> bool:
    from drkit.crypto import encryption

    raw = store.open_read(entry.data_key)
    try:
        head = raw.read(64 << 10)
    finally:
        raw.close()
    return encryption.opens(bytes(head), identities)


def cmd_swap_back(args: argparse.Namespace, env: Mapping[str, str]) -> int:
    from drkit.postgres import operator_restore

    _, store = open_store(env)
    _, dbname = operator_restore.target_from_url(args.target)
    if args.yes_i_know is not None:
        if args.yes_i_know != dbname:
            raise ConfigError(f"--yes-i-know {args.yes_i_know!r} does not name the target database {dbname!r}")
    elif not sys.stdin.isatty():
        raise ConfigError("no terminal to confirm on: pass --yes-i-know NAME. Nothing was changed.")
    elif console().input(f"Type the database name ({dbname}) to put {args.kept} back in its place (the current "
                         f"{dbname} is kept as {dbname}_restored_<now>): ").strip() != dbname:
        raise ConfigError("confirmation did not match; nothing was changed")
    detail = operator_restore.swap_back(store, args.target, args.kept)
    console().print(f"[green]swapped back[/green]: {detail['restored_from']} is {detail['target']} again; the "
                     f"restored database is kept as {detail['kept']}")
    return 0


def cmd_retention_plan(args: argparse.Namespace, env: Mapping[str, str]) -> int:
    from rich.table import Table

    cfg = Config.from_env(env)
    _, store = open_store(env, args)
    names = args.db or list(cfg.databases)
    now = dt.datetime.now(dt.UTC)
    con = console()
    for name in names:
        if name not in cfg.databases:
            raise ConfigError(suggest.unknown("database", [name], list(cfg.databases)))
        result = retention.prune(cfg.databases[name], store, None, now, dry_run=True)
        table = Table("backup id", "age", "verdict", "why", title=f"{name}: {result['policy']}")
        for d in result["plan"]:
            t = dt.datetime.fromisoformat(d["time"])
            color = {"delete": "red", "protected": "yellow", "pinned": "cyan"}.get(d["verdict"], "green")
            table.add_row(d["id"], age(t, now), f"[{color}]{d['verdict']}[/{color}]", ", ".join(d["reasons"]))
        con.print(table)
        con.print(result["summary"])
    return 0


def cmd_backups_untrusted(args: argparse.Namespace, env: Mapping[str, str]) -> int:
    """Entries in `db/` that db-backup never signed: shown, and with --delete removed (nothing else does)."""
    _, store = open_store(env, args)
    now = dt.datetime.now(dt.UTC)
    known_databases(store, env, args.db)
    names = args.db or catalog.list_databases(store)
    found = [(name, e, why) for name in names for e, why in catalog.trusted_view(store, name, now).untrusted]
    con = console()
    for name, e, why in found:
        con.print(f"{name} {e.id}: {why}")
    if not found:
        con.print(f"no untrusted entries in {', '.join(names) or 'the bucket'}")
        return 0
    if not args.delete:
        con.print(f"{len(found)} untrusted entr{'y' if len(found) == 1 else 'ies'}; --delete removes "
                  f"{'it' if len(found) == 1 else 'them'} (an audit event keeps what was removed)")
        return 3
    for name, e, why in found:
        for suffix in e.objects:
            store.delete(layout.marker_key(name, e.id, suffix))
        audit.record(store, "cli", "backup.untrusted.deleted", {"database": name, "backup_id": e.id, "reason": why,
                                                                "objects": sorted(e.objects)})
    con.print(f"deleted {len(found)} untrusted entr{'y' if len(found) == 1 else 'ies'}")
    return 0
