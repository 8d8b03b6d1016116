"""CLI commands for config backups and DNS restore (registered by main.build_parser).

    drkit config backup [--source NAME] [--dry-run]
    drkit config list | show BACKUP | extract --backup latest|ID|KEY --to DIR [--only PATH]
    drkit dns restore --domain D --from latest|ID [--dry-run] [--delete-extra] [--yes]
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from drkit.cli import common
from drkit.configbackup import catalog, dns_restore, extract
from drkit.core.errors import ConfigError, DrkitError
from drkit.functions import config_backup
from drkit.platform import envvars, runtime
from drkit.storage.transfer import VerifyingReader, explain_crypto_failure


def print_sources(con: Any, env: Mapping[str, str]) -> None:
    """config-backup's sources as `drkit config check` shows them (raises ConfigError when invalid)."""
    from rich.table import Table

    from drkit.configbackup.sources import parse_sources

    sources = parse_sources(env["DRKIT_CONFIG_SOURCES"], env)
    table = Table("config source", "type", "what", "token from")
    for s in sources:
        var = ", ".join(str(s.opt(k)) for k in ("token_env", "key_env") if k in s.secrets)
        table.add_row(s.name, s.type, s.describe().split(": ", 1)[1].rstrip(")"), var or "-")
    con.print(table)


def cmd_config_backup(args: argparse.Namespace, env: Mapping[str, str]) -> int:
    params: dict[str, Any] = {"dry_run": args.dry_run, "prune": not args.no_prune}
    if args.source:
        params["source"] = ",".join(args.source)
    with common.console().status("collecting configuration ..."):
        result = runtime.handle("config-backup", config_backup.run, params, None, envvars.as_deployed("config-backup", env), default_deadline_s=None)
    code = int(common.print_result(result, args.json))
    if not args.json:
        con = common.console()
        for unit in result.get("sources", []):
            if unit.get("status") != "ok":
                con.print(f"  [red]{unit['name']}[/red] {unit['status']}: {unit.get('error')}")
        for text in result.get("drift", {}).get("dns", []) + result.get("drift", {}).get("firewalls", []):
            con.print(f"  {text}")
    return code


def cmd_config_list(args: argparse.Namespace, env: Mapping[str, str]) -> int:
    from rich.table import Table

    _, store = common.open_store(env, args)
    now = dt.datetime.now(dt.UTC)
    entries = catalog.list_entries(store)[:args.limit]  # newest first
    v = catalog.trusted_view(store, now)
    trusted, untrusted = v.trusted_ids(), {e.id for e, _ in v.untrusted}
    rows = []
    for n, e in enumerate(entries):
        row: dict[str, Any] = {"id": e.id, "time": e.time.isoformat(), "size": e.size, "complete": e.complete,
                               "pinned": e.pinned, "key": e.data_key}
        if e.id in untrusted:
            row |= {"status": "UNTRUSTED", "drift": "not signed by config-backup: never used"}
        elif e.id in trusted and n < args.limit:
            try:
                m = catalog.read_manifest(store, e)
                row |= {"status": m["status"], "files": len(m["files"]), "drift": m.get("drift", {}).get("summary", "")}
            except DrkitError as exc:
                row |= {"status": "UNREADABLE", "drift": str(exc)}
        rows.append(row)
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    table = Table("backup id", "taken (UTC)", "age", "size", "status", "files", "drift")
    for r in rows:
        t = dt.datetime.fromisoformat(r["time"])
        status = r.get("status") or ("ok" if r["complete"] else "INCOMPLETE (no manifest)")
        color = {"ok": "green", "partial": "yellow"}.get(status, "red")
        table.add_row(r["id"], t.strftime("%Y-%m-%d %H:%M"), common.age(t, now), common.size(r["size"]),
                      f"[{color}]{status}[/{color}]", str(r.get("files", "")), str(r.get("drift", ""))[:80])
    con = common.console()
    con.print(table)
    con.print(f"{len(rows)} config backups; `drkit config show ID` for sources, files and drift")
    return 0


def cmd_config_show(args: argparse.Namespace, env: Mapping[str, str]) -> int:
    from rich.table import Table

    _, store = common.open_store(env, args)
    entry = catalog.find(store, args.backup_opt or args.backup or "latest")
    m = catalog.read_manifest(store, entry)
    if args.json:
        print(json.dumps(m, indent=2))
        return 0
    con = common.console()
    con.print(f"[bold]config backup {m['id']}[/bold] ({m['status']})  {m['key']}")
    con.print(f"  taken {m['started_at']} in {m['duration_s']} s; {len(m['files'])} files, "
              f"{common.size(m['bytes_in'])} tar -> {common.size(m['bytes_out'])} stored; sha256 {m['sha256']}")
    con.print(f"  restore with standard tools: {m['restore']['pipeline']}")
    table = Table("source", "type", "status", "files", "size", "detail")
    for s in m["sources"]:
        details = s.get("details") or {}
        detail = s.get("error") or ", ".join(f"{k} {v}" for k, v in details.items()
                                             if k not in ("dns", "firewall_rules") and v is not None)
        color = "green" if s["status"] == "ok" else "red"
        table.add_row(s["name"], s["type"], f"[{color}]{s['status']}[/{color}]", str(s.get("files", 0)),
                      common.size(s.get("bytes", 0)), detail[:120])
    con.print(table)
    d = m.get("drift") or {}
    con.print(f"[bold]drift[/bold]: {d.get('summary', '-')}")
    for c in (d.get("dns") or []) + (d.get("firewalls") or []):
        con.print(f"  {c['text']}")
    for unit, lists in (d.get("files") or {}).items():
        for kind in ("changed", "added", "removed"):
            for path in lists[kind][:10]:
                con.print(f"  {kind:8} {path}")
            if len(lists[kind]) > 10:
                con.print(f"  … {len(lists[kind]) - 10} more {kind} in {unit}")
    if args.files:
        ft = Table("path", "size", "sha256")
        for f in m["files"][: args.files]:
            ft.add_row(f["path"] + (" (INCOMPLETE)" if f.get("incomplete") else ""), common.size(f["size"]),
                       f["sha256"][:16] + "…")
        con.print(ft)
    return 0


def cmd_config_extract(args: argparse.Namespace, env: Mapping[str, str]) -> int:
    from rich.progress import BarColumn, DownloadColumn, Progress, TransferSpeedColumn

    _, store = common.open_store(env, args)
    identities = common.load_identities(args, env)
    entry = catalog.find(store, args.backup)
    m = catalog.read_manifest(store, entry)
    dest = Path(args.to)
    con = common.console()
    raw = store.open_read(entry.data_key)
    reader = VerifyingReader(raw, int(m["bytes_out"]), str(m["sha256"]))
    try:
        with Progress("[progress.description]{task.description}", BarColumn(), DownloadColumn(),
                      TransferSpeedColumn(), console=con, transient=True) as bar:
            task = bar.add_task(f"extracting {entry.id}", total=m["bytes_out"])

            class Counting:
                def read(self, n: int = -1) -> bytes:
                    data = reader.read(n)
                    bar.advance(task, len(data))
                    return bytes(data)

            done = extract.extract(Counting(), m["files"], identities, dest, only=args.only or (),
                                   explain=lambda: explain_crypto_failure(reader, f"nothing was put into {dest}"))
    finally:
        raw.close()
    con.print(f"[green]extracted[/green] {done.files} files ({common.size(done.bytes)}) of config backup {entry.id} "
              f"into {dest}; every file matched its SHA-256 in the manifest")
    incomplete = [p for p in done.skipped if any(f["path"] == p and f.get("incomplete") for f in m["files"])]
    if incomplete:
        con.print(f"[yellow]skipped {len(incomplete)} file(s) the backup could not finish[/yellow] "
                  f"(first: {incomplete[0]}); take them from an older backup")
    if m["status"] != "ok":
        failed = [s["name"] for s in m["sources"] if s["status"] != "ok"]
        con.print(f"[yellow]this backup is partial[/yellow]: {', '.join(failed)} failed in that run; "
                  "`drkit config list` shows older complete ones")
    return 0


def cmd_dns_restore(args: argparse.Namespace, env: Mapping[str, str]) -> int:
    from drkit.core.deadline import Deadline
    from drkit.digitalocean.api import DoApi

    if args.repo not in ("primary", "copy"):  # `--from <backup id>`, the older form of --backup
        if args.backup:
            raise ConfigError("give the backup once: --backup ID (--from is primary or copy)")
        args.backup, args.repo = args.repo, "primary"
    args.backup = args.backup or "latest"
    _, store = common.open_store(env, args)
    identities = common.load_identities(args, env)
    api = DoApi.from_env(env, Deadline(None))
    domain = args.domain.strip().lower().rstrip(".")
    backup_id, records = dns_restore.backed_up_records(store, args.backup, domain, identities)
    plan = dns_restore.make_plan(api, backup_id, domain, records, delete_extra=args.delete_extra)
    con = common.console()
    con.print(f"[bold]DNS restore plan[/bold]: {plan.summary()}")
    for text in plan.lines():
        color = "green" if text.startswith("ok") else ("dim" if text.startswith("skip") else "yellow")
        con.print(f"  [{color}]{text}[/{color}]")
    if not plan.changes and plan.domain_exists:
        con.print("nothing to do: every backed-up record is live")
        return 0
    if args.dry_run:
        con.print("dry run: nothing was changed")
        return 0
    if not args.yes:
        if not sys.stdin.isatty():
            raise ConfigError("not a terminal: add --yes to apply the plan (or --dry-run to only show it)")
        answer = con.input(f"type the domain name ({domain}) to apply these changes: ").strip()
        if answer != domain:
            con.print("not confirmed: nothing was changed")
            return 1
    # the live records may have moved since the plan was shown: plan again and apply that
    plan = dns_restore.make_plan(api, backup_id, domain, records, delete_extra=args.delete_extra)
    done = dns_restore.apply(api, store, plan)
    con.print(f"[green]applied[/green] {len(done)} change(s) to {domain} from config backup {backup_id}")
    for text in done:
        con.print(f"  {text}")
    return 0


def cmd_config_deploy_env(args: argparse.Namespace, env: Mapping[str, str]) -> int:
    """Every value project.yml substitutes, as the deployer needs it (see docs/configuration.md)."""
    from drkit.cli.common import project_text
    from drkit.platform import envvars

    values, warnings = envvars.deploy_env(project_text(args.project), env)
    lines = []
    for name, value in sorted(values.items()):
        if "\n" in value or "'" in value:
            raise ConfigError(f"{name}: a deploy value may not hold a newline or a single quote")
        lines.append(f"{name}='{value}'")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.unlink(missing_ok=True)  # may hold secrets: created 0600, never widened
    fd = os.open(out, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write("# written by drkit config deploy-env: every ${VAR} of project.yml; `unset` = not set\n")
        f.write("\n".join(lines) + "\n")
    unset = sum(v == envvars.UNSET for v in values.values())
    for w in warnings:
        print(f"warning: {w}", file=sys.stderr)
    print(f"wrote {out} (mode 0600): {len(values)} variables, {unset} optional ones unset")
    return 0


def register(config_group: Any, root: Any) -> None:
    c = config_group.add_parser("deploy-env", help="write the env file ./scripts/deploy hands the deployer "
                                "(required variables checked; unset optional ones sent as `unset`)")
    c.add_argument("--out", default="build/deploy.env", help="where to write it (default: %(default)s)")
    c.add_argument("--project", help="the project file (default: the checkout's project.yml)")
    c.set_defaults(fn=cmd_config_deploy_env)
    c = config_group.add_parser("backup", help="run config-backup now (what a daily schedule runs)")
    c.add_argument("--source", action="append", help="only this source (repeatable; default: all)")
    c.add_argument("--dry-run", action="store_true", help="check the configuration; show the retention plan")
    c.add_argument("--no-prune", action="store_true", help="do not apply retention")
    c.add_argument("--json", action="store_true", help="print the full JSON result")
    c.set_defaults(fn=cmd_config_backup)
    c = config_group.add_parser("list", help="config backups: status, size, files, drift")
    c.add_argument("--limit", type=int, default=30, help="the newest N, manifests read (default: %(default)s)")
    c.add_argument("--json", action="store_true")
    common.add_repo_args(c)
    c.set_defaults(fn=cmd_config_list)
    c = config_group.add_parser("show", help="one config backup: sources, drift, files")
    c.add_argument("backup", nargs="?", default=None, help="latest (default), an id, or a key")
    c.add_argument("--backup", dest="backup_opt", metavar="BACKUP", help="the same, as an option")
    c.add_argument("--files", type=int, default=0, help="also list this many files")
    c.add_argument("--json", action="store_true", help="print the manifest as stored")
    common.add_repo_args(c)
    c.set_defaults(fn=cmd_config_show)
    c = config_group.add_parser("extract", help="decrypt a config backup into a directory (checked file by file)",
                                description="Decrypt, verify and unpack a config backup into a new or empty "
                                            "directory. Nothing is written to DIR unless the whole archive "
                                            "matches its manifest.")
    c.add_argument("--backup", default="latest", help="latest (default), an id, or a key")
    common.add_repo_args(c)
    c.add_argument("--to", required=True, metavar="DIR", help="a new or empty directory")
    c.add_argument("--only", action="append", metavar="PATH", help="only files under this path (repeatable), "
                                                                   "e.g. digitalocean/domains")
    c.add_argument("--identity", help="age identity file (default: DRKIT_AGE_IDENTITY)")
    c.set_defaults(fn=cmd_config_extract)

    g = root.add_parser("dns", help="DNS records from config backups").add_subparsers(dest="command", required=True)
    c = g.add_parser("restore", help="recreate missing or changed records of a domain from a config backup",
                     description="Shows the plan first. Records equal to the backup are left alone; differing ones "
                                 "are updated; missing ones created; records not in the backup are kept unless "
                                 "--delete-extra. SOA and apex NS stay DigitalOcean's.")
    c.add_argument("--domain", required=True, help="the domain, e.g. example.com")
    c.add_argument("--backup", default=None, help="latest (default), a config backup id, or a key")
    c.add_argument("--from", dest="repo", default="primary", metavar="primary|copy|BACKUP",
                   help="read the primary bucket (default) or the off-site copy; a backup id here (the older "
                        "form) means --backup")
    c.add_argument("--as-of", metavar="TIME", help="with --from copy: the copy as it was at this UTC time")
    c.add_argument("--identity", help="age identity file (default: DRKIT_AGE_IDENTITY)")
    c.add_argument("--dry-run", action="store_true", help="show the plan only")
    c.add_argument("--delete-extra", action="store_true", help="also delete live records the backup does not have")
    c.add_argument("--yes", action="store_true", help="apply without the typed confirmation")
    c.set_defaults(fn=cmd_dns_restore)
