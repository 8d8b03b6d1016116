"""`drkit restore`: the operator's restore for a real incident (plan, guard, execute).

* A plan first: which backup (latest, an id/key, or the newest before a time),
  the target server and database, whether it exists and holds tables, the
  route, and an estimate that says where its throughput comes from.
* A guard: a target database that holds tables is only replaced with `--force`
  and the database name typed at the prompt, or `--yes-i-know NAME` for scripts.
* Replace without risk: the backup is restored into a new scratch database on
  the target server (streamed in one transaction, or with `--download-to PATH`
  a verified 0600 local archive and `pg_restore --jobs N` on PostgreSQL 17+),
  its tables and exact row counts are checked against the manifest, and only
  then do names change, in one transaction: the old database is kept under a
  dated name (`<name>_before_<stamp>`) until the operator drops it, and
  `drkit restore swap-back` puts it back. A failure at any step drops the
  scratch database and leaves the old one exactly as it was.
* A role that may not create or rename databases (managed services) gets a
  plan that says what to do instead; an existing empty database it owns is
  restored into directly, in one transaction.
* A Supabase project as the target (`--target` its connection string, as `postgres`) gets
  the "supabase" route: never dropped, renamed or recreated; refused unless fresh (no tables
  outside the platform's schemas, no auth users, no storage objects) or forced; restored into
  directly in one transaction with the selective plan of `placement` (custom roles, user
  schemas, the user's rows in auth and storage, their triggers and policies,
  `session_replication_role = replica`); then every table's rows are compared with the manifest.
* Every step is an audit event: who restored what where, and what was kept.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from drkit.core.errors import ConfigError, PgError
from drkit.core.secret import Secret
from drkit.platform.databases import DatabaseConfig, parse_db_url
from drkit.policy import layout
from drkit.postgres import connection, dbadmin, inventory, restore
from drkit.postgres.placement import Placement
from drkit.postgres.platform import PLATFORM_SCHEMAS
from drkit.postgres.verify import content_checks
from drkit.storage import audit, catalog
from drkit.storage.store import Store

DEFAULT_RATE_MB_S = 20.0
SCRATCH_MARK = "_drkit_"


@dataclass(frozen=True)
class Plan:
    entry: catalog.Entry
    manifest: dict[str, Any]
    server: DatabaseConfig  # the target server, connected through its maintenance database
    dbname: str
    exists: bool
    tables: int
    server_version_num: int
    download_to: str | None
    jobs: int  # what will really run: > 1 only for --download-to into PostgreSQL 17+
    options: tuple[str, ...]
    estimate_s: float
    estimate_source: str
    route: str  # "swap": scratch database, checks, rename; "direct": into the existing empty database;
    # "supabase": into a Supabase project's database, selectively (never dropped or renamed)
    stamp: str
    placement: Placement | None = None
    not_fresh: str = ""  # why a Supabase target is not a new project ("" when it is)
    verified: bool = False  # restore-verify's signed marker says its last verification passed
    keep_jobs: bool = False  # --keep-jobs: the restored copy is not disarmed

    @property
    def scratch(self) -> str:
        return scratch_name(self.dbname, self.stamp)

    @property
    def keep_as(self) -> str | None:
        return kept_name(self.dbname, self.stamp) if self.exists else None

    def lines(self) -> list[str]:
        m, src = self.manifest, self.manifest.get("source", {})
        mode = (f"download to {self.download_to} (0600), then pg_restore "
                + (f"--jobs {self.jobs}" if self.jobs > 1 else "in one transaction (one job)")
                if self.download_to else "streamed from Spaces (no local copy), in one transaction")
        if self.route == "supabase":
            steps = (f"restore into the Supabase project's database {self.dbname} (never dropped, renamed or "
                     "recreated), one transaction, then compare every table's rows with the manifest")
        elif self.route == "direct":
            steps = f"restore directly into the existing empty database {self.dbname} (one transaction)"
        elif self.exists:
            steps = (f"restore into {self.scratch}, check tables and rows, then rename {self.dbname} -> "
                     f"{self.keep_as} (kept) and {self.scratch} -> {self.dbname}")
        else:
            steps = f"restore into {self.scratch}, check tables and rows, then rename it to {self.dbname}"
        target_state = (("a Supabase project, " + (f"NOT fresh: {self.not_fresh}" if self.not_fresh else "fresh"))
                        if self.route == "supabase" else
                        (f"exists, {self.tables} tables" if self.exists else "will be created"))
        objects = m.get("objects") or {}
        lost = [f"cannot carry: {x}" for x in objects.get("not_in_dump") or []]
        return [
            f"backup   {self.entry.database} {self.entry.id}  taken {m['started_at']}",
            f"         PostgreSQL {src.get('server_version')} at {src.get('display')}; dump {m['bytes_in'] / 1e6:.1f} MB, "
            f"stored {m['bytes_out'] / 1e6:.1f} MB; verified: {'yes' if self.verified else 'no'}",
            f"target   {self.server.display.rsplit('/', 1)[0]}/{self.dbname}  (PostgreSQL "
            f"{self.server_version_num // 10000}; "
            + target_state + ")",
            f"steps    {steps}; any failure leaves {self.dbname} as it is",
            *(f"         {line}" for line in (self.placement.lines() if self.placement else [])),
            f"method   {mode}; options {' '.join(self.options)}",
            f"estimate ~{self.estimate_s:.0f} s ({self.estimate_source})",
            *(f"note     {line}" for line in lost),
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


def choose(store: Store, database: str, backup: str, before: str | None, *,
           accept_rollback: bool = False) -> catalog.Entry:
    if before is None:
        return catalog.find(store, backup, database, accept_rollback=accept_rollback)
    try:
        limit = dt.datetime.fromisoformat(before.replace("Z", "+00:00"))
    except ValueError:
        raise ConfigError(f"--before {before!r} is not a time like 2026-11-26T02:00 (UTC unless an offset is given)") from None
    limit = limit if limit.tzinfo else limit.replace(tzinfo=dt.UTC)
    older = [e for e in catalog.trusted_view(store, database, dt.datetime.now(dt.UTC)).trusted if e.time <= limit]
    if not older:
        raise ConfigError(f"no complete backup of {database!r} taken at or before {limit.isoformat()}")
    return older[0]


def make_plan(store: Store, database: str, backup: str, before: str | None, target_url: str, *,
              download_to: str | None, jobs: int, force: bool, no_privileges: bool, accept_rollback: bool = False,
              now: dt.datetime | None = None, keep_jobs: bool = False) -> Plan:
    from dataclasses import replace

    from drkit.storage import markers

    plan = _make_plan(store, database, backup, before, target_url, download_to=download_to, jobs=jobs, force=force,
                      no_privileges=no_privileges, accept_rollback=accept_rollback, now=now, keep_jobs=keep_jobs)
    marks = markers.read_markers(store, [plan.entry], now or dt.datetime.now(dt.UTC))
    return replace(plan, verified=plan.entry.id in marks.verified, keep_jobs=keep_jobs)


def _make_plan(store: Store, database: str, backup: str, before: str | None, target_url: str, *,
               download_to: str | None, jobs: int, force: bool, no_privileges: bool, accept_rollback: bool,
               now: dt.datetime | None, keep_jobs: bool = False) -> Plan:
    import os

    if download_to and os.path.lexists(download_to):
        raise ConfigError(f"--download-to {download_to} exists: name a new file (it would be replaced, and "
                          "removed if the restore fails)")
    entry = choose(store, database, backup, before, accept_rollback=accept_rollback)
    manifest = catalog.read_manifest(store, entry)  # signed by db-backup's key, or nothing happens
    server, dbname = target_from_url(target_url)
    version = connection.server_version_num(server)
    exists = dbadmin.database_exists(server, dbname)
    facts = _target_facts(server, dbname) if exists else None
    if facts is not None and facts["supabase"]:
        return _supabase_plan(store, entry, manifest, server, dbname, facts, version, download_to, no_privileges,
                              now or dt.datetime.now(dt.UTC), keep_jobs)
    tables = dbadmin.user_table_count(server, dbname) if exists else 0
    options = ["--no-owner"]
    if no_privileges:
        options.append("--no-privileges")
    can = dbadmin.rights(server, dbname)
    if can.can_create and (not exists or can.can_rename):
        route = "swap"
    elif exists and not tables and can.owns:
        route = "direct"  # a managed service's empty database: one transaction straight into it
    else:
        why = ("may not create databases" if not can.can_create else
               f"may not rename {dbname!r} (it needs to own it, with CREATEDB)")
        raise ConfigError(
            f"the target role {why}, so drkit cannot restore beside {dbname!r} and swap it in without risk. "
            f"Restore into a new database (or a new Supabase project) as a role with CREATEDB, check it, and "
            f"point the application at it; or grant CREATEDB and ownership of {dbname!r} to this role "
            f"(docs/runbook.md). Nothing was changed.")
    parallel = bool(download_to) and route == "swap" and version >= 170000 and jobs > 1
    estimate, source = _estimate(store, database, manifest)
    stamp = _free_stamp(server, dbname, now or dt.datetime.now(dt.UTC))
    return Plan(entry, manifest, server, dbname, exists, tables, version, download_to,
                jobs if parallel else 1, tuple(options), estimate, source, route, stamp)


def _target_facts(server: DatabaseConfig, dbname: str) -> dict[str, Any]:
    import psycopg

    try:
        with connection.connect(server, dbname) as conn:
            facts = inventory.target(conn.cursor())
            if facts["supabase"]:
                facts["fresh"] = _freshness(conn)
            conn.rollback()
    except psycopg.Error as exc:
        raise PgError(f"cannot read the target {server.display.rsplit('/', 1)[0]}/{dbname}: "
                      f"{connection.describe_pg_error(exc)}") from None
    return facts


def _freshness(conn: Any) -> str:
    """"" for a new project's database, else what is already in it."""
    platform = sorted(PLATFORM_SCHEMAS)
    tables = conn.execute(
        "SELECT count(*) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE c.relkind IN "
        "('r', 'p', 'v', 'm', 'f') AND n.nspname <> ALL(%s) AND n.nspname NOT IN ('pg_catalog', 'information_schema') "
        "AND n.nspname !~ '^pg_'", (platform,)).fetchone()[0]
    found = [f"{tables} tables or views outside the platform's schemas"] if tables else []
    for table in ("auth.users", "storage.objects"):
        if conn.execute("SELECT to_regclass(%s) IS NOT NULL", (table,)).fetchone()[0]:
            rows = conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0]
            if rows:
                found.append(f"{rows} rows in {table}")
    return "; ".join(found)


def _supabase_plan(store: Store, entry: catalog.Entry, manifest: dict[str, Any], server: DatabaseConfig,
                   dbname: str, facts: dict[str, Any], version: int, download_to: str | None, no_privileges: bool,
                   now: dt.datetime, keep_jobs: bool = False) -> Plan:
    if download_to:
        raise ConfigError("--download-to is for a server drkit may create databases on; a Supabase project is "
                          "restored streamed into its own database. Nothing was changed.")
    objects = manifest.get("objects") or {}
    if objects.get("format") != inventory.FORMAT:
        raise ConfigError(f"backup {entry.id} has no catalog inventory (taken by an older drkit): it cannot be "
                          "restored selectively into a Supabase project. Take a new backup, or restore it into a "
                          "plain PostgreSQL server. Nothing was changed.")
    tables = tuple(f"{t['schema']}.{t['name']}" for t in manifest.get("tables", []))
    placement = Placement("supabase", objects, facts, tables, keep_jobs=keep_jobs)
    options = ["--no-owner"] + (["--no-privileges"] if no_privileges else [])
    server_db = DatabaseConfig(server.name, server.url, dict(server.params, dbname=dbname), server.password)
    estimate, source = _estimate(store, entry.database, manifest)
    return Plan(entry, manifest, server_db, dbname, True, 0, version, None, 1, tuple(options), estimate, source,
                "supabase", now.strftime("%Y%m%d%H%M%S"), placement, str(facts.get("fresh") or ""))


def _estimate(store: Store, database: str, manifest: dict[str, Any]) -> tuple[float, str]:
    """Seconds the restore should take, and where the throughput comes from (restore-verify's last pass)."""
    from drkit.core.errors import DrkitError
    from drkit.storage import state

    try:
        verified = state.read(store, layout.verify_state_key(database), state.VerifyState, dt.datetime.now(dt.UTC))
    except DrkitError:  # an unbelieved or unreadable state only costs the estimate its measurement
        verified = None
    last = verified.last_success if verified else None
    measured = last.throughput_mb_s if last else None
    if last and measured:
        rate, source = measured, f"restore-verify measured {measured:.0f} MB/s at {last.at.isoformat()}"
    else:
        rate, source = DEFAULT_RATE_MB_S, (f"assumed {DEFAULT_RATE_MB_S:.0f} MB/s: no restore-verify run has "
                                           f"measured {database} yet")
    return manifest["bytes_in"] / 1e6 / rate + 5, source


def scratch_name(dbname: str, stamp: str) -> str:
    return f"{dbname[:36]}{SCRATCH_MARK}{stamp}"  # at most 63 characters


def kept_name(dbname: str, stamp: str) -> str:
    return f"{dbname[:36]}_before_{stamp}"


def _free_stamp(server: DatabaseConfig, dbname: str, now: dt.datetime) -> str:
    """A time stamp whose scratch and kept names are both unused (two restores in one second)."""
    base = now.strftime("%Y%m%d%H%M%S")
    for stamp in [base, *(f"{base}_{i}" for i in range(2, 10))]:
        if not any(dbadmin.database_exists(server, n) for n in (scratch_name(dbname, stamp), kept_name(dbname, stamp))):
            return stamp
    raise ConfigError(f"too many restores of {dbname!r} in one second; wait a moment")


def guard(plan: Plan, *, force: bool, yes_i_know: str | None, ask: Callable[[str], str] | None) -> None:
    """Refuse to replace a database that holds tables unless the operator says so, twice."""
    if plan.route == "supabase":
        if plan.not_fresh and not force:
            raise ConfigError(f"the target project is not a new one ({plan.not_fresh}): restoring would mix two "
                              "databases. Create a new project and restore into it, or add --force to load into this "
                              "one anyway (nothing is dropped; any conflict rolls the whole restore back). "
                              "Nothing was changed.")
        return
    if not plan.tables:
        return
    if not force:
        raise ConfigError(f"database {plan.dbname!r} already has {plan.tables} tables; restoring replaces it: add "
                          "--force (and type the name, or --yes-i-know NAME). The old database is kept as "
                          f"{plan.keep_as} until you drop it")
    if yes_i_know is not None:
        if yes_i_know != plan.dbname:
            raise ConfigError(f"--yes-i-know {yes_i_know!r} does not name the target database {plan.dbname!r}")
        return
    if ask is None:
        raise ConfigError("no terminal to confirm on: pass --yes-i-know NAME")
    typed = ask(f"Type the database name ({plan.dbname}) to replace it (it is kept as {plan.keep_as}): ").strip()
    if typed != plan.dbname:
        raise ConfigError("confirmation did not match; nothing was changed")


def execute(store: Store, plan: Plan, identities: list[Any], progress: Callable[[int], None] | None = None) -> dict[str, Any]:
    into = plan.dbname if plan.route in ("direct", "supabase") else plan.scratch
    detail: dict[str, Any] = {"database": plan.entry.database, "backup_id": plan.entry.id, "route": plan.route,
                              "target": f"{plan.server.display.rsplit('/', 1)[0]}/{plan.dbname}"}
    created = committed = False  # committed: an in-place restore (direct, supabase) has written the target
    try:
        if plan.route == "swap":
            dbadmin.create_database(plan.server, into)
            created = True
        if plan.download_to:
            size = restore.download(store, plan.entry, identities, plan.download_to, manifest=plan.manifest,
                                    progress=progress)
            duration, strategy, jobs = restore.restore_file(plan.download_to, plan.server, into, jobs=plan.jobs,
                                                            options=plan.options, keep_jobs=plan.keep_jobs)
            detail.update(mode="file", archive=plan.download_to, archive_bytes=size, duration_s=duration,
                          strategy=strategy, jobs=jobs)
        else:
            done = restore.restore(store, plan.entry, identities, plan.server, into, manifest=plan.manifest,
                                   options=plan.options, progress=progress, placement=plan.placement,
                                   keep_jobs=plan.keep_jobs)
            detail.update(mode="stream", duration_s=done.duration_s, throughput_mb_s=done.throughput_mb_s,
                          strategy=done.strategy)
            detail["disarmed"] = done.disarmed.to_dict() if done.disarmed else "kept (--keep-jobs)"
            detail["disarmed_sentence"] = (done.disarmed.sentence() if done.disarmed else
                                           "jobs kept armed (--keep-jobs)")
            if plan.placement is not None:
                detail["roles_created"] = plan.placement.roles_created
                detail["skipped"] = skipped_summary(done.skipped)
                if plan.route == "supabase":  # cron.job is the platform's: the jobs are listed to schedule again
                    objects = plan.manifest.get("objects") or {}
                    detail["cron_jobs_to_schedule"] = list(objects.get("cron_jobs") or [])
        committed = plan.route != "swap"
        outcomes = content_checks(plan.server, into, plan.manifest, [], plan.entry.time,
                                  not_restored=plan.placement.not_restored() if plan.placement else None)
        detail["checks"] = [o.to_dict() for o in outcomes]
        if not all(o.passed for o in outcomes):
            raise PgError((f"the restore was committed into {plan.dbname}, but it " if committed else
                           "the restored copy ") + "does not match the manifest: "
                          + "; ".join(o.detail for o in outcomes if not o.passed))
        if plan.route == "swap":
            dbadmin.swap_databases(plan.server, plan.dbname, into, plan.keep_as)
            created = False
            detail["kept"] = plan.keep_as
    except BaseException as exc:
        if plan.download_to:
            _remove(plan.download_to)  # no plaintext left behind by a restore that did not happen
        if created:
            _drop_scratch(plan.server, into)
        audit.record(store, "cli", "restore.failed", detail | {"error": str(exc) or type(exc).__name__,
                                                               "target_unchanged": not committed})
        raise
    detail["ok"] = True
    audit.record(store, "cli", "restore.completed", detail)
    return detail


def skipped_summary(skipped: Sequence[tuple[str, str]]) -> dict[str, Any]:
    """Entries a placement left out: counted by reason, named (up to 50 per reason)."""
    by: dict[str, list[str]] = {}
    for label, why in skipped:
        by.setdefault(why, []).append(label)
    return {why: {"count": len(labels), "entries": labels[:50]} for why, labels in sorted(by.items())}


def _remove(path: str) -> None:
    import os

    for p in (path, f"{path}.partial"):
        if os.path.exists(p):
            os.unlink(p)


def _drop_scratch(server: DatabaseConfig, name: str) -> None:
    try:
        dbadmin.drop_database(server, name)
    except PgError as exc:  # said, never hidden: the operator must drop it by hand
        raise PgError(f"{exc}; the scratch database {name!r} is left behind: DROP DATABASE \"{name}\"") from None


def swap_back(store: Store, target_url: str, kept: str, *, now: dt.datetime | None = None) -> dict[str, Any]:
    """Undo a replacement: `kept` (`<name>_before_<stamp>`) becomes the target again; the restored
    database is kept as `<name>_restored_<stamp>`."""
    server, dbname = target_from_url(target_url)
    if not kept.startswith(kept_name(dbname, "")):
        raise ConfigError(f"{kept!r} is not a database a restore of {dbname!r} kept ({kept_name(dbname, '<stamp>')})")
    if not dbadmin.database_exists(server, kept):
        raise ConfigError(f"database {kept!r} does not exist on {server.display.rsplit('/', 1)[0]}")
    stamp = (now or dt.datetime.now(dt.UTC)).strftime("%Y%m%d%H%M%S")
    restored_as = f"{dbname[:36]}_restored_{stamp}"
    dbadmin.swap_databases(server, dbname, kept, restored_as)
    detail = {"target": dbname, "restored_from": kept, "kept": restored_as}
    audit.record(store, "cli", "restore.swapped_back", detail)
    return detail
