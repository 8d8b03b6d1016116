"""drkit: the operator CLI (scripts/drkit). Same library, same code paths as the functions.

Configuration comes from the environment and an env file (default `.env`,
the file `doctl serverless deploy` reads); variables already set in the shell
win, as they do for the deployer. Exit codes: 0 ok, 1 failed, 2 invalid
configuration or arguments, 3 partly failed.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import re
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from drkit import __version__, audit, catalog, crypto, db_backup, layout, log, runtime
from drkit.config import Config
from drkit.errors import ConfigError, DrkitError
from drkit.store import Store

EXIT = {"ok": 0, "dry_run": 0, "partial": 3, "invalid_config": 2}


def load_env_file(path: Path) -> dict[str, str]:
    """KEY=VALUE lines; `#` comments, also after a value (a `#` preceded by white space, as in
    shells and dotenv); quoted values are taken literally; `export ` prefix allowed."""
    out: dict[str, str] = {}
    for n, raw in enumerate(path.read_text().splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        line = line.removeprefix("export ").strip()
        key, sep, value = line.partition("=")
        if not sep or not key.strip().replace("_", "").isalnum():
            raise ConfigError(f"{path}:{n}: not KEY=VALUE")
        value = value.strip()
        if value[:1] in ("'", '"') and value[0] in value[1:]:
            value = value[1:value.index(value[0], 1)]  # quoted: literal, anything after it is a comment
        else:
            value = re.split(r"\s#", value, maxsplit=1)[0].strip()
        out[key.strip()] = value
    return out


def environment(env_file: str | None) -> dict[str, str]:
    env: dict[str, str] = {}
    path = Path(env_file) if env_file else Path(".env")
    if env_file and not path.exists():
        raise ConfigError(f"env file {path} does not exist")
    if path.exists():
        env.update(load_env_file(path))
    env.update(os.environ)
    return env


def _console() -> Any:
    from rich.console import Console

    return Console()


def _size(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if abs(n) < 1000 or unit == "TB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n:.1f} TB"


def _age(t: dt.datetime, now: dt.datetime) -> str:
    s = (now - t).total_seconds()
    if s < 0:
        return "in the future"
    if s < 3600:
        return f"{s / 60:.0f} min"
    if s < 172800:
        return f"{s / 3600:.1f} h"
    return f"{s / 86400:.1f} d"


# -- commands -----------------------------------------------------------------------

def _write_private(out: Path, text: str) -> None:
    if out.exists():
        raise ConfigError(f"{out} exists; refusing to overwrite a key (move it away first)")
    fd = os.open(out, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(text)


def cmd_keygen(args: argparse.Namespace, env: Mapping[str, str]) -> int:
    from drkit import signing

    now = dt.datetime.now(dt.UTC).isoformat()
    out = Path(args.out or ("drkit-signing.key" if args.signing else "drkit-identity.txt"))
    if args.signing:
        secret, public = signing.generate()
        _write_private(out, f"# drkit signing key, created {now}\n# drkit trusted key: {public}\n{secret}\n")
        print(f"signing key written to {out} (mode 0600). Give it to the functions that write backups only:")
        print("DRKIT_SIGNING_KEY (db-backup, config-backup). Trust its public key everywhere else:")
        print("DRKIT_TRUSTED_KEYS (restore-verify, dns-failover, health-probe, your .env), or a line")
        print(f"'# drkit trusted key: {public}' in your identity file. Standard tools: minisign -V -P {public}")
        print(public)
        return 0
    identity, recipient = crypto.generate_identity()
    _write_private(out, f"# created: {now}\n# public key: {recipient}\n{identity}\n")
    print(f"identity written to {out} (mode 0600). Keep it OFF the deployment: store it in your password manager")
    print("and an offline copy. Only restore needs it. Put the public key in DRKIT_AGE_RECIPIENTS:")
    print(recipient)
    return 0


def cmd_config_check(args: argparse.Namespace, env: Mapping[str, str]) -> int:
    from rich.table import Table

    cfg = Config.from_env(env)
    con = _console()
    con.print(f"[green]configuration is valid[/green]: bucket [bold]{cfg.spaces.bucket}[/bold] at "
              f"{cfg.spaces.endpoint_url}{' prefix ' + cfg.spaces.prefix if cfg.spaces.prefix else ''}, "
              f"{len(cfg.recipients)} age recipient(s)")
    table = Table("database", "connection", "exact counts", "pg_dump options", "retention")
    for db in cfg.databases.values():
        table.add_row(db.name, db.display, ", ".join(db.count_tables) or "-", " ".join(db.pg_dump_args) or "-",
                      str(db.retention))
    con.print(table)
    from drkit import pg as pg_tls
    from drkit.config import trusted_keys

    for db in cfg.databases.values():
        warning = pg_tls.tls_warning(db)
        if warning:
            con.print(f"[yellow]warning[/yellow]: {warning}")
    trusted = trusted_keys(env, required=False)
    if cfg.signing_key is not None:
        from drkit import signing

        mine = signing.public_of(cfg.signing_key.reveal())
        said = "is" if any(k.text == mine for k in trusted) else "is NOT (restores will refuse these backups)"
        con.print(f"signing key {signing.parse_public(mine).id_hex}: its public key {said} in DRKIT_TRUSTED_KEYS")
    from drkit import envvars

    writers = {envvars.spaces_key_of(fn, env) for fn in (envvars.DB_BACKUP, envvars.CONFIG)}
    for exposed in (envvars.FAILOVER, envvars.HEALTH):
        if envvars.spaces_key_of(exposed, env) in writers:
            con.print(f"[yellow]warning[/yellow]: dr/{exposed} uses the same Spaces key as the backup writers; "
                      f"{'it answers the public web: ' if exposed == envvars.FAILOVER else ''}give it its own key "
                      f"limited to this bucket ({envvars.per_function_name('DRKIT_SPACES_KEY', exposed)}; "
                      "docs/configuration.md, least privilege)")
    if env.get("DRKIT_CONFIG_SOURCES", "").strip():
        from drkit.cli_config import print_sources

        print_sources(con, env)
    if args.connect:
        from drkit import pg

        store = Store(cfg.spaces)
        store.check_access()
        con.print(f"[green]bucket reachable[/green] ({cfg.spaces.bucket})")
        tool = pg.tool_version("pg_dump")
        failed = 0
        for db in cfg.databases.values():
            try:
                with pg.SnapshotSession(db) as s:
                    info = s.inspect(())
                pg.check_compatible(tool, info.server_version_num)
                con.print(f"[green]{db.name}[/green]: PostgreSQL {info.server_version}, "
                          f"{_size(info.database_size)}, {len(info.tables)} tables; pg_dump {tool.version} is compatible")
            except DrkitError as exc:
                failed += 1
                con.print(f"[red]{db.name}[/red]: {exc}")
        return 1 if failed else 0
    return 0


def cmd_backup(args: argparse.Namespace, env: Mapping[str, str]) -> int:
    params: dict[str, Any] = {"dry_run": args.dry_run, "prune": not args.no_prune}
    if args.db:
        params["database"] = ",".join(args.db)
    with _console().status("backing up ..."):
        result = runtime.handle("db-backup", db_backup.run, params, None, env, default_deadline_s=None)
    return _print_result(result, args.json)


def _print_result(result: dict[str, Any], as_json: bool) -> int:
    if as_json:
        print(json.dumps(result, indent=2, default=str))
    else:
        con = _console()
        color = "green" if result["ok"] else "red"
        con.print(f"[{color}]{result.get('status')}[/{color}]: {result.get('decision')}")
        for problem in result.get("problems", []):
            con.print(f"  - {problem}")
    if result["ok"]:
        return 0  # whatever the status word (applied, pending, ok, dry_run): the run did its job
    return EXIT.get(str(result.get("status")), 1)


def _store(env: Mapping[str, str]) -> tuple[Config, Store]:
    cfg = Config.from_env(env, need_databases=False, need_recipients=False)
    return cfg, Store(cfg.spaces)


def cmd_backups_list(args: argparse.Namespace, env: Mapping[str, str]) -> int:
    from rich.table import Table

    _, store = _store(env)
    names = args.db or catalog.list_databases(store)
    now = dt.datetime.now(dt.UTC)
    rows = [e for name in names for e in catalog.list_backups(store, name)]
    if args.json:
        print(json.dumps([e.summary() for e in rows], indent=2))
        return 0
    table = Table("database", "backup id", "taken (UTC)", "age", "size", "state", "verified", "pinned")
    for e in rows:
        state = "ok" if e.complete else ("ORPHAN (no manifest)" if e.orphan else "BROKEN (no data)")
        table.add_row(e.database, e.id, e.time.strftime("%Y-%m-%d %H:%M"), _age(e.time, now), _size(e.size),
                      state, "yes" if e.verified else "", "pinned" if e.pinned else "")
    con = _console()
    con.print(table)
    con.print(f"{len(rows)} backups of {len(names)} database(s); `drkit backups show ID --db NAME` for details")
    return 0


def cmd_backups_show(args: argparse.Namespace, env: Mapping[str, str]) -> int:
    from rich.table import Table

    _, store = _store(env)
    entry = catalog.find(store, args.backup, args.db)
    manifest = catalog.read_manifest(store, entry, _trusted(args, env))
    if args.json:
        print(json.dumps(manifest, indent=2))
        return 0
    con = _console()
    src = manifest.get("source", {})
    con.print(f"[bold]{entry.database} {entry.id}[/bold]  {entry.data_key}")
    con.print(f"  taken {manifest['started_at']} in {manifest['duration_s']} s; PostgreSQL {src.get('server_version')} "
              f"({src.get('display')}); pg_dump {manifest['dump']['tool_version']}, snapshot {manifest['dump']['snapshot']}")
    con.print(f"  dump {_size(manifest['bytes_in'])} -> stored {_size(manifest['bytes_out'])} "
              f"(zstd {manifest['compression']['level']}, age to {len(manifest['encryption']['recipients'])} recipient(s))")
    con.print(f"  sha256 {manifest['sha256']}; verified: {'yes' if entry.verified else 'no'}; "
              f"pinned: {'yes' if entry.pinned else 'no'}")
    how = manifest["restore"].get("without_drkit") or manifest["restore"].get("pipeline")
    con.print("  signature: valid, by a trusted key (DRKIT_TRUSTED_KEYS)")
    con.print(f"  restore with standard tools: {how}")
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
    _, store = _store(env)
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


def _trusted(args: argparse.Namespace, env: Mapping[str, str]) -> list[Any]:
    """The public keys whose signatures this command believes: DRKIT_TRUSTED_KEYS, and keys pinned in the
    identity file (`# drkit trusted key: RW…` lines, which `drkit keygen --signing` shows)."""
    from drkit import signing
    from drkit.config import trusted_keys

    pinned: list[str] = []
    identity = getattr(args, "identity", None)
    if identity and Path(identity).exists():
        pinned = signing.keys_in(Path(identity).read_text().splitlines())
    return trusted_keys(env, required=True, extra=pinned)


def _identities(args: argparse.Namespace, env: Mapping[str, str]) -> list[Any]:
    if args.identity:
        path = Path(args.identity)
        if not path.exists():
            raise ConfigError(f"identity file {path} does not exist")
        text = path.read_text()
    elif env.get("DRKIT_AGE_IDENTITY"):
        text = env["DRKIT_AGE_IDENTITY"]
    else:
        raise ConfigError("say which age identity decrypts the backup: --identity FILE (or DRKIT_AGE_IDENTITY)")
    return [crypto.parse_identity(line) for line in text.split() if line.startswith("AGE-SECRET-KEY-")] or \
        [crypto.parse_identity(text)]


def cmd_restore(args: argparse.Namespace, env: Mapping[str, str]) -> int:
    from rich.progress import BarColumn, DownloadColumn, Progress, TimeRemainingColumn, TransferSpeedColumn

    from drkit import operator_restore

    _, store = _store(env)
    identities = _identities(args, env)
    plan = operator_restore.make_plan(store, args.db, args.backup, args.before, args.target,
                                      download_to=args.download_to, jobs=args.jobs, force=args.force,
                                      no_privileges=args.no_privileges, trusted=_trusted(args, env))
    con = _console()
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
    from drkit import operator_restore

    _, store = _store(env)
    detail = operator_restore.swap_back(store, args.target, args.kept)
    _console().print(f"[green]swapped back[/green]: {detail['restored_from']} is {detail['target']} again; the "
                     f"restored database is kept as {detail['kept']}")
    return 0


def cmd_droplet_rebuild(args: argparse.Namespace, env: Mapping[str, str]) -> int:
    from drkit import snapshot_rotate

    params = {"action": "rebuild", "droplet": args.droplet, "name": args.name or "", "region": args.region or "",
              "size": args.size or "", "reserved_ip": args.reserved_ip or "", "wait": not args.no_wait,
              "dry_run": args.dry_run}
    with _console().status("rebuilding ..."):
        result = runtime.handle("snapshot-rotate", snapshot_rotate.run, params, None, env, default_deadline_s=600)
    return _print_result(result, args.json)


def cmd_retention_plan(args: argparse.Namespace, env: Mapping[str, str]) -> int:
    from rich.table import Table

    cfg = Config.from_env(env)
    store = Store(cfg.spaces)
    names = args.db or list(cfg.databases)
    now = dt.datetime.now(dt.UTC)
    con = _console()
    for name in names:
        if name not in cfg.databases:
            raise ConfigError(f"unknown database {name!r}; configured: {', '.join(cfg.databases)}")
        result = db_backup.prune(cfg.databases[name], store, None, now, dry_run=True)
        table = Table("backup id", "age", "verdict", "why", title=f"{name}: {result['policy']}")
        for d in result["plan"]:
            t = dt.datetime.fromisoformat(d["time"])
            color = {"delete": "red", "protected": "yellow", "pinned": "cyan"}.get(d["verdict"], "green")
            table.add_row(d["id"], _age(t, now), f"[{color}]{d['verdict']}[/{color}]", ", ".join(d["reasons"]))
        con.print(table)
        con.print(result["summary"])
    return 0


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(
        prog="drkit", description="drkit operator CLI: database and config backups, restores, DNS restore, retention, keys. "
                    "See docs/runbook.md.",
        epilog="Configuration: environment variables (see .env.example), read from --env-file or ./.env too.")
    ap.add_argument("--version", action="version", version=f"drkit {__version__}")
    ap.add_argument("--env-file", help="KEY=VALUE file to read (default: ./.env if present)")
    ap.add_argument("-v", "--verbose", action="store_true", help="JSON log lines (info level) on stderr")
    sub = ap.add_subparsers(dest="group", required=True, metavar="COMMAND")

    p = sub.add_parser("keygen", help="create an age identity (or, with --signing, a signing key) and print its "
                       "public key")
    p.add_argument("--out", default=None, help="where to write the private key (default: drkit-identity.txt, or "
                   "drkit-signing.key with --signing)")
    p.add_argument("--signing", action="store_true", help="a minisign-format signing key for DRKIT_SIGNING_KEY "
                   "(and its public key for DRKIT_TRUSTED_KEYS)")
    p.set_defaults(fn=cmd_keygen)

    g = sub.add_parser("config", help="configuration check, and config backups (list, show, extract)").add_subparsers(
        dest="command", required=True)
    c = g.add_parser("check", help="validate the configuration (and with --connect, reach the bucket and databases)")
    c.add_argument("--connect", action="store_true", help="also connect to the bucket and every database")
    c.set_defaults(fn=cmd_config_check)
    from drkit import cli_config, cli_failover

    cli_config.register(g, sub)
    cli_failover.register(sub)

    p = sub.add_parser("backup", help="take a database backup now (what the hourly trigger runs)")
    p.add_argument("--db", action="append", help="database name (repeatable; default: all)")
    p.add_argument("--dry-run", action="store_true", help="check connections and show the retention plan only")
    p.add_argument("--no-prune", action="store_true", help="do not apply retention after the backup")
    p.add_argument("--json", action="store_true", help="print the full JSON result")
    p.set_defaults(fn=cmd_backup)

    g = sub.add_parser("backups", help="list, inspect and pin backups").add_subparsers(dest="command", required=True)
    c = g.add_parser("list", help="table of backups with age, size, verified and pinned state")
    c.add_argument("--db", action="append", help="database name (repeatable; default: all in the bucket)")
    c.add_argument("--json", action="store_true")
    c.set_defaults(fn=cmd_backups_list)
    c = g.add_parser("show", help="a backup's manifest: source, sizes, checksum, tables")
    c.add_argument("backup", help="`latest`, a backup id, or a key")
    c.add_argument("--db", help="database name (needed unless a full key is given)")
    c.add_argument("--tables", type=int, default=30, help="how many tables to list (default: %(default)s)")
    c.add_argument("--json", action="store_true", help="print the manifest as stored")
    c.set_defaults(fn=cmd_backups_show)
    for verb, text in (("pin", "never delete this backup (e.g. before a migration)"), ("unpin", "remove a pin")):
        c = g.add_parser(verb, help=text)
        c.add_argument("backup", help="`latest`, a backup id, or a key")
        c.add_argument("--db", help="database name (needed unless a full key is given)")
        c.add_argument("--reason", default="", help="why (recorded in the audit log)")
        c.set_defaults(fn=cmd_backups_pin)

    p = sub.add_parser("restore", help="restore a backup into a database (plan, guard, progress)",
                       description="Restore a backup. Shows the plan first; a target database that holds tables "
                                   "needs --force and the name typed (or --yes-i-know NAME).")
    p.add_argument("--db", required=True, help="database name (as in DRKIT_DATABASES)")
    which = p.add_mutually_exclusive_group()
    which.add_argument("--backup", default="latest", help="latest (default), a backup id, or a key")
    which.add_argument("--before", help="the newest backup taken at or before this UTC time (2026-11-26T02:00)")
    p.add_argument("--target", required=True, help="libpq URL of the target database (created if missing)")
    p.add_argument("--identity", help="age identity file (default: DRKIT_AGE_IDENTITY)")
    p.add_argument("--download-to", help="write the verified archive here, then pg_restore --jobs from it")
    p.add_argument("--jobs", type=int, default=4, help="parallel jobs with --download-to (default: %(default)s)")
    p.add_argument("--no-privileges", action="store_true", help="skip GRANT/REVOKE (roles missing on the target)")
    p.add_argument("--dry-run", action="store_true", help="print the plan only")
    p.add_argument("--force", action="store_true", help="allow replacing a database that holds tables")
    p.add_argument("--yes-i-know", metavar="NAME", help="confirm --force without a prompt (the target's name)")
    p.set_defaults(fn=cmd_restore)
    p = sub.add_parser("swap-back", help="undo a restore that replaced a database: the kept one comes back",
                       description="After `restore --force` replaced a database, put the kept one "
                                   "(<name>_before_<stamp>) back under its name; the restored one is kept "
                                   "as <name>_restored_<stamp>. One transaction; sessions on it are ended.")
    p.add_argument("--target", required=True, help="libpq URL of the database that was replaced")
    p.add_argument("--kept", required=True, help="the kept database the restore printed (<name>_before_<stamp>)")
    p.set_defaults(fn=cmd_swap_back)

    g = sub.add_parser("droplet", help="droplets").add_subparsers(dest="command", required=True)
    c = g.add_parser("rebuild", help="create a droplet from the newest drkit snapshot of a (failed) droplet")
    c.add_argument("droplet", help="name of the droplet to rebuild")
    c.add_argument("--name", help="name of the new droplet (default: <name>-rebuilt-<time>)")
    c.add_argument("--region", help="region (default: the original's; required if it no longer exists)")
    c.add_argument("--size", help="size slug (default: the original's; required if it no longer exists)")
    c.add_argument("--reserved-ip", help="move this reserved IP to the new droplet once it is active")
    c.add_argument("--no-wait", action="store_true", help="return the new droplet's id without waiting")
    c.add_argument("--dry-run", action="store_true", help="show the plan only")
    c.add_argument("--json", action="store_true")
    c.set_defaults(fn=cmd_droplet_rebuild)

    g = sub.add_parser("retention", help="retention").add_subparsers(dest="command", required=True)
    c = g.add_parser("plan", help="what retention would keep and delete now, and why (changes nothing)")
    c.add_argument("--db", action="append", help="database name (repeatable; default: all)")
    c.set_defaults(fn=cmd_retention_plan)
    return ap


def _terminated(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt  # SIGTERM unwinds like Ctrl-C: every cleanup (scratch database, partial files) runs


def main(argv: Sequence[str] | None = None) -> int:
    import signal

    args = build_parser().parse_args(argv)
    signal.signal(signal.SIGTERM, _terminated)
    try:
        env = environment(args.env_file)
        # stdout is for results (tables, --json); logs go to stderr, quiet unless asked for
        if args.verbose:
            env["DRKIT_LOG_LEVEL"] = "info"
        env.setdefault("DRKIT_LOG_LEVEL", "warning")
        log.configure(env["DRKIT_LOG_LEVEL"], log.STDERR)
        return int(args.fn(args, env))
    except ConfigError as exc:
        print("error: invalid configuration or arguments:", file=sys.stderr)
        for problem in exc.problems:
            print(f"  - {problem}", file=sys.stderr)
        return 2
    except DrkitError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted: stopped and cleaned up (a restore leaves its target as it was)", file=sys.stderr)
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
