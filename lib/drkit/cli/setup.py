"""`drkit keygen` and `drkit config check`: keys for a new deployment, and the configuration checked before deploy."""

from __future__ import annotations

import argparse
import datetime as dt
from collections.abc import Mapping
from pathlib import Path

from drkit.cli.common import console, size, write_private
from drkit.core.errors import DrkitError
from drkit.crypto import encryption
from drkit.platform.config import Config
from drkit.storage.store import Store


def cmd_keygen(args: argparse.Namespace, env: Mapping[str, str]) -> int:
    from drkit.crypto import signing

    now = dt.datetime.now(dt.UTC).isoformat()
    out = Path(args.out or ("drkit-signing.key" if args.signing else "drkit-identity.txt"))
    if args.signing:
        secret, public = signing.generate()
        write_private(out, f"# drkit signing key, created {now}\n# drkit trusted key: {public}\n{secret}\n")
        print(f"signing key written to {out} (mode 0600). Give it to the functions that write backups only:")
        print("DRKIT_SIGNING_KEY (db-backup, config-backup). Trust its public key everywhere else:")
        print("DRKIT_TRUSTED_KEYS (restore-verify, dns-failover, health-probe, your .env), or a line")
        print(f"'# drkit trusted key: {public}' in your identity file. Standard tools: minisign -V -P {public}")
        print(public)
        return 0
    identity, recipient = encryption.generate_identity()
    write_private(out, f"# created: {now}\n# public key: {recipient}\n{identity}\n")
    print(f"identity written to {out} (mode 0600). Keep it OFF the deployment: store it in your password manager")
    print("and an offline copy. Only restore needs it. Put the public key in DRKIT_AGE_RECIPIENTS:")
    print(recipient)
    return 0


def cmd_config_check(args: argparse.Namespace, env: Mapping[str, str]) -> int:
    from rich.table import Table

    cfg = Config.from_env(env)
    con = console()
    con.print(f"[green]configuration is valid[/green]: bucket [bold]{cfg.spaces.bucket}[/bold] at "
              f"{cfg.spaces.endpoint_url}{' prefix ' + cfg.spaces.prefix if cfg.spaces.prefix else ''}, "
              f"{len(cfg.recipients)} age recipient(s)")
    table = Table("database", "connection", "exact counts", "pg_dump options", "retention")
    for db in cfg.databases.values():
        table.add_row(db.name, db.display, ", ".join(db.count_tables) or "-", " ".join(db.pg_dump_args) or "-",
                      str(db.retention))
    con.print(table)
    from drkit.platform.config import trusted_keys
    from drkit.postgres import connection

    for db in cfg.databases.values():
        warning = connection.tls_warning(db)
        if warning:
            con.print(f"[yellow]warning[/yellow]: {warning}")
    trusted = trusted_keys(env, required=False)
    if cfg.signing_key is not None:
        from drkit.crypto import signing

        mine = signing.public_of(cfg.signing_key.reveal())
        said = "is" if any(k.text == mine for k in trusted) else "is NOT (restores will refuse these backups)"
        con.print(f"signing key {signing.parse_public(mine).id_hex}: its public key {said} in DRKIT_TRUSTED_KEYS")
    from drkit.platform import envvars

    writers = {envvars.spaces_key_of(fn, env) for fn in (envvars.DB_BACKUP, envvars.CONFIG)}
    for exposed in (envvars.FAILOVER, envvars.HEALTH):
        if envvars.spaces_key_of(exposed, env) in writers:
            con.print(f"[yellow]warning[/yellow]: dr/{exposed} uses the same Spaces key as the backup writers; "
                      f"{'it answers the public web: ' if exposed == envvars.FAILOVER else ''}give it its own key "
                      f"limited to this bucket ({envvars.per_function_name('DRKIT_SPACES_KEY', exposed)}; "
                      "docs/configuration.md, least privilege)")
    if env.get("DRKIT_CONFIG_SOURCES", "").strip():
        from drkit.cli.config import print_sources

        print_sources(con, env)
    if args.connect:
        from drkit.postgres import binaries, snapshot

        store = Store(cfg.spaces)
        store.check_access()
        con.print(f"[green]bucket reachable[/green] ({cfg.spaces.bucket})")
        tool = binaries.tool_version("pg_dump")
        failed = 0
        for db in cfg.databases.values():
            try:
                with snapshot.SnapshotSession(db) as s:
                    info = s.inspect(())
                binaries.check_compatible(tool, info.server_version_num)
                con.print(f"[green]{db.name}[/green]: PostgreSQL {info.server_version}, "
                          f"{size(info.database_size)}, {len(info.tables)} tables; pg_dump {tool.version} is compatible")
            except DrkitError as exc:
                failed += 1
                con.print(f"[red]{db.name}[/red]: {exc}")
        return 1 if failed else 0
    return 0
