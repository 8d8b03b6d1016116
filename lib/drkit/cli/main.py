"""drkit: the operator CLI (scripts/drkit). Same library, same code paths as the functions.

Configuration comes from the environment and an env file (default `.env`,
the file `doctl serverless deploy` reads); variables already set in the shell
win, as they do for the deployer. Exit codes: 0 done (a dry run included), 1 failed, 2 invalid
configuration or arguments (nothing was changed), 3 partly failed, 130 interrupted (cleaned up).
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from typing import Any

from drkit import __version__
from drkit.cli.backups import (
    cmd_backup,
    cmd_backups_list,
    cmd_backups_pin,
    cmd_backups_show,
    cmd_backups_untrusted,
    cmd_restore,
    cmd_retention_plan,
    cmd_swap_back,
)
from drkit.cli.check import cmd_config_check
from drkit.cli.common import add_repo_args, environment
from drkit.cli.setup import cmd_init, cmd_keygen
from drkit.cli.snapshots import cmd_droplet_rebuild
from drkit.core import log
from drkit.core.errors import ConfigError, DrkitError


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(
        prog="drkit", description="drkit operator CLI: database and config backups, restores, DNS restore, retention, keys. "
                    "See docs/runbook.md.",
        epilog="Configuration: environment variables (see .env.example), read from --env-file or ./.env too. "
               "Exit codes: 0 done (a dry run included), 1 failed, 2 invalid configuration or arguments (nothing "
               "was changed), 3 partly failed, 130 interrupted (cleaned up).")
    ap.add_argument("--version", action="version", version=f"drkit {__version__}")
    ap.add_argument("--env-file", help="KEY=VALUE file to read (default: ./.env if present)")
    ap.add_argument("-v", "--verbose", action="store_true", help="JSON log lines (info level) on stderr")
    sub = ap.add_subparsers(dest="group", required=True, metavar="COMMAND")

    p = sub.add_parser("init", help="start a deployment: .env (0600) from .env.example with new keys, private key "
                       "copies outside the checkout")
    p.add_argument("--keys-dir", help="where the private key copies go (default: ~/.config/drkit, created 0700)")
    p.set_defaults(fn=cmd_init)

    p = sub.add_parser("keygen", help="create an age identity (or, with --signing, a signing key) and print its "
                       "public key")
    p.add_argument("--out", default=None, help="where to write the private key (default: drkit-identity.txt, or "
                   "drkit-signing.key with --signing)")
    p.add_argument("--signing", action="store_true", help="a minisign-format signing key for DRKIT_SIGNING_KEY "
                   "(and its public key for DRKIT_TRUSTED_KEYS)")
    p.add_argument("--for", dest="role", metavar="FN", help="with --signing: whose key (a function, `operator`, or "
                   "`all`); prints the .env lines DRKIT_SIGNING_KEY_<FN>=… and its role=RW… trust entry")
    p.set_defaults(fn=cmd_keygen)

    g = sub.add_parser("config", help="configuration check, and config backups (list, show, extract)").add_subparsers(
        dest="command", required=True)
    c = g.add_parser("check", help="every function's own start-up validation on the environment project.yml gives "
                                   "it (with --connect, reach each one's endpoints with its own credentials)")
    c.add_argument("--connect", action="store_true", help="also reach the bucket (each function's key), the databases, "
                   "staging, the DigitalOcean API, the Functions API and the failover plan")
    c.add_argument("--notify", action="store_true", help="also send one test message to each notification URL")
    c.add_argument("--project", help="the project file (default: the checkout's project.yml)")
    c.set_defaults(fn=cmd_config_check)
    from drkit.cli import apps, config, failover, files, incident, offsite, schedule, status, supabase, validate

    config.register(g, sub)
    offsite.register(sub)
    files.register(sub)
    failover.register(sub)
    schedule.register(sub)
    status.register(sub)
    supabase.register(sub)
    validate.register(sub)
    incident.register(sub)
    apps.register(sub)

    p = sub.add_parser("backup", help="take a database backup now (what the hourly trigger runs)")
    p.add_argument("--db", action="append", help="database name (repeatable; default: all)")
    p.add_argument("--dry-run", action="store_true", help="check connections and show the retention plan only")
    p.add_argument("--no-prune", action="store_true", help="do not apply retention after the backup")
    p.add_argument("--json", action="store_true", help="print the full JSON result")
    p.set_defaults(fn=cmd_backup)

    g = sub.add_parser("backups", help="list, inspect and pin backups").add_subparsers(dest="command", required=True)
    c = g.add_parser("list", help="table of backups with age, size, verified and pinned state")
    c.add_argument("--db", action="append", help="database name (repeatable; default: all in the bucket)")
    c.add_argument("--limit", type=int, default=None, help="the newest N of each database (default: all)")
    c.add_argument("--json", action="store_true")
    add_repo_args(c)
    c.set_defaults(fn=cmd_backups_list)
    c = g.add_parser("show", help="a backup's manifest: source, sizes, checksum, tables")
    c.add_argument("backup", help="`latest`, a backup id, or a key")
    c.add_argument("--db", help="database name (needed unless a full key is given)")
    c.add_argument("--tables", type=int, default=30, help="how many tables to list (default: %(default)s)")
    c.add_argument("--json", action="store_true", help="print the manifest as stored")
    add_repo_args(c)
    c.set_defaults(fn=cmd_backups_show)
    for verb, text in (("pin", "never delete this backup (e.g. before a migration)"), ("unpin", "remove a pin")):
        c = g.add_parser(verb, help=text)
        c.add_argument("backup", help="`latest`, a backup id, or a key")
        c.add_argument("--db", help="database name (needed unless a full key is given)")
        c.add_argument("--reason", default="", help="why (recorded in the audit log)")
        c.set_defaults(fn=cmd_backups_pin)
    c = g.add_parser("untrusted", help="entries db-backup never signed (planted or foreign): list, or --delete them")
    c.add_argument("--db", action="append", help="database name (repeatable; default: all in the bucket)")
    c.add_argument("--delete", action="store_true", help="delete them (each one leaves an audit event)")
    c.set_defaults(fn=cmd_backups_untrusted)

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
    p.add_argument("--jobs", type=int, help="parallel jobs with --download-to (default: 4)")
    p.add_argument("--no-privileges", action="store_true", help="skip GRANT/REVOKE (roles missing on the target)")
    p.add_argument("--keep-jobs", action="store_true",
                   help="leave the copy armed: restored pg_cron jobs active, foreign-server credentials and user "
                        "mappings kept (by default a restored copy calls no external service)")
    p.add_argument("--dry-run", action="store_true", help="print the plan only")
    p.add_argument("--force", action="store_true", help="allow replacing a database that holds tables")
    p.add_argument("--yes-i-know", metavar="NAME", help="confirm --force without a prompt (the target's name)")
    p.add_argument("--accept-rollback", action="store_true", help="restore `latest` although the catalog's newest "
                   "backup is missing from the bucket (restores the newest one still there)")
    add_repo_args(p)
    p.set_defaults(fn=cmd_restore)
    p = sub.add_parser("swap-back", help="undo a restore that replaced a database: the kept one comes back",
                       description="After `restore --force` replaced a database, put the kept one "
                                   "(<name>_before_<stamp>) back under its name; the restored one is kept "
                                   "as <name>_restored_<stamp>. One transaction; sessions on it are ended.")
    p.add_argument("--target", required=True, help="libpq URL of the database that was replaced")
    p.add_argument("--kept", required=True, help="the kept database the restore printed (<name>_before_<stamp>)")
    p.add_argument("--yes-i-know", metavar="NAME", help="confirm without a prompt: the target database's name")
    p.set_defaults(fn=cmd_swap_back)

    g = sub.add_parser("droplet", help="droplets").add_subparsers(dest="command", required=True)
    c = g.add_parser("rebuild", help="create a droplet from the newest drkit snapshot of a (failed) droplet")
    c.add_argument("droplet", help="name of the droplet to rebuild")
    c.add_argument("--name", help="name of the new droplet (default: <name>-rebuilt-<snapshot slot>)")
    c.add_argument("--snapshot", default="latest", help="a snapshot id, or latest (default): the newest drkit "
                                                        "snapshot; its age is shown, and a warning when it is older "
                                                        "than its policy allows")
    c.add_argument("--rebuild-id", help="names this rebuild (default: from the droplet and the snapshot): a rerun "
                                        "with the same id continues with the droplet it created")
    c.add_argument("--record", action="append", metavar="DOMAIN:NAME",
                   help="an A record to point at the new droplet (repeatable); also every A record that named the "
                        "old droplet's IP in the failover plan's domains")
    c.add_argument("--old-ip", help="the lost droplet's IP, when it no longer exists (DNS records naming it move)")
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
    env: dict[str, str] | None = None
    try:
        env = dict(os.environ) if args.fn is cmd_init else environment(args.env_file)  # init writes the file
        # stdout is for results (tables, --json); JSON logs go to stderr with -v only (the .env's
        # DRKIT_LOG_LEVEL is the deployed functions' setting, not the terminal's)
        env["DRKIT_LOG_LEVEL"] = "info" if args.verbose else "warning"
        log.configure(env["DRKIT_LOG_LEVEL"], log.STDERR)
        return int(args.fn(args, env))
    except ConfigError as exc:
        print("error: invalid configuration or arguments:", file=sys.stderr)
        for problem in exc.problems:
            print(f"  - {_where(problem, args)}", file=sys.stderr)
        return 2
    except DrkitError as exc:
        print(f"error: {_where(str(exc), args)}", file=sys.stderr)
        hint = _copy_hint(exc, args, argv)
        if hint:
            print(hint, file=sys.stderr)
        return 1
    except BrokenPipeError:  # `drkit … | head`: the reader has what it wanted
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except KeyboardInterrupt:
        print("interrupted: stopped and cleaned up (a restore leaves its target as it was)", file=sys.stderr)
        _record_interruption(args, env)
        return 130


def _copy_hint(exc: DrkitError, args: argparse.Namespace, argv: Sequence[str] | None) -> str | None:
    """The primary bucket unreachable on a command that can read the off-site copy: name the command that does."""
    if getattr(args, "repo", None) != "primary" or "cannot reach" not in str(exc):
        return None
    words = list(sys.argv[1:] if argv is None else argv)
    shown = log.redact(" ".join(w if " " not in w else repr(w) for w in words))  # a --target URL's password
    return ("the primary bucket is unreachable (a regional outage?): read the off-site copy instead:\n"
            f"  drkit {shown} --from copy")


def _where(message: str, args: argparse.Namespace) -> str:
    """Messages name the function's variable; on a laptop, the identity may come from --identity FILE."""
    identity = getattr(args, "identity", None)
    return message.replace("(DRKIT_AGE_IDENTITY)", f"(--identity {identity})") if identity else message


def _record_interruption(args: argparse.Namespace, env: dict[str, str] | None) -> None:
    """An interrupted command that may have changed something leaves an audit event (best effort)."""
    command = " ".join(str(x) for x in (getattr(args, "group", None), getattr(args, "command", None)) if x)
    if env is None or args.fn is cmd_init:
        return
    try:
        from drkit.cli.common import open_store
        from drkit.storage import audit

        _, store = open_store(env)
        audit.record(store, "cli", "cli.interrupted", {"command": command})
    except (DrkitError, OSError) as exc:
        print(f"(the interruption could not be recorded in the bucket: {exc})", file=sys.stderr)

