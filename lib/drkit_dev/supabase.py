"""Local stand-ins for Supabase projects: a cluster shaped like one, for drill and tests.

`SupabaseServer` is a PostgreSQL server whose bootstrap superuser is `supabase_admin`, whose
`postgres` role is the non-superuser a project hands its owner, and whose installation (a copy
of the embedded one) holds SQL-only stand-ins for the extensions only Supabase ships
(pg_graphql, supabase_vault, pgsodium, pgjwt, pg_net). `new_project()` makes its `postgres`
database what a new project's is; `seed_app()` puts an application with its auth users,
storage objects, RLS policies and triggers on top. See data/supabase/PROVENANCE.md.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from .pgserver import PgServer, copy_install, embedded_bindir

DATA = Path(__file__).resolve().parent / "data" / "supabase"
STAND_IN_EXTENSIONS = ("pg_graphql", "supabase_vault", "pgsodium", "pgjwt", "pg_net", "pg_cron", "wrappers")
SHAPE = DATA / "platform-shape.json"
# Effective rights of postgres on today's platform: it writes auth's tables and storage's buckets and objects
# (and manages policies on them: supautils' policy_grants, emulated by its membership in the owners' roles);
# storage's other tables it may only read (seen: "permission denied for table buckets_vectors"). Without
# supautils, the fixture gives those tables to supabase_admin so that postgres's rights are the platform's.
POSTGRES_WRITES = {"storage": ("buckets", "objects")}
CUSTOM_ROLES = ("app_reporting", "app_worker")
PLATFORM_SCHEMAS = ("auth", "storage", "realtime", "graphql", "graphql_public", "vault", "pgsodium", "extensions",
                    "pgbouncer", "net")


def supabase_bindir() -> Path:
    """The embedded PostgreSQL, copied once, with the stand-in extensions in its share/extension."""
    return copy_install(embedded_bindir(), "drkit-pginstall-supabase", DATA / "extensions")


def shape() -> dict[str, Any]:
    """The platform's auth and storage tables as the newest upstream migrations make them (PROVENANCE.md)."""
    return dict(json.loads(SHAPE.read_text()))


def _ident(name: str) -> str:
    return name if re.fullmatch(r"[a-z_][a-z0-9_]*", name) else '"' + name.replace('"', '""') + '"'


def _column(c: dict[str, Any]) -> str:
    out = f"{_ident(c['name'])} {c['type']}"
    if "generated" in c:
        out += f" GENERATED ALWAYS AS ({c['generated']}) STORED"
    elif "identity" in c:
        out += " GENERATED " + ("ALWAYS" if c["identity"] == "a" else "BY DEFAULT") + " AS IDENTITY"
    elif "default" in c:
        out += f" DEFAULT {c['default']}"
    return out + (" NOT NULL" if c["not_null"] else "")


def platform_sql(schema: str) -> str:
    """DDL for one platform schema's tables (types, sequences, tables, keys, owners, RLS, migration history)."""
    data = shape()
    tables: dict[str, Any] = data["schemas"][schema]
    out = [f"CREATE TYPE {schema}.{t['name']} AS ENUM ({', '.join(_quote(x) for x in t['labels'])});"
           for t in data["types"] if t["schema"] == schema]
    later = []
    for name, t in tables.items():
        for c in t["columns"]:
            m = re.match(r"nextval\('([\w.]+)'::regclass\)", c.get("default", ""))
            if m:  # a serial column: the table owns its sequence
                out.append(f"CREATE SEQUENCE {m.group(1)};")
                later.append(f"ALTER SEQUENCE {m.group(1)} OWNED BY {schema}.{_ident(name)}.{_ident(c['name'])};")
        cols = [_column(c) for c in t["columns"]]
        cons = [f"CONSTRAINT {_ident(n)} {d}" for n, kind, d in t["constraints"] if kind in ("p", "u", "c")]
        part = " PARTITION BY RANGE (inserted_at)" if t["partitioned"] else ""
        out.append(f"CREATE TABLE {schema}.{_ident(name)} (\n    " + ",\n    ".join(cols + cons) + f"\n){part};")
        later += [f"ALTER TABLE {schema}.{_ident(name)} ADD CONSTRAINT {_ident(n)} {d};"
                  for n, kind, d in t["constraints"] if kind == "f"]
        later += [f"{d};" for d in t["unique_indexes"]]
        owner = t["owner"] if name in POSTGRES_WRITES.get(schema, tuple(tables)) else "supabase_admin"
        later.append(f"ALTER TABLE {schema}.{_ident(name)} OWNER TO {owner};")
        if t["rls"]:
            later.append(f"ALTER TABLE {schema}.{_ident(name)} ENABLE ROW LEVEL SECURITY;")
    history = data["history"]
    if schema == "auth":
        later.append("INSERT INTO auth.schema_migrations VALUES "
                     + ", ".join(f"({_quote(v)})" for v in history["auth.schema_migrations"]) + ";")
    if schema == "storage":
        later.append("INSERT INTO storage.migrations (id, name, hash) VALUES "
                     + ", ".join(f"({i}, {_quote(n)}, md5({_quote(n)}))" for i, n in history["storage.migrations"]) + ";")
    return "\n".join(["RESET ROLE;", *out, *later, "SET ROLE postgres;", ""])


def _quote(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


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
        sql = (DATA / "project.sql").read_text()
        for schema in ("auth", "storage"):
            sql = sql.replace(f"-- @platform {schema}\n", platform_sql(schema))
        self.admin(sql)
        return self

    def seed_app(self) -> SupabaseServer:
        """An application's objects and rows, created as `postgres` like the dashboard's SQL editor does."""
        self.execute((DATA / "app.sql").read_text())
        # rows only the platform's services write: a vector bucket and an analytics bucket (the project role
        # may read them, never write them)
        self.admin("INSERT INTO storage.buckets_vectors (id) VALUES ('embeddings'); "
                   "INSERT INTO storage.vector_indexes (name, bucket_id, data_type, dimension, distance_metric) "
                   "VALUES ('docs', 'embeddings', 'float32', 3, 'cosine'); "
                   "INSERT INTO storage.buckets_analytics (name) VALUES ('events'); "
                   "INSERT INTO realtime.subscription (subscription_id, entity, claims) "
                   "VALUES (gen_random_uuid(), 'public.todos', '{\"role\": \"authenticated\"}');")
        return self
