"""Local stand-ins for Supabase projects: a cluster shaped like one, for drill and tests.

`SupabaseServer` is a PostgreSQL server whose bootstrap superuser is `supabase_admin`, whose
`postgres` role is the non-superuser a project hands its owner, and whose installation (a copy
of the embedded one) holds SQL-only stand-ins for the extensions only Supabase ships
(pg_graphql, supabase_vault, pgsodium, pgjwt, pg_net). `new_project()` makes its `postgres`
database what a new project's is; `seed_app()` puts an application with its auth users,
storage objects, RLS policies and triggers on top. See data/supabase/PROVENANCE.md.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .pgserver import PgServer, copy_install, embedded_bindir

DATA = Path(__file__).resolve().parent / "data" / "supabase"
STAND_IN_EXTENSIONS = ("pg_graphql", "supabase_vault", "pgsodium", "pgjwt", "pg_net")
CUSTOM_ROLES = ("app_reporting", "app_worker")
PLATFORM_SCHEMAS = ("auth", "storage", "realtime", "graphql", "graphql_public", "vault", "pgsodium", "extensions",
                    "pgbouncer", "net")


def supabase_bindir() -> Path:
    """The embedded PostgreSQL, copied once, with the stand-in extensions in its share/extension."""
    return copy_install(embedded_bindir(), "drkit-pginstall-supabase", DATA / "extensions")


def _literal(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


class SupabaseServer(PgServer):
    """A cluster like a Supabase project's: connect as `postgres` (no superuser) with `url()`."""

    def __init__(self, **kw: Any):
        super().__init__(supabase_bindir(), superuser="supabase_admin", **kw)

    def start(self) -> SupabaseServer:
        super().start()
        self.admin((DATA / "roles.sql").read_text().replace(":'pw'", _literal(self.password)))
        return self

    def admin(self, sql: str, dbname: str = "postgres") -> None:
        """Run `sql` as supabase_admin (the platform; project owners never can)."""
        with self.connect(dbname, user="supabase_admin") as conn:
            conn.execute(sql.encode())

    def new_project(self) -> SupabaseServer:
        """The `postgres` database as a new project has it: platform schemas, extensions, event triggers."""
        self.admin((DATA / "project.sql").read_text())
        return self

    def seed_app(self) -> SupabaseServer:
        """An application's objects and rows, created as `postgres` like the dashboard's SQL editor does."""
        self.execute((DATA / "app.sql").read_text())
        return self
