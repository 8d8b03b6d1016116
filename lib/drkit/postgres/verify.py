"""Proof that a restored database holds what the backup's manifest says: rows, policies and triggers, operator checks."""

from __future__ import annotations

import datetime as dt
from typing import Any

from drkit.platform.databases import DatabaseConfig
from drkit.policy import checks
from drkit.postgres import connection, inventory

CHECK_TIMEOUT_MS = 60_000


def content_checks(target: DatabaseConfig, dbname: str, manifest: dict[str, Any], operator: list[checks.Check],
                   backup_time: dt.datetime) -> list[checks.Outcome]:
    """Table count, exact row counts against the manifest, operator checks: in the restored database."""
    import psycopg
    from psycopg import sql

    out = []
    with connection.connect(target, dbname, autocommit=True) as conn:
        want = list(manifest.get("tables", []))
        rows = conn.execute(
            "SELECT n.nspname, c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
            "WHERE c.relkind IN ('r', 'p') AND n.nspname NOT IN ('pg_catalog', 'information_schema') "
            "AND n.nspname NOT LIKE 'pg\\_toast%'").fetchall()
        have = {(str(s), str(n)) for s, n in rows}
        missing = [f"{t['schema']}.{t['name']}" for t in want if (t["schema"], t["name"]) not in have]
        out.append(checks.Outcome("table count", not missing,
                                  f"{len(have)} tables restored, manifest lists {len(want)}"
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
                out.extend(inventory.compare(objects, restored))
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
