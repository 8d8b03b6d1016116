"""`drkit files list|restore`: Storage file bytes (Supabase Storage, S3 buckets) from config backups, for operators."""

from __future__ import annotations

import argparse
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from drkit.cli import common
from drkit.core.errors import ConfigError
from drkit.core.secret import Secret


def _index(args: argparse.Namespace, env: Mapping[str, str]) -> tuple[Any, Any, list[Any], Any, dict[str, Any]]:
    from drkit.configbackup import files_restore

    _, store = common.open_store(env, args)
    identities = common.load_identities(args, env)
    entry, index = files_restore.find_index(store, args.backup, args.source, identities)
    return store, entry, identities, files_restore, index


def cmd_files_list(args: argparse.Namespace, env: Mapping[str, str]) -> int:
    from rich.table import Table

    _, entry, _, files_restore, index = _index(args, env)
    chosen = files_restore.select(index, args.bucket or (), args.prefix)
    con = common.console()
    con.print(f"[bold]{args.source}[/bold] in config backup {entry.id} ({index.get('endpoint')}): "
              f"{len(index['objects'])} objects, {common.size(sum(o['size'] for o in index['objects']))}")
    table = Table("bucket", "key", "size", "sha256")
    for o in chosen[: args.limit]:
        table.add_row(o["bucket"], o["key"], common.size(o["size"]), o["sha256"][:16])
    con.print(table)
    if len(chosen) > args.limit:
        con.print(f"… and {len(chosen) - args.limit} more (--limit)")
    return 0


def cmd_files_restore(args: argparse.Namespace, env: Mapping[str, str]) -> int:
    from rich.progress import BarColumn, DownloadColumn, Progress, TransferSpeedColumn

    if bool(args.to) == bool(args.to_endpoint):
        raise ConfigError("say where to: --to DIR (a folder) or --to-endpoint URL (an S3 endpoint, e.g. the new "
                          "Supabase project's https://REF.supabase.co/storage/v1/s3)")
    store, entry, identities, files_restore, index = _index(args, env)
    chosen = files_restore.select(index, args.bucket or (), args.prefix)
    if not chosen:
        raise ConfigError(f"nothing matches in {args.source} of config backup {entry.id} "
                          f"(buckets: {', '.join(sorted({o['bucket'] for o in index['objects']})) or 'none'})")
    target: Any
    if args.to:
        target = files_restore.DirTarget(Path(args.to))
    else:
        target = files_restore.S3Target(_client(args, env), args.to_endpoint)
    con = common.console()
    total = sum(o["size"] for o in chosen)
    con.print(f"restore {len(chosen)} objects ({common.size(total)}) of {args.source} from config backup {entry.id} "
              f"into {target.describe()}; present and identical: left alone; present and different: "
              + ("replaced (--force)" if args.force else "left alone (conflict)"))
    if args.dry_run:
        con.print("dry run: nothing was changed")
        return 0
    with Progress("[progress.description]{task.description}", BarColumn(), DownloadColumn(), TransferSpeedColumn(),
                  console=con, transient=True) as bar:
        task = bar.add_task("restoring files", total=total)
        out = files_restore.restore(store, args.source, entry.id, chosen, identities, target, force=args.force,
                                    progress=lambda n: bar.advance(task, n))
    con.print(f"[green]restored[/green] {len(out.restored)} ({common.size(out.bytes)}), already there "
              f"{len(out.already)}, conflicts {len(out.conflicts)}, failed {len(out.failed)}; every restored file "
              "matched its SHA-256 in the backup's index")
    for name in out.conflicts[:20]:
        con.print(f"  [yellow]conflict[/yellow] {name}: present with other content (--force replaces it)")
    for line in out.failed[:20]:
        con.print(f"  [red]failed[/red] {line}")
    return 1 if out.failed or out.conflicts else 0


def _client(args: argparse.Namespace, env: Mapping[str, str]) -> Any:
    from drkit.platform.config import SpacesConfig
    from drkit.storage.store import make_client

    key, secret = env.get(args.key_env, "").strip(), env.get(args.secret_env, "").strip()
    if not key or not secret:
        raise ConfigError(f"{args.key_env} and {args.secret_env} must hold the target's S3 access key "
                          "(Supabase: Storage > S3 access keys of the new project)")
    return make_client(SpacesConfig(bucket="-", endpoint_url=args.to_endpoint.rstrip("/"), region=args.region,
                                    access_key=Secret(key), secret_key=Secret(secret), max_attempts=4))


def register(root: Any) -> None:
    g = root.add_parser("files", help="Storage file bytes backed up by config-backup's storage sources: list, "
                                      "restore (docs/config-backup.md)").add_subparsers(dest="command", required=True)
    for name, fn, what in (("list", cmd_files_list, "the objects a config backup holds for a storage source"),
                           ("restore", cmd_files_restore, "put them back, every byte checked, into a folder or "
                                                          "an S3 endpoint (a new Supabase project's)")):
        c = g.add_parser(name, help=what)
        c.add_argument("--source", required=True, help="the storage source's name in DRKIT_CONFIG_SOURCES")
        c.add_argument("--backup", default="latest", help="a config backup id, or latest (default): the newest in "
                                                          "which the source succeeded")
        c.add_argument("--bucket", action="append", help="only this bucket (repeatable)")
        c.add_argument("--prefix", default="", help="only keys that start with this")
        c.add_argument("--identity", help="age identity file (default: DRKIT_AGE_IDENTITY)")
        common.add_repo_args(c)
        c.set_defaults(fn=fn)
        if name == "list":
            c.add_argument("--limit", type=int, default=50, help="how many to list (default: %(default)s)")
            continue
        c.add_argument("--to", metavar="DIR", help="a folder: files go to DIR/<bucket>/<key>")
        c.add_argument("--to-endpoint", metavar="URL", help="an S3 endpoint: files go to the same bucket and key")
        c.add_argument("--region", default="us-east-1", help="the endpoint's region (default: %(default)s)")
        c.add_argument("--key-env", default="DRKIT_RESTORE_S3_KEY", help="variable holding the target's access key "
                                                                         "id (default: %(default)s)")
        c.add_argument("--secret-env", default="DRKIT_RESTORE_S3_SECRET", help="variable holding its secret key "
                                                                               "(default: %(default)s)")
        c.add_argument("--force", action="store_true", help="replace objects that are there with other content")
        c.add_argument("--dry-run", action="store_true", help="say what would be restored; change nothing")
