"""Supabase-shaped servers and helpers shared by the Supabase restore tests (fixtures are imported by them)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from drkit.cli import main
from drkit.functions import db_backup
from drkit.platform.runtime import handle
from drkit.storage.store import Store
from drkit_dev.pgserver import PgServer
from drkit_dev.supabase import CUSTOM_ROLES, SupabaseServer

# tables whose rows are the application's (the user's rows in auth and storage included)
USER_TABLES = ("auth.users", "auth.identities", "auth.sessions", "auth.refresh_tokens", "auth.audit_log_entries",
               "auth.instances", "storage.buckets", "storage.objects", "public.profiles", "public.todos",
               "billing.invoices")
STAND_INS = ("pg_graphql", "supabase_vault", "pgsodium", "pgjwt", "pg_net", "pg_cron", "wrappers")
ON_PLAIN_POSTGRES = {*(f"EXTENSION {e}" for e in STAND_INS), *(f"COMMENT EXTENSION {e}" for e in STAND_INS),
                     "TABLE DATA vault.secrets", "TABLE DATA pgsodium.key", "VIEW public.secret_names",
                     "TABLE DATA cron.job", "SEQUENCE SET cron.job_jobid_seq", "SERVER stripe_server",
                     "USER MAPPING USER MAPPING postgres SERVER stripe_server"}


@pytest.fixture(scope="module")
def source() -> Iterator[SupabaseServer]:
    server = SupabaseServer().start().new_project().seed_app()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def staging() -> Iterator[PgServer]:
    with PgServer() as server:
        yield server


@pytest.fixture
def project() -> Iterator[SupabaseServer]:
    """A new, empty Supabase project to restore into."""
    server = SupabaseServer().start().new_project()
    yield server
    server.stop()


@pytest.fixture
def env(make_env: Any, source: SupabaseServer, staging: PgServer, age_keys: tuple[str, str]) -> dict[str, str]:
    # the operator names the app's tables; a Supabase project's auth and storage tables are counted anyway
    return make_env({"sb": source.url()}, DRKIT_DB_SB_COUNT_TABLES="public.todos,public.profiles,billing.invoices",
                    DRKIT_STAGING_URL=staging.url(),
                    DRKIT_AGE_IDENTITY=age_keys[0])


def backup(env: dict[str, str]) -> dict[str, Any]:
    result = handle("db-backup", db_backup.run, {}, None, env)
    assert result["ok"], result
    return dict(result["databases"][0])


def manifest_of(env: dict[str, str], backup_id: str) -> dict[str, Any]:
    from drkit.platform.config import Config
    from drkit.policy import layout

    store = Store(Config.from_env(env).spaces)
    return dict(json.loads(store.get_bytes(layout.manifest_key("sb", backup_id))))


def rows(server: PgServer, table: str) -> tuple[int, str]:
    with server.connect() as conn:
        n, digest = conn.execute(f"SELECT count(*), md5(coalesce(string_agg(x::text, '|' ORDER BY x::text), '')) "
                                 f"FROM {table} x").fetchone()
    return int(n), str(digest)


def catalog(server: PgServer) -> dict[str, Any]:
    with server.connect() as conn:
        return {
            "policies": conn.execute("SELECT schemaname, tablename, policyname, cmd, roles::text, qual, with_check "
                                     "FROM pg_policies ORDER BY 1, 2, 3").fetchall(),
            "triggers": conn.execute("SELECT tgrelid::regclass::text, tgname, pg_get_triggerdef(oid) FROM pg_trigger "
                                     "WHERE NOT tgisinternal ORDER BY 1, 2").fetchall(),
            "publication": conn.execute("SELECT pubname, schemaname, tablename FROM pg_publication_tables "
                                        "ORDER BY 1, 2, 3").fetchall(),
            "rls": conn.execute("SELECT oid::regclass::text FROM pg_class WHERE relrowsecurity ORDER BY 1").fetchall(),
            "sequence": conn.execute("SELECT last_value FROM auth.refresh_tokens_id_seq").fetchone(),
            "grants": conn.execute("SELECT grantee, table_schema, table_name, privilege_type FROM "
                                   "information_schema.role_table_grants WHERE table_schema IN ('public', 'billing') "
                                   "ORDER BY 1, 2, 3, 4").fetchall(),
        }


def roles(server: PgServer) -> dict[str, tuple[Any, ...]]:
    """Attributes and memberships of every role (PostgreSQL 16+ makes a role's creator an ADMIN member of
    it: memberships in the application's roles are left out)."""
    with server.connect() as conn:
        return {r[0]: (*r[1:-1], [g for g in r[-1] or [] if g not in CUSTOM_ROLES]) for r in conn.execute(
            "SELECT rolname, rolsuper, rolcanlogin, rolcreaterole, rolcreatedb, rolreplication, rolbypassrls, "
            "rolinherit, (SELECT array_agg(m.roleid::regrole::text ORDER BY 1) FROM pg_auth_members m "
            "WHERE m.member = r.oid) FROM pg_roles r").fetchall()}


def run_cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str]:
    code = main.main(list(argv))
    out = capsys.readouterr()
    return code, " ".join((out.out + out.err).split())


@pytest.fixture
def cli(tmp_path: Path, env: dict[str, str], age_keys: tuple[str, str]) -> tuple[str, str]:
    env_file = tmp_path / "drkit.env"
    env_file.write_text("".join(f"export {k}='{v}'\n" for k, v in env.items()))
    identity = tmp_path / "id.txt"
    identity.write_text(age_keys[0] + "\n")
    return str(env_file), str(identity)
