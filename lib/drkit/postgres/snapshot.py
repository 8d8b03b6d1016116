"""The dump's source: one REPEATABLE READ snapshot pg_dump imports, and exact row counts taken in it."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from drkit.core import log
from drkit.core.errors import PgError
from drkit.platform.databases import DatabaseConfig
from drkit.postgres.connection import connect, describe_pg_error


@dataclass
class TableInfo:
    schema: str
    name: str
    kind: str  # "table" | "partitioned" | "partition"
    estimated_rows: int | None
    exact_rows: int | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "schema": self.schema,
            "name": self.name,
            "kind": self.kind,
            "estimated_rows": self.estimated_rows,
            "exact_rows": self.exact_rows,
        }


@dataclass
class SourceInfo:
    server_version: str
    server_version_num: int
    database_size: int
    snapshot: str | None
    tables: list[TableInfo] = field(default_factory=list)
    missing_count_tables: list[str] = field(default_factory=list)
    objects: dict[str, Any] = field(default_factory=dict)  # inventory.take, or {"error": …}


_TABLES_SQL = """
SELECT n.nspname, c.relname, c.relkind::text, c.relispartition, c.reltuples::bigint
FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE c.relkind IN ('r', 'p')
  AND n.nspname NOT IN ('pg_catalog', 'information_schema')
  AND n.nspname NOT LIKE 'pg\\_toast%' AND n.nspname NOT LIKE 'pg\\_temp%'
ORDER BY 1, 2
"""


class SnapshotSession:
    """A read-only REPEATABLE READ transaction whose snapshot pg_dump imports.

    Row counts taken here and the dump see exactly the same data, even on a
    busy database. The transaction must stay open until pg_dump has finished
    (`--snapshot` needs the exporting transaction alive), so use as a context
    manager around the whole dump. Requires a direct or session-mode
    connection (transaction-mode poolers cannot export snapshots): if export
    fails, the dump still runs with its own snapshot and `snapshot` is None.
    """

    def __init__(self, db: DatabaseConfig):
        self.db = db
        self.conn: Any = None

    def __enter__(self) -> SnapshotSession:
        self.conn = connect(self.db)
        return self

    def __exit__(self, *exc: Any) -> None:
        try:
            self.conn.rollback()
            self.conn.close()
        except Exception:  # noqa: BLE001 - closing a connection that may be broken
            log.debug("snapshot connection close failed", database=self.db.name)

    def inspect(self, count_tables: Sequence[str]) -> SourceInfo:
        import psycopg
        from psycopg import sql

        cur = self.conn.cursor()
        try:
            cur.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
            snapshot: str | None
            try:
                # Not in a savepoint: PostgreSQL cannot export from a subtransaction.
                cur.execute("SELECT pg_export_snapshot()")
                snapshot = cur.fetchone()[0]
            except psycopg.Error as exc:
                self.conn.rollback()
                cur.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
                log.warning("snapshot export failed; counts and dump use separate snapshots",
                            database=self.db.name, error=describe_pg_error(exc))
                snapshot = None
            cur.execute("SELECT current_setting('server_version'), current_setting('server_version_num')::int, "
                        "pg_database_size(current_database())")
            version, version_num, size = cur.fetchone()
            cur.execute(_TABLES_SQL)
            tables = []
            for schema, name, relkind, is_part, reltuples in cur.fetchall():
                kind = "partitioned" if relkind == "p" else ("partition" if is_part else "table")
                est = int(reltuples) if reltuples is not None and reltuples >= 0 and kind != "partitioned" else None
                tables.append(TableInfo(schema, name, kind, est))
            wanted, missing = _select_tables(tables, [*count_tables, *_platform_user_tables(tables)])
            for t in wanted:
                cur.execute(sql.SQL("SELECT count(*) FROM ONLY {}.{}").format(sql.Identifier(t.schema), sql.Identifier(t.name)))
                t.exact_rows = int(cur.fetchone()[0])
        except psycopg.Error as exc:
            raise PgError(f"inspecting {self.db.display} failed: {describe_pg_error(exc)}", tool="libpq") from None
        return SourceInfo(str(version).split()[0], int(version_num), int(size), snapshot, tables, missing,
                          self._objects(cur))

    def _objects(self, cur: Any) -> dict[str, Any]:
        """The catalog inventory, in the same snapshot; never fails the backup (a savepoint keeps the
        exported snapshot's transaction usable when a catalog query is refused)."""
        import psycopg

        from drkit.postgres import inventory

        try:
            with self.conn.transaction():
                return inventory.take(cur)
        except psycopg.Error as exc:
            log.warning("catalog inventory not taken", database=self.db.name, error=describe_pg_error(exc))
            return {"error": describe_pg_error(exc)}


def _platform_user_tables(tables: list[TableInfo]) -> list[str]:
    """A Supabase project's auth and storage tables: the users' rows live there, so they are always counted
    exactly (a restore into a new project is proven against them)."""
    names = {(t.schema, t.name) for t in tables}
    if not {("auth", "users"), ("storage", "objects")} <= names:
        return []
    return [f"{t.schema}.{t.name}" for t in tables if t.schema in ("auth", "storage") and t.kind != "partitioned"]


def _select_tables(tables: list[TableInfo], wanted: Sequence[str]) -> tuple[list[TableInfo], list[str]]:
    """Tables to count exactly, and configured names that match no table.

    A configured table that no longer exists (renamed by a migration) must not
    stop the backup: it is reported in the manifest and the result instead.
    """
    countable = [t for t in tables if t.kind != "partitioned"]
    if "*" in wanted:
        return countable, []
    out: list[TableInfo] = []
    missing: list[str] = []
    for w in wanted:
        schema, _, name = w.rpartition(".")
        match = [t for t in countable if t.name == name and (t.schema == schema if schema else True)]
        if not match:
            missing.append(w)
        out.extend(t for t in match if t not in out)
    return out, missing
