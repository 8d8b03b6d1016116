"""Supabase's known restore traps, each a case on the fixture built from today's platform migrations.

The fixture (drkit_dev/data/supabase, PROVENANCE.md) has today's auth and storage tables: vector and
analytics buckets the project role may read but not write, the platform's full migration history,
Vault secrets, a pg_cron job that posts to a webhook, a Stripe foreign server (Wrappers) with its API
key and login. What an operator meets restoring it, and what drkit does about each:

| trap | behaviour |
|---|---|
| permission denied on storage.buckets_vectors | platform table: skipped by name, with why |
| duplicate keys on auth.schema_migrations / storage.migrations | skipped: the project has its own |
| permission denied on vault.secrets / pgsodium.key | skipped: ciphertext of a root key no dump carries |
| a user-data table the project role may not write | refused before anything starts, with the list |
| pg_cron, pg_net, wrappers firing in a copy | disarmed inside the transaction (unless --keep-jobs) |
| must be owner of a subscription | skipped by name unless the role may create subscriptions |
| unqualified names under the empty search_path | the failing entry and the fix in the source |
| non-immutable CHECK constraints | the failing entry and the fix in the source |
| custom roles' passwords | created without passwords; the plan says so |
| Storage file bytes | not in a dump: said in the plan; files backups (test_files_backup) |
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest

from drkit.functions import restore_verify
from drkit.platform.runtime import handle
from drkit.postgres import platform
from drkit_dev.pgserver import PgServer
from drkit_dev.supabase import SupabaseServer
from support.supabase import USER_TABLES, backup, catalog, cli, env, project, rows, run_cli, source, staging

__all__ = ["cli", "env", "project", "source", "staging"]  # fixtures


def restore(capsys: pytest.CaptureFixture[str], cli: tuple[str, str], db: str, target: str,
            *extra: str) -> tuple[int, str]:
    env_file, identity = cli
    return run_cli(capsys, "--env-file", env_file, "restore", "--db", db, "--target", target, "--identity", identity,
                   *extra)


def options(server: SupabaseServer, name: str) -> list[str]:
    with server.connect() as conn:
        found = conn.execute("SELECT coalesce(srvoptions, '{}') FROM pg_foreign_server WHERE srvname = %s",
                             (name,)).fetchone()
        return sorted(o.split("=", 1)[0] for o in found[0]) if found else []


def mappings(server: SupabaseServer) -> int:
    with server.connect(user="supabase_admin") as conn:
        return int(conn.execute("SELECT count(*) FROM pg_user_mapping").fetchone()[0])


def test_a_project_on_todays_platform_gets_every_user_row_and_none_of_the_platforms(
        env: dict[str, str], cli: tuple[str, str], source: SupabaseServer, project: SupabaseServer,
        capsys: pytest.CaptureFixture[str]) -> None:
    backup(env)
    before = {t: rows(project, t) for t in ("storage.buckets_vectors", "storage.vector_indexes",
                                            "storage.buckets_analytics", "auth.schema_migrations",
                                            "storage.migrations", "cron.job", "vault.secrets")}
    code, out = restore(capsys, cli, "sb", project.url(), "--dry-run")
    assert code == 0 and "writes the users' rows of" in out and "skips by name the rows of" in out, out
    assert "2 pg_cron jobs in the backup" in out and "disarms the copy inside the transaction" in out
    assert "no passwords: set them before use" in out  # custom roles' passwords are never in a dump

    code, out = restore(capsys, cli, "sb", project.url())
    assert code == 0 and "FAIL" not in out, out
    # every user table (the users' rows in the platform's schemas included), policy and trigger
    with source.connect() as conn:
        present = [t for t in platform.USER_DATA if conn.execute("SELECT to_regclass(%s)", (t,)).fetchone()[0]]
    assert len(present) == len(platform.USER_DATA)
    for table in sorted({*USER_TABLES, *present}):
        assert rows(project, table) == rows(source, table), table
    assert catalog(project) == catalog(source)
    # the platform's tables are the project's own, untouched: no duplicate keys, no permission denied
    assert {t: rows(project, t) for t in before} == before
    assert rows(source, "storage.buckets_vectors")[0] == 1 and rows(source, "cron.job")[0] == 2
    assert "platform data: vector buckets: provisioned by the platform's vector service" in out
    assert "fails on duplicate keys" in out and "root key, which no dump carries" in out
    # the copy calls nobody: the Stripe server keeps its URL but not its key, its login is left out
    assert options(project, "stripe_server") == ["api_url"]
    assert mappings(project) == 0
    assert "disarmed: 1 foreign-server credential option(s) dropped, 1 user mapping(s) left out or dropped" in out
    assert "pg_cron job not restored: nightly-digest (0 3 * * *): schedule it again with cron.schedule()" in out


def test_keep_jobs_restores_the_logins_and_credentials(env: dict[str, str], cli: tuple[str, str],
                                                       project: SupabaseServer,
                                                       capsys: pytest.CaptureFixture[str]) -> None:
    backup(env)
    code, out = restore(capsys, cli, "sb", project.url(), "--keep-jobs")
    assert code == 0 and "jobs kept armed (--keep-jobs)" in out, out
    assert options(project, "stripe_server") == ["api_key", "api_url"] and mappings(project) == 1


def test_a_user_data_table_the_project_role_cannot_write_is_refused_before_anything_starts(
        env: dict[str, str], cli: tuple[str, str], project: SupabaseServer,
        capsys: pytest.CaptureFixture[str]) -> None:
    backup(env)
    project.admin("REVOKE supabase_auth_admin FROM postgres; REVOKE INSERT ON auth.identities, auth.mfa_factors "
                  "FROM postgres")
    before = catalog(project), rows(project, "auth.users")
    code, out = restore(capsys, cli, "sb", project.url())
    assert code == 2, out
    assert "postgres may not write auth.identities, auth.mfa_factors in the target project" in out
    assert "Checked before the restore started: nothing was changed" in out
    assert (catalog(project), rows(project, "auth.users")) == before
    with project.connect() as conn:  # not even the custom roles were created
        assert conn.execute("SELECT count(*) FROM pg_roles WHERE rolname LIKE 'app_%'").fetchone() == (0,)


@pytest.fixture
def armed_staging() -> Iterator[SupabaseServer]:
    """A staging server that has pg_cron and Wrappers (a superuser restores there, as restore-verify may)."""
    server = SupabaseServer().start()
    yield server
    server.stop()


def test_restore_verify_disarms_its_scratch_copy(make_env: Any, source: SupabaseServer,
                                                 armed_staging: SupabaseServer, age_keys: tuple[str, str]) -> None:
    staging_url = armed_staging.url().replace("postgres:", "supabase_admin:", 1)
    env = make_env({"sb": source.url()}, DRKIT_DB_SB_COUNT_TABLES="public.todos", DRKIT_STAGING_URL=staging_url,
                   DRKIT_AGE_IDENTITY=age_keys[0])
    backup(env)
    done = handle("restore-verify", restore_verify.run, {}, None, env)
    db = done["databases"][0]
    assert done["ok"] and db["status"] == "passed", db
    # the two jobs were restored (pg_cron is there), deactivated in the same transaction; the Stripe key dropped
    assert db["disarmed"] == {"cron_jobs": 2, "net_requests": 0, "server_credentials": 1, "user_mappings": 1,
                              "subscriptions": 0}, db
    assert "EXTENSION pg_cron" not in db["skipped"] and "TABLE DATA cron.job" not in db["skipped"]


def test_unqualified_names_and_mutable_checks_fail_with_the_fix_named(
        make_env: Any, pg: PgServer, dbname: str, tmp_path: Any, age_keys: tuple[str, str],
        capsys: pytest.CaptureFixture[str]) -> None:
    """Two source objects pg_dump's restore order breaks: a CHECK whose function names a table without its
    schema (the restore's search_path is empty), and a CHECK that reads another table (not immutable)."""
    from support.supabase import backup as _unused  # noqa: F401 - the module's helpers stay in one place

    pg.execute("CREATE TABLE words (w text PRIMARY KEY); "
               "CREATE FUNCTION task_allowed(t text) RETURNS boolean LANGUAGE sql STABLE "
               "AS $$ SELECT EXISTS (SELECT 1 FROM words WHERE w = split_part(t, ' ', 1)) $$; "
               "CREATE TABLE todos (id int PRIMARY KEY, task text CHECK (task_allowed(task))); "
               "INSERT INTO words VALUES ('buy'); INSERT INTO todos VALUES (1, 'buy milk');", dbname)
    env = make_env({"traps": pg.url(dbname)}, DRKIT_AGE_IDENTITY=age_keys[0])
    env_file = tmp_path / "drkit.env"
    env_file.write_text("".join(f"export {k}='{v}'\n" for k, v in env.items()))
    identity = tmp_path / "id.txt"
    identity.write_text(age_keys[0] + "\n")
    target = pg.url(f"{dbname}_restored")
    from drkit.functions import db_backup

    assert handle("db-backup", db_backup.run, {}, None, env)["ok"]
    code, out = restore(capsys, (str(env_file), str(identity)), "traps", target)
    assert code != 0 and "restoring TABLE DATA public.todos" in out, out
    assert 'relation "words" does not exist' in out and "empty search_path" in out
    assert "ALTER FUNCTION task_allowed SET search_path = public, pg_temp" in out and "nothing was committed" in out

    pg.execute("ALTER FUNCTION task_allowed(text) SET search_path = public, pg_temp", dbname)  # the first fix
    time.sleep(1.05 - time.time() % 1)  # backup ids carry seconds
    assert handle("db-backup", db_backup.run, {}, None, env)["ok"]
    code, out = restore(capsys, (str(env_file), str(identity)), "traps", target)
    assert code != 0 and 'violates check constraint "todos_task_check"' in out, out
    assert "pg_dump assumes CHECK constraints are immutable" in out and "Replace it with a trigger" in out
    with pg.connect() as conn:  # neither attempt left a database behind
        assert conn.execute("SELECT count(*) FROM pg_database WHERE datname LIKE %s",
                            (f"{dbname}_restored%",)).fetchone() == (0,)


def test_subscriptions_and_realtimes_table_are_named_and_never_restored(
        env: dict[str, str], cli: tuple[str, str], source: SupabaseServer, project: SupabaseServer,
        capsys: pytest.CaptureFixture[str]) -> None:
    """"must be owner of table subscription" (Realtime's realtime.subscription) and logical subscriptions:
    a copy must never pull from the publisher, and the project keeps its own Realtime state."""
    from support.supabase import manifest_of

    source.admin("CREATE SUBSCRIPTION from_legacy CONNECTION 'host=127.0.0.1 port=9 dbname=legacy' "
                 "PUBLICATION legacy_pub WITH (connect = false)")
    try:
        time.sleep(1.05 - time.time() % 1)  # backup ids carry seconds
        done = backup(env)
        objects = manifest_of(env, done["backup_id"])["objects"]
        assert objects["subscriptions"] == ["from_legacy"] and objects["subscriptions_dumped"] is False
        code, out = restore(capsys, cli, "sb", project.url())
        assert code == 0, out
        assert ("subscriptions of the source (from_legacy) are not in this backup (pg_dump leaves them out for a "
                "role that is not a superuser)") in out
        assert "Realtime's own state" in out and rows(source, "realtime.subscription")[0] == 1
        assert rows(project, "realtime.subscription")[0] == 0
        with project.connect(user="supabase_admin") as conn:
            assert conn.execute("SELECT count(*) FROM pg_subscription").fetchone() == (0,)
    finally:
        source.admin("ALTER SUBSCRIPTION from_legacy SET (slot_name = NONE); DROP SUBSCRIPTION from_legacy")
