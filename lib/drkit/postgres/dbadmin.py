"""Database-level operations on a server: exists, create, drop, list, the caller's rights, the atomic rename swap."""

from __future__ import annotations

from dataclasses import dataclass

from drkit.core.errors import PgError
from drkit.platform.databases import DatabaseConfig
from drkit.postgres.connection import connect, describe_pg_error


def database_exists(db: DatabaseConfig, name: str) -> bool:
    with connect(db, autocommit=True) as conn:
        return conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone() is not None


def user_table_count(db: DatabaseConfig, name: str) -> int:
    with connect(db, name, autocommit=True) as conn:
        return int(conn.execute(
            "SELECT count(*) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
            "WHERE c.relkind IN ('r', 'p') AND n.nspname NOT IN ('pg_catalog', 'information_schema') "
            "AND n.nspname NOT LIKE 'pg\\_toast%'").fetchone()[0])


def create_database(db: DatabaseConfig, name: str) -> None:
    """Create `name`, or leave no such database behind: an interrupt (Ctrl-C, SIGTERM) while CREATE DATABASE
    runs may still let the server finish it, so the new name is dropped again before the interrupt goes on."""
    import psycopg
    from psycopg import sql

    try:
        with connect(db, autocommit=True) as conn:
            conn.execute(sql.SQL("CREATE DATABASE {} TEMPLATE template0").format(sql.Identifier(name)))
    except psycopg.Error as exc:
        raise PgError(f"cannot create database {name!r} on {db.display}: {describe_pg_error(exc)}") from None
    except BaseException:
        drop_database(db, name)  # IF EXISTS: a no-op when the server did not get to it
        raise


def drop_database(db: DatabaseConfig, name: str) -> None:
    """Drop a database, disconnecting its sessions (PostgreSQL 13+: WITH (FORCE))."""
    import psycopg
    from psycopg import sql

    try:
        with connect(db, autocommit=True) as conn:
            version = int(conn.execute("SHOW server_version_num").fetchone()[0])
            if version >= 130000:
                conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))
            else:
                conn.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s", (name,))
                conn.execute(sql.SQL("DROP DATABASE IF EXISTS {}").format(sql.Identifier(name)))
    except psycopg.Error as exc:
        raise PgError(f"cannot drop database {name!r} on {db.display}: {describe_pg_error(exc)}") from None


def list_databases(db: DatabaseConfig, prefix: str) -> list[str]:
    with connect(db, autocommit=True) as conn:
        rows = conn.execute("SELECT datname FROM pg_database WHERE starts_with(datname, %s) ORDER BY 1",
                            (prefix,)).fetchall()
    return [str(r[0]) for r in rows]


@dataclass(frozen=True)
class Rights:
    """What the connecting role may do to databases on a server (for a restore plan)."""
    superuser: bool
    createdb: bool
    owns: bool  # the named database (False if it does not exist)

    @property
    def can_create(self) -> bool:
        return self.superuser or self.createdb

    @property
    def can_rename(self) -> bool:  # ALTER DATABASE … RENAME: the owner with CREATEDB, or a superuser
        return self.superuser or (self.createdb and self.owns)


def rights(db: DatabaseConfig, name: str) -> Rights:
    with connect(db, autocommit=True) as conn:
        su, cdb = conn.execute("SELECT rolsuper, rolcreatedb FROM pg_roles WHERE rolname = current_user").fetchone()
        row = conn.execute("SELECT pg_has_role(current_user, datdba, 'USAGE') FROM pg_database WHERE datname = %s",
                           (name,)).fetchone()
    return Rights(bool(su), bool(cdb), bool(row and row[0]))


def swap_databases(db: DatabaseConfig, target: str, new: str, keep_as: str | None, attempts: int = 5) -> None:
    """In one transaction: `target` becomes `keep_as` (if it exists), `new` becomes `target`.

    Sessions on `target` are ended first (a renamed database must have none); if they keep
    coming back, nothing is renamed and the error says to stop the application.
    """
    import time

    import psycopg
    from psycopg import sql

    rename = sql.SQL("ALTER DATABASE {} RENAME TO {}")
    try:
        with connect(db, autocommit=True) as conn:
            for attempt in range(1, attempts + 1):
                conn.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                             "WHERE datname = ANY(%s) AND pid <> pg_backend_pid()", ([target, new],))
                try:
                    with conn.transaction():
                        if keep_as is not None:
                            conn.execute(rename.format(sql.Identifier(target), sql.Identifier(keep_as)))
                        conn.execute(rename.format(sql.Identifier(new), sql.Identifier(target)))
                    return
                except psycopg.errors.ObjectInUse:
                    if attempt == attempts:
                        raise PgError(f"sessions keep reconnecting to {target!r}: stop the application that uses "
                                      "it, then run the restore again (nothing was renamed)") from None
                    time.sleep(0.5 * attempt)
    except psycopg.Error as exc:
        raise PgError(f"cannot rename databases on {db.display}: {describe_pg_error(exc)} (nothing was renamed)") from None
