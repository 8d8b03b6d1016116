"""A Supabase project's database: backup as `postgres`, restore into a new project, verify on plain staging.

The source and the "new project" are clusters shaped like Supabase projects (drkit_dev.supabase:
supabase_admin is the superuser, postgres is not; platform roles, schemas, extensions, event
triggers and the supabase_realtime publication); staging is a plain PostgreSQL server without
the platform's extensions, as a real one is.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest

from conftest import keys
from drkit.functions import db_backup, restore_verify
from drkit.platform.runtime import handle
from drkit_dev.pgserver import PgServer
from drkit_dev.supabase import CUSTOM_ROLES, SupabaseServer, shape
from support.records import content
from support.supabase import (
    ON_PLAIN_POSTGRES,
    USER_TABLES,
    backup,
    catalog,
    cli,
    env,
    manifest_of,
    project,
    roles,
    rows,
    run_cli,
    source,
    staging,
)

__all__ = ["cli", "env", "project", "source", "staging"]  # fixtures

def test_backup_as_postgres_records_what_a_faithful_restore_needs(env: dict[str, str], source: SupabaseServer) -> None:
    with source.connect() as conn:  # the role the backup uses is not a superuser
        assert conn.execute("SELECT rolsuper FROM pg_roles WHERE rolname = current_user").fetchone() == (False,)
    done = backup(env)
    m = manifest_of(env, done["backup_id"])
    objects = m["objects"]
    assert objects["supabase"] is True
    by_role = {r["name"]: r for r in objects["roles"]}
    assert all(by_role[r]["platform"] for r in ("anon", "authenticated", "service_role", "authenticator",
                                                "supabase_admin", "supabase_auth_admin", "postgres"))
    assert [r for r in by_role if not by_role[r]["platform"]] == list(CUSTOM_ROLES)
    assert by_role["app_reporting"]["login"] and by_role["app_worker"]["member_of"] == ["authenticated"]
    ext = {e["name"]: e for e in objects["extensions"]}
    assert ext["supabase_vault"]["config_tables"] == ["vault.secrets"]
    assert ext["supabase_vault"]["dependents"] == ["public.secret_names"]
    assert objects["counts"]["policies"] == 11 and "auth.users.on_auth_user_created" in objects["triggers"]
    assert "supabase_realtime: public.todos" in objects["publication_members"]
    assert any("Vault" in x for x in objects["not_in_dump"]) and any("Storage file" in x for x in objects["not_in_dump"])
    counted = {f"{t['schema']}.{t['name']}": t["exact_rows"] for t in m["tables"]}
    assert counted["auth.identities"] == 25 and counted["storage.objects"] == 25 and counted["public.todos"] == 100
    history = shape()["history"]  # counted without being named: the platform's migration history, as upstream has it
    assert counted["auth.schema_migrations"] == len(history["auth.schema_migrations"]) == 70
    assert counted["storage.migrations"] == len(history["storage.migrations"]) == 63
    assert counted["realtime.schema_migrations"] is None  # neither named nor the users' rows


def test_restore_into_a_new_project_brings_every_user_row_policy_and_trigger(
        env: dict[str, str], cli: tuple[str, str], source: SupabaseServer, project: SupabaseServer,
        capsys: pytest.CaptureFixture[str]) -> None:
    env_file, identity = cli
    backup(env)
    platform_roles_before = roles(project)
    code, out = run_cli(capsys, "--env-file", env_file, "restore", "--db", "sb", "--target", project.url(),
                        "--identity", identity, "--dry-run")
    assert code == 0, out
    assert "a Supabase project, fresh" in out and "creates roles app_reporting, app_worker" in out
    assert "cannot carry: Vault and pgsodium secrets" in out and "dry run: nothing was changed" in out
    code, out = run_cli(capsys, "--env-file", env_file, "restore", "--db", "sb", "--target", project.url(),
                        "--identity", identity)
    assert code == 0, out
    assert "FAIL" not in out and "PASS row counts" in out and "PASS policies: 11 identical" in out
    for table in USER_TABLES:
        assert rows(project, table) == rows(source, table), table
    want, got = catalog(source), catalog(project)
    for kind in want:
        assert got[kind] == want[kind], kind
    after = roles(project)
    assert {r: after[r] for r in platform_roles_before} == platform_roles_before  # the platform's roles untouched
    assert after["app_reporting"][1] is True and after["app_worker"][-1] == ["authenticated"]
    with project.connect() as conn:  # the database was restored into, never replaced
        assert conn.execute("SELECT count(*) FROM pg_database WHERE datname LIKE 'postgres%'").fetchone() == (1,)
        assert conn.execute("SELECT count(*) FROM vault.secrets").fetchone() == (0,)  # ciphertext of another key

    # a second restore: the project is not fresh any more, and nothing is touched
    code, out = run_cli(capsys, "--env-file", env_file, "restore", "--db", "sb", "--target", project.url(),
                        "--identity", identity)
    assert code == 2 and "not a new one" in out and "Nothing was changed" in out
    code, out = run_cli(capsys, "--env-file", env_file, "restore", "--db", "sb", "--target", project.url(),
                        "--identity", identity, "--force")
    assert code != 0 and "restoring FUNCTION public.handle_new_user()" in out and "already exists" in out, out
    for table in USER_TABLES:
        assert rows(project, table) == rows(source, table), table


def test_a_failing_statement_is_named_and_the_project_is_left_as_it_was(
        env: dict[str, str], cli: tuple[str, str], project: SupabaseServer, capsys: pytest.CaptureFixture[str]) -> None:
    env_file, identity = cli
    backup(env)
    project.admin("DROP EXTENSION pg_stat_statements")  # only a superuser may create it again
    before = catalog(project), rows(project, "auth.users")
    code, out = run_cli(capsys, "--env-file", env_file, "restore", "--db", "sb", "--target", project.url(),
                        "--identity", identity)
    assert code != 0
    assert "restoring EXTENSION pg_stat_statements" in out and "permission denied to create extension" in out, out
    assert "nothing was committed" in out
    assert (catalog(project), rows(project, "auth.users")) == before
    with project.connect() as conn:
        assert conn.execute("SELECT count(*) FROM pg_roles WHERE rolname = ANY(%s)", (list(CUSTOM_ROLES),)).fetchone() == (0,)


def test_weekly_proof_on_plain_staging_skips_by_name_and_fails_when_the_list_grows(
        env: dict[str, str], source: SupabaseServer, staging: PgServer) -> None:
    own_roles = roles(staging)
    backup(env)
    first = handle("restore-verify", restore_verify.run, {}, None, env)
    db = first["databases"][0]
    assert first["ok"] and db["status"] == "passed", db
    assert set(db["skipped"]) == ON_PLAIN_POSTGRES
    checks = {c["name"]: c for c in db["checks"]}
    assert checks["policies"]["detail"] == "11 identical" and checks["triggers"]["detail"] == "3 identical"
    assert checks["publication members"]["passed"] and checks["row counts"]["passed"]
    assert "skipped by name: EXTENSION pg_cron, EXTENSION pg_graphql, EXTENSION pg_net, EXTENSION pgjwt" in db["decision"]
    after = roles(staging)
    assert {r: after[r] for r in own_roles} == own_roles  # staging's own roles untouched
    created = set(after) - set(own_roles)
    assert {"anon", "authenticated", "service_role", "supabase_admin", *CUSTOM_ROLES} <= created
    assert not any(after[r][0] or after[r][1] for r in created)  # NOLOGIN, no superuser

    source.admin("CREATE EXTENSION pg_hashids WITH SCHEMA extensions")  # a new extension staging lacks
    try:
        time.sleep(1.05 - time.time() % 1)  # backup ids carry seconds: the next one must sort after the first
        backup(env)
        second = handle("restore-verify", restore_verify.run, {}, None, env)
        db = second["databases"][0]
        assert not second["ok"] and db["status"] == "failed"
        failed = [c for c in db["checks"] if not c["passed"]]
        assert [c["name"] for c in failed] == ["skipped objects"]
        assert ("2 more skipped than at the last verification: COMMENT EXTENSION pg_hashids, EXTENSION pg_hashids"
                in failed[0]["detail"])
        accepted = handle("restore-verify", restore_verify.run, {"accept_skips": "true"}, None, env)
        assert accepted["ok"], accepted
        assert "accepted by the operator" in {c["name"]: c for c in accepted["databases"][0]["checks"]}[
            "skipped objects"]["detail"]
    finally:
        source.admin("DROP EXTENSION pg_hashids")


def test_the_runbooks_supabase_scenario_runs_verbatim(tmp_path: Path, make_env: Any, source: SupabaseServer,
                                                      project: SupabaseServer, staging: PgServer,
                                                      age_keys: tuple[str, str]) -> None:
    """docs/runbook.md §3, as written: `odoo` is the Supabase project's database, as in .env.example."""
    import re
    import subprocess

    from conftest import ROOT
    from drkit.platform import envvars
    from drkit.platform.runtime import without_unset
    from support import operator

    text = (ROOT / "docs" / "runbook.md").read_text()
    first = re.findall(r"^<!-- run -->\n```bash\n(.*?)^```", text, flags=re.M | re.S)[0]
    (block,) = re.findall(r"^<!-- run supabase -->\n```bash\n(.*?)^```", text, flags=re.M | re.S)
    assert "NEW_PROJECT=" in first and '--target "$NEW_PROJECT"' in block
    dotenv = make_env({"odoo": source.url()}, DRKIT_DB_ODOO_COUNT_TABLES="*", DRKIT_STAGING_URL=staging.url())
    deployed = without_unset(envvars.function_environment((ROOT / "project.yml").read_text(), "db-backup", dotenv))
    assert handle("db-backup", db_backup.run, {}, None, deployed)["ok"]  # the hourly backup, as deployed
    work = operator.folder(tmp_path, dotenv, age_keys[0])
    script = (f"set -euo pipefail\nNEW_PROJECT='postgresql://postgres@127.0.0.1:{project.port}/postgres'\n" + block)
    env = operator.shell(tmp_path, project.password, COLUMNS="200")
    proc = subprocess.run(["bash", "-xc", script], cwd=work, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    out = " ".join(proc.stdout.split())
    assert "cannot carry: Vault and pgsodium secrets" in out and "a Supabase project, fresh" in out
    assert "PASS policies: 11 identical" in out and "FAIL" not in out
    for table in USER_TABLES:
        assert rows(project, table) == rows(source, table), table
    assert catalog(project) == catalog(source)
    assert project.password not in proc.stdout + proc.stderr


def test_a_committed_restore_that_fails_its_checks_says_so(env: dict[str, str], cli: tuple[str, str],
                                                           project: SupabaseServer, s3_client: Any, bucket: str,
                                                           capsys: pytest.CaptureFixture[str]) -> None:
    """A new project is restored into in place: when the comparison after the COMMIT fails, the error and the
    audit say the target was written (never "unchanged")."""
    from drkit.policy import layout
    from drkit.storage import signed
    from drkit_dev.keys import store_of

    env_file, identity = cli
    done = backup(env)
    m = manifest_of(env, done["backup_id"])
    todos = next(t for t in m["tables"] if (t["schema"], t["name"]) == ("public", "todos"))
    todos["exact_rows"] += 1  # the manifest, re-signed, says one row more than any restore brings
    signed.put_json(store_of(env, "db-backup"), layout.manifest_key("sb", done["backup_id"]), m)
    code, out = run_cli(capsys, "--env-file", env_file, "restore", "--db", "sb", "--target", project.url(),
                        "--identity", identity)
    assert code != 0
    assert "the restore was committed into postgres, but it does not match the manifest" in out, out
    assert "public.todos 100 != 101" in out
    failed = [content(s3_client, bucket, k) for k in keys(s3_client, bucket, "audit/") if "restore.failed" in k]
    assert len(failed) == 1 and failed[0]["details"]["target_unchanged"] is False, failed
