"""`drkit restore`: the operator's restore for a real incident (plan, guard, execute).

* A plan first: which backup (latest, an id/key, or the newest before a time),
  the target server and database, whether it exists and holds tables, the
  strategy, an estimate from restore-verify's measured throughput.
* A guard: a target database that holds tables is only restored into with
  `--force` (which adds pg_restore's --clean --if-exists) and the database
  name typed at the prompt, or `--yes-i-know NAME` for scripts.
* Streamed (no local copy), or with `--download-to PATH` a verified local
  archive restored with `pg_restore --jobs N` (the fastest for large databases).
* Afterwards, exact row counts are compared with the manifest, and an audit
  event records who restored what where.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from . import audit, catalog, layout, pg, restore
from .config import DatabaseConfig, Secret, parse_db_url
from .errors import ConfigError, PgError
from .restore_verify import content_checks
from .store import Store


@dataclass(frozen=True)
class Plan:
    entry: catalog.Entry
    manifest: dict[str, Any]
    server: DatabaseConfig  # the target server, connected through its maintenance database
    dbname: str
    exists: bool
    tables: int
    server_version_num: int
    strategy: str
    download_to: str | None
    jobs: int
    options: tuple[str, ...]
    estimate_s: float
    replace: bool = False  # drop and recreate the target database (it holds tables; --force)

    def lines(self) -> list[str]:
        m, src = self.manifest, self.manifest.get("source", {})
        mode = (f"download to {self.download_to}, then pg_restore --jobs {self.jobs}" if self.download_to
                else "streamed from Spaces (no local copy)")
        return [
            f"backup   {self.entry.database} {self.entry.id}  taken {m['started_at']}",
            f"         PostgreSQL {src.get('server_version')} at {src.get('display')}; dump {m['bytes_in'] / 1e6:.1f} MB, "
            f"stored {m['bytes_out'] / 1e6:.1f} MB; verified: {'yes' if self.entry.verified else 'no'}",
            f"target   {self.server.display.rsplit('/', 1)[0]}/{self.dbname}  (PostgreSQL "
            f"{self.server_version_num // 10000}; "
            + (f"exists, {self.tables} tables" if self.exists else "will be created") + ")",
            *([f"         the database will be DROPPED and recreated: its {self.tables} tables are lost"]
              if self.replace else []),
            f"method   {mode}; {'pg_restore directly' if self.strategy == 'direct' else 'script through psql (older server)'}; "
            f"options {' '.join(self.options)}",
            f"estimate ~{self.estimate_s:.0f} s (from restore-verify's last measured throughput)",
        ]


def target_from_url(url: str) -> tuple[DatabaseConfig, str]:
    problems: list[str] = []
    params, password = parse_db_url("target", url, problems)
    if problems:
        raise ConfigError(problems)
    dbname = params["dbname"]
    # connect through another database, so that the target itself can be dropped and recreated
    server = dict(params, dbname="template1" if dbname == "postgres" else "postgres")
    return DatabaseConfig("target", Secret(url), server, Secret(password) if password else None), dbname


def choose(store: Store, database: str, backup: str, before: str | None) -> catalog.Entry:
    if before is None:
        return catalog.find(store, backup, database)
    try:
        limit = dt.datetime.fromisoformat(before.replace("Z", "+00:00"))
    except ValueError:
        raise ConfigError(f"--before {before!r} is not a time like 2026-11-26T02:00 (UTC unless an offset is given)") from None
    limit = limit if limit.tzinfo else limit.replace(tzinfo=dt.UTC)
    older = [e for e in catalog.list_backups(store, database) if e.complete and e.time <= limit]
    if not older:
        raise ConfigError(f"no complete backup of {database!r} taken at or before {limit.isoformat()}")
    return older[0]


def make_plan(store: Store, database: str, backup: str, before: str | None, target_url: str, *,
              download_to: str | None, jobs: int, force: bool, no_privileges: bool) -> Plan:
    entry = choose(store, database, backup, before)
    manifest = catalog.read_manifest(store, entry)
    server, dbname = target_from_url(target_url)
    version = pg.server_version_num(server)
    exists = pg.database_exists(server, dbname)
    tables = pg.user_table_count(server, dbname) if exists else 0
    strategy, _ = pg.restore_strategy(version)
    options = ["--no-owner"]
    if no_privileges:
        options.append("--no-privileges")
    # Exact replacement is drop + create (pg_restore --clean fails on partitioned tables and
    # leaves objects the backup does not have).
    replace = bool(force and tables)
    prior = store.get_json_or_none(layout.verify_state_key(database)) or {}
    rate = float((prior.get("last_success") or {}).get("throughput_mb_s") or 20.0)
    estimate = manifest["bytes_in"] / 1e6 / rate + 5
    return Plan(entry, manifest, server, dbname, exists, tables, version, strategy, download_to, max(1, jobs),
                tuple(options), estimate, replace)


def guard(plan: Plan, *, force: bool, yes_i_know: str | None, ask: Callable[[str], str] | None) -> None:
    """Refuse to restore over a database that holds tables unless the operator says so, twice."""
    if not plan.tables:
        return
    if not force:
        raise ConfigError(f"database {plan.dbname!r} already has {plan.tables} tables; restoring into it replaces "
                          "them: add --force (and type the name, or --yes-i-know NAME), or restore into a new "
                          "database and switch over")
    if yes_i_know is not None:
        if yes_i_know != plan.dbname:
            raise ConfigError(f"--yes-i-know {yes_i_know!r} does not name the target database {plan.dbname!r}")
        return
    if ask is None:
        raise ConfigError("no terminal to confirm on: pass --yes-i-know NAME")
    typed = ask(f"Type the database name ({plan.dbname}) to replace its {plan.tables} tables: ").strip()
    if typed != plan.dbname:
        raise ConfigError("confirmation did not match; nothing was changed")


def execute(store: Store, plan: Plan, identities: list[Any], progress: Callable[[int], None] | None = None) -> dict[str, Any]:
    if plan.replace:
        try:
            pg.drop_database(plan.server, plan.dbname)
        except PgError as exc:
            raise PgError(f"{exc}. Without the right to drop it (managed services such as Supabase), restore into "
                          "a new database or project and switch the application over (docs/runbook.md)") from None
        audit.record(store, "cli", "database.dropped", {"target": plan.dbname, "tables": plan.tables,
                                                         "reason": f"restore of {plan.entry.id}"})
    if not plan.exists or plan.replace:
        pg.create_database(plan.server, plan.dbname)
    detail: dict[str, Any] = {"database": plan.entry.database, "backup_id": plan.entry.id,
                              "target": f"{plan.server.display.rsplit('/', 1)[0]}/{plan.dbname}"}
    try:
        if plan.download_to:
            size = restore.download(store, plan.entry, identities, plan.download_to, manifest=plan.manifest,
                                    progress=progress)
            duration, strategy = restore.restore_file(plan.download_to, plan.server, plan.dbname, jobs=plan.jobs,
                                                      options=plan.options)
            detail.update(mode="file", archive=plan.download_to, archive_bytes=size, duration_s=duration,
                          strategy=strategy)
        else:
            done = restore.restore(store, plan.entry, identities, plan.server, plan.dbname, manifest=plan.manifest,
                                   options=plan.options, progress=progress)
            detail.update(mode="stream", duration_s=done.duration_s, throughput_mb_s=done.throughput_mb_s,
                          strategy=done.strategy)
    except Exception as exc:
        audit.record(store, "cli", "restore.failed", detail | {"error": str(exc)})
        raise
    outcomes = content_checks(plan.server, plan.dbname, plan.manifest, [], plan.entry.time)
    detail["checks"] = [o.to_dict() for o in outcomes]
    detail["ok"] = all(o.passed for o in outcomes)
    audit.record(store, "cli", "restore.completed", detail)
    if not detail["ok"]:
        raise PgError("restore finished but the content does not match the manifest: "
                      + "; ".join(o.detail for o in outcomes if not o.passed))
    return detail
