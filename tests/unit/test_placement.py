"""Selective restores (pure): which archive entries a target takes, what runs first, and the gate that drops entries."""

from __future__ import annotations

from typing import Any

import pytest

from drkit.core.errors import ConfigError
from drkit.postgres import script
from drkit.postgres.placement import Entry, Placement
from drkit.postgres.platform import PLATFORM_DATA

HEAD = [b"--\n", b"-- PostgreSQL database dump\n", b"\n", b"BEGIN;\n", b"\n", b"SET row_security = off;\n", b"\n"]
TAIL = [b"COMMIT;\n", b"\n", b"--\n", b"-- PostgreSQL database dump complete\n", b"--\n", b"\n"]


def entry(kind: str, schema: str, name: str, *body: bytes) -> list[bytes]:
    return [b"--\n", f"-- Name: {name}; Type: {kind}; Schema: {schema}; Owner: -\n".encode(), b"--\n", b"\n",
            *body, b"\n", b"\n"]


SOURCE: dict[str, Any] = {
    "supabase": True,
    "extensions": [{"name": "pg_graphql", "schema": "graphql"},
                   {"name": "supabase_vault", "schema": "vault", "relations": ["vault.secrets"],
                    "config_tables": ["vault.secrets"], "dependents": ["public.secret_names"]},
                   {"name": "pg_stat_statements", "schema": "extensions"}],
    "roles": [{"name": "anon", "login": False, "platform": True, "member_of": []},
              {"name": "postgres", "login": True, "platform": True, "member_of": ["anon"]},
              {"name": "app_worker", "login": False, "platform": False, "member_of": ["anon"]},
              {"name": "app_reporting", "login": True, "platform": False, "member_of": ["app_worker"],
               "connection_limit": 5}],
}
TABLES = ("auth.users", "auth.schema_migrations", "storage.objects", "storage.migrations", "vault.secrets",
          "public.todos", "realtime.schema_migrations")


def facts(**over: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "available_extensions": {"pg_stat_statements", "plpgsql"}, "installed_extensions": {"plpgsql"},
        "roles": {"postgres"}, "schemas": {"public", "pg_catalog"}, "triggers": set(), "policies": set(),
        "functions": set(), "rls_tables": set(), "tables": set(), "event_triggers": set(), "publications": set(),
        "superuser": True, "createrole": True, "user": "postgres", "supabase": False, "default_acls": []}
    return base | over


def project() -> dict[str, Any]:
    """A new Supabase project, as its postgres role sees it."""
    return facts(available_extensions={"pg_graphql", "supabase_vault", "pg_stat_statements"},
                 installed_extensions={"pg_graphql", "supabase_vault", "pg_stat_statements"},
                 roles={"postgres", "anon", "authenticated", "supabase_admin"},
                 schemas={"public", "auth", "storage", "vault", "extensions", "realtime", "graphql"},
                 triggers={"storage|objects update_objects_updated_at"}, rls_tables={"auth|users", "storage|objects"},
                 functions={"auth|uid()"}, event_triggers={"pgrst_ddl_watch"}, publications={"supabase_realtime"},
                 tables={"auth|users", "auth|schema_migrations", "storage|objects", "storage|migrations",
                         "vault|secrets", "auth|refresh_tokens_id_seq", "realtime|schema_migrations"},
                 writable={"auth|users", "auth|schema_migrations", "storage|objects"},
                 writable_sequences={"auth|refresh_tokens_id_seq"},
                 owned_sequences={"auth|refresh_tokens_id_seq": "auth.users"},
                 superuser=False, supabase=True,
                 default_acls=[("public", "r", ["anon", "authenticated", "postgres"]), ("", "f", ["PUBLIC"])])


def test_plain_staging_skips_what_needs_a_missing_extension_by_name() -> None:
    p = Placement("plain", SOURCE, facts(), TABLES)
    skip = {e.label: p.decide(e) for e in (
        Entry("EXTENSION", None, "pg_graphql"), Entry("COMMENT", None, "EXTENSION supabase_vault"),
        Entry("TABLE DATA", "vault", "secrets"), Entry("VIEW", "public", "secret_names"),
        Entry("ACL", "public", "TABLE secret_names"), Entry("EXTENSION", None, "pg_stat_statements"),
        Entry("TABLE DATA", "auth", "users"), Entry("POLICY", "public", "todos own"),
        Entry("EVENT TRIGGER", None, "pgrst_ddl_watch"), Entry("SCHEMA", None, "auth"))}
    assert skip["EXTENSION pg_graphql"] == "needs extension pg_graphql, which this server does not have"
    assert skip["COMMENT EXTENSION supabase_vault"] == skip["TABLE DATA vault.secrets"] == \
        skip["VIEW public.secret_names"] == skip["ACL public.TABLE secret_names"] == \
        "needs extension supabase_vault, which this server does not have"
    assert [k for k, v in skip.items() if v is None] == [
        "EXTENSION pg_stat_statements", "TABLE DATA auth.users", "POLICY public.todos own",
        "EVENT TRIGGER pgrst_ddl_watch", "SCHEMA auth"]
    assert p.not_restored() == {"vault.secrets": skip["TABLE DATA vault.secrets"],
                                "public.secret_names": skip["TABLE DATA vault.secrets"]}


def test_plain_staging_creates_missing_roles_nologin_and_never_touches_its_own() -> None:
    p = Placement("plain", SOURCE, facts(), TABLES)
    assert p.roles_created == ["anon", "app_worker", "app_reporting"]
    assert p.preamble() == ['CREATE ROLE "anon" NOLOGIN;', 'CREATE ROLE "app_worker" NOLOGIN;',
                            'CREATE ROLE "app_reporting" NOLOGIN;', 'GRANT "anon" TO "app_worker";',
                            'GRANT "app_worker" TO "app_reporting";']  # nothing for staging's own postgres
    assert Placement("plain", SOURCE, facts(superuser=False), TABLES).decide(
        Entry("EVENT TRIGGER", None, "x")) == "only a superuser can create event triggers"
    with pytest.raises(ConfigError, match="may not create roles: create them NOLOGIN, or grant CREATEROLE"):
        Placement("plain", SOURCE, facts(superuser=False, createrole=False), TABLES)


def test_a_new_supabase_project_takes_user_objects_and_the_users_rows_only() -> None:
    p = Placement("supabase", SOURCE, project(), TABLES)
    keep = ["SCHEMA billing", "TABLE public.todos", "TABLE DATA public.todos", "TABLE DATA auth.users",
            "TABLE DATA storage.objects", "SEQUENCE SET auth.refresh_tokens_id_seq", "TRIGGER auth.users on_new_user",
            "POLICY storage.objects Avatars are public.", "ROW SECURITY public.todos", "FUNCTION auth.custom_hook()",
            "PUBLICATION TABLE public.supabase_realtime todos", "ACL -.SCHEMA public", "VIEW public.secret_names"]
    skip = {"SCHEMA auth": "the project has its own",
            "TABLE auth.users": "platform object: the project has its own",
            "TABLE DATA auth.schema_migrations": "platform data: " + PLATFORM_DATA["auth.schema_migrations"],
            "TABLE DATA storage.migrations": "platform data: " + PLATFORM_DATA["storage.migrations"],
            "TABLE DATA vault.secrets": "platform data: " + PLATFORM_DATA["vault.secrets"],
            "TABLE DATA realtime.schema_migrations": "platform data: " + PLATFORM_DATA["realtime.*"],
            "TRIGGER storage.objects update_objects_updated_at": "the project has its own",
            "ROW SECURITY auth.users": "the project has its own",
            "FUNCTION auth.uid()": "the project has its own",
            "EXTENSION pg_graphql": "installed in the project",
            "COMMENT EXTENSION pg_graphql": "the project's own extension",
            "EVENT TRIGGER pgrst_ddl_watch": "the project has its own",
            "PUBLICATION supabase_realtime": "the project has its own",
            "ACL SCHEMA auth": "the project has its own",
            "DEFAULT ACL public.DEFAULT PRIVILEGES FOR TABLES": "default privileges of a platform role: the project "
                                                               "has its own"}

    def parse(label: str, statement: str = "") -> Entry:
        kind = next(k for k in ("TABLE DATA", "SEQUENCE SET", "ROW SECURITY", "PUBLICATION TABLE", "EVENT TRIGGER",
                                "COMMENT", "DEFAULT ACL", "ACL", "SCHEMA", "TABLE", "TRIGGER", "POLICY", "FUNCTION",
                                "EXTENSION", "PUBLICATION", "VIEW") if label.startswith(k + " "))
        rest = label[len(kind) + 1:]
        if kind in ("SCHEMA", "EXTENSION", "EVENT TRIGGER", "PUBLICATION") or rest.startswith(("EXTENSION ", "SCHEMA ")):
            return Entry(kind, None, rest, statement)
        schema, _, name = rest.partition(".")
        return Entry(kind, None if schema == "-" else schema, name, statement)

    for label in keep:
        assert p.decide(parse(label)) is None, label
    for label, why in skip.items():
        stmt = "ALTER DEFAULT PRIVILEGES FOR ROLE supabase_admin IN SCHEMA public GRANT ALL ON TABLES TO anon;"
        assert p.decide(parse(label, stmt)) == why, label
    own = parse("DEFAULT ACL public.DEFAULT PRIVILEGES FOR TABLES",
                "ALTER DEFAULT PRIVILEGES FOR ROLE postgres IN SCHEMA public GRANT ALL ON TABLES TO anon;")
    assert p.decide(own) is None  # the restoring role's own default privileges are the source's
    assert set(p.not_restored()) == {"auth.schema_migrations", "storage.migrations", "vault.secrets",
                                     "realtime.schema_migrations"}


def test_a_new_supabase_project_gets_custom_roles_replica_mode_and_no_default_grants() -> None:
    p = Placement("supabase", SOURCE, project(), TABLES)
    assert p.roles_created == ["app_worker", "app_reporting"]  # never the platform's own
    assert p.preamble() == [
        'CREATE ROLE "app_worker" NOLOGIN INHERIT;', 'CREATE ROLE "app_reporting" LOGIN INHERIT CONNECTION LIMIT 5;',
        'GRANT "anon" TO "app_worker";', 'GRANT "app_worker" TO "app_reporting";',
        "SET session_replication_role = replica;",
        'ALTER DEFAULT PRIVILEGES FOR ROLE "postgres" IN SCHEMA "public" REVOKE ALL ON TABLES FROM anon, '
        "authenticated, postgres;",
        'ALTER DEFAULT PRIVILEGES FOR ROLE "postgres" REVOKE ALL ON FUNCTIONS FROM PUBLIC;']
    missing = dict(project(), available_extensions={"pg_stat_statements"}, installed_extensions=set())
    with pytest.raises(ConfigError, match="does not offer the extension.*pg_graphql, supabase_vault"):
        Placement("supabase", SOURCE, missing, TABLES)


def test_the_gate_drops_whole_entries_and_names_the_one_a_line_is_in() -> None:
    p = Placement("plain", SOURCE, facts(), TABLES)
    kept_table = entry("TABLE", "public", "todos", b"CREATE TABLE public.todos (\n", b"    id bigint\n", b");\n")
    skipped_data = entry("TABLE DATA", "vault", "secrets", b"COPY vault.secrets (id) FROM stdin;\n", b"--\n",
                         b"-- Name: x; Type: TABLE; Schema: public; Owner: -\n", b"\\.\n")
    between = [b"SET default_table_access_method = heap;\n", b"\n"]
    kept_data = entry("TABLE DATA", "public", "todos", b"COPY public.todos (id) FROM stdin;\n", b"1\n", b"\\.\n")
    skipped_last = entry("EXTENSION", "-", "pg_graphql", b"CREATE EXTENSION IF NOT EXISTS pg_graphql;\n")
    lines = HEAD + kept_table + skipped_data + between + kept_data + skipped_last + TAIL
    gate = script.Gate(decide=p.decide, preamble=p.preamble())
    out = list(gate.run(iter(lines)))
    text = b"".join(out).decode()
    assert 'CREATE ROLE "anon" NOLOGIN;' in text and text.index("BEGIN;") < text.index("CREATE ROLE")
    assert "vault.secrets" not in text and "pg_graphql" not in text and "Name: x" not in text  # its COPY data too
    assert "COPY public.todos" in text and "SET default_table_access_method = heap;" in text
    assert out[-1] != script.COMMIT and script.COMMIT not in out  # still withheld when the last entry is skipped
    assert gate.skipped == [("TABLE DATA vault.secrets", "needs extension supabase_vault, which this server does "
                             "not have"), ("EXTENSION pg_graphql", "needs extension pg_graphql, which this server "
                                           "does not have")]
    line_of = {ln: i + 1 for i, ln in enumerate(out)}
    assert gate.entry_at(line_of[b"    id bigint\n"]) == "TABLE public.todos (`CREATE TABLE public.todos (`)"
    assert gate.entry_at(line_of[b"1\n"]) == "TABLE DATA public.todos (`COPY public.todos (id) FROM stdin;`)"
    assert gate.entry_at(1) is None


def test_an_entry_after_a_procedure_that_ends_in_commit_is_still_decided() -> None:
    p = Placement("plain", SOURCE, facts(), TABLES)
    # a body whose last line is a top-level-looking COMMIT; (the gate cannot tell it from the script's own)
    procedure = entry("PROCEDURE", "public", "batch()", b"CREATE PROCEDURE public.batch() LANGUAGE plpgsql AS '\n",
                      b"BEGIN PERFORM 1; END;\n", b"';\n", b"COMMIT;\n")
    skipped = entry("EXTENSION", "-", "pg_graphql", b"CREATE EXTENSION IF NOT EXISTS pg_graphql;\n")
    gate = script.Gate(decide=p.decide)
    text = b"".join(gate.run(iter(HEAD + procedure + skipped + TAIL))).decode()
    assert "BEGIN PERFORM 1; END;\n';\nCOMMIT;\n" in text and "pg_graphql" not in text
    assert gate.skipped == [("EXTENSION pg_graphql", "needs extension pg_graphql, which this server does not have")]
