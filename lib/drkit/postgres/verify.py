"""Proof that a restored database holds what the backup's manifest says, in a scratch database on staging.

Rows, policies and triggers, operator checks; and the scratch databases such proofs are restored into
(named, and the ones a crashed run left cleaned up)."""

from __future__ import annotations

import datetime as dt
import re
import secrets
from collections.abc import Mapping
from typing import Any

from drkit.core import log
from drkit.core.errors import PgError
from drkit.platform.databases import DatabaseConfig
from drkit.policy import checks
from drkit.postgres import connection, dbadmin, inventory
from drkit.postgres.placement import Placement

CHECK_TIMEOUT_MS = 60_000


def content_checks(target: DatabaseConfig, dbname: str, manifest: dict[str, Any], operator: list[checks.Check],
                   backup_time: dt.datetime, not_restored: Mapping[str, str] | None = None) -> list[checks.Outcome]:
    """Table count, exact row counts against the manifest, policies, triggers and publication members,
    operator checks: in the restored database. `not_restored`: tables (`schema.name`) a placement left out
    on purpose, with why; they are named in the details, never counted as lost."""
    import psycopg
    from psycopg import sql

    out = []
    with connection.connect(target, dbname, autocommit=True) as conn:
        skipped = dict(not_restored or {})
        every = list(manifest.get("tables", []))
        want = [t for t in every if f"{t['schema']}.{t['name']}" not in skipped]
        left_out = len(every) - len(want)
        rows = conn.execute(
            "SELECT n.nspname, c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
            "WHERE c.relkind IN ('r', 'p') AND n.nspname NOT IN ('pg_catalog', 'information_schema') "
            "AND n.nspname NOT LIKE 'pg\\_toast%'").fetchall()
        have = {(str(s), str(n)) for s, n in rows}
        missing = [f"{t['schema']}.{t['name']}" for t in want if (t["schema"], t["name"]) not in have]
        out.append(checks.Outcome("table count", not missing,
                                  f"{len(have)} tables restored, manifest lists {len(every)}"
                                  + (f" ({left_out} left out by name, rows not compared)" if left_out else "")
                                  + (f"; missing: {', '.join(missing[:10])}" if missing else ""), str(len(have))))
        counted = [t for t in want if t.get("exact_rows") is not None]
        wrong = []
        for t in counted:
            n = conn.execute(sql.SQL("SELECT count(*) FROM ONLY {}.{}").format(
                sql.Identifier(t["schema"]), sql.Identifier(t["name"]))).fetchone()[0]
            if int(n) != int(t["exact_rows"]):
                wrong.append(f"{t['schema']}.{t['name']} {n} != {t['exact_rows']}")
        total = sum(int(t["exact_rows"]) for t in counted)
        out.append(checks.Outcome("row counts", not wrong,
                                  f"{len(counted)} tables, {total:,} rows as in the manifest" if not wrong
                                  else "mismatch: " + "; ".join(wrong[:10]), str(total)))
        objects = manifest.get("objects")
        if isinstance(objects, dict) and objects.get("format") == inventory.FORMAT:
            try:
                with conn.transaction():
                    restored = inventory.take(conn.cursor())
                out.extend(inventory.compare(objects, restored, exclude=set(skipped)))
            except psycopg.Error as exc:
                out.append(checks.Outcome("policies", False, "the restored copy's catalogs could not be read: "
                                          f"{connection.describe_pg_error(exc)}", None))
        for check in operator:
            try:
                with conn.transaction():
                    conn.execute(f"SET LOCAL statement_timeout = {CHECK_TIMEOUT_MS}")
                    conn.execute("SET LOCAL transaction_read_only = on")
                    cur = conn.execute(check.sql)  # operator-configured SQL, read-only transaction
                    got = cur.fetchall()
                if len(got) != 1 or len(got[0]) != 1:
                    out.append(checks.Outcome(check.name, False, f"query returned {len(got)} rows; it must return "
                                              "one row with one column", None))
                    continue
                out.append(checks.evaluate(check, got[0][0], backup_time))
            except psycopg.Error as exc:
                out.append(checks.Outcome(check.name, False, f"query failed: {connection.describe_pg_error(exc)}", None))
    return out


def staging_placement(staging: DatabaseConfig, scratch: str, manifest: dict[str, Any]) -> Placement:
    """What this staging server can take of the backup: missing roles NOLOGIN, unavailable extensions skipped."""
    import psycopg

    objects = manifest.get("objects") if isinstance(manifest.get("objects"), dict) else {}
    try:
        with connection.connect(staging, scratch) as conn:
            facts = inventory.target(conn.cursor())
            conn.rollback()
    except psycopg.Error as exc:
        raise PgError(f"staging server: cannot read {scratch}: {connection.describe_pg_error(exc)}") from None
    tables = tuple(f"{t['schema']}.{t['name']}" for t in manifest.get("tables", []))
    return Placement("plain", objects or {}, facts, tables)


def skip_check(skipped: list[str], previous: list[str] | None, accepted: bool) -> checks.Outcome:
    """The skip list must not grow between two verifications (a new extension staging lacks, say)."""
    if not skipped:
        return checks.Outcome("skipped objects", True, "none: everything in the backup was restored", "0")
    named = ", ".join(skipped[:12]) + (f" and {len(skipped) - 12} more" if len(skipped) > 12 else "")
    new = sorted(set(skipped) - set(previous or []))
    if previous is not None and new and not accepted:
        return checks.Outcome("skipped objects", False,
                              f"{len(new)} more skipped than at the last verification: {', '.join(new[:12])}. Install "
                              "what staging lacks, or accept the list: invoke restore-verify with accept_skips:true",
                              str(len(skipped)))
    why = " (accepted by the operator)" if accepted and new else ""
    return checks.Outcome("skipped objects", True, f"{len(skipped)} skipped by name{why}: {named}", str(len(skipped)))


# -- scratch databases on the staging server ---------------------------------------------------
SCRATCH_PREFIX = "drkit_verify_"
SCRATCH_RE = re.compile(r"^drkit_verify_(\d{14})_[0-9a-f]{4}_")
LEFTOVER_AGE = dt.timedelta(hours=1)


def cleanup_leftovers(staging: DatabaseConfig, now: dt.datetime) -> list[str]:
    """Drop the scratch databases a crashed run left (stamped over an hour ago), never a concurrent run's."""
    dropped = []
    for name in dbadmin.list_databases(staging, SCRATCH_PREFIX):
        m = SCRATCH_RE.match(name)
        if not m:
            continue
        made = dt.datetime.strptime(m.group(1), "%Y%m%d%H%M%S").replace(tzinfo=dt.UTC)
        if now - made > LEFTOVER_AGE:
            dbadmin.drop_database(staging, name)
            dropped.append(name)
            log.warning("dropped a scratch database left by an earlier run", database_name=name)
    return dropped


def scratch_name(db: str, now: dt.datetime) -> str:
    return f"{SCRATCH_PREFIX}{now:%Y%m%d%H%M%S}_{secrets.token_hex(2)}_{db}"[:63]
