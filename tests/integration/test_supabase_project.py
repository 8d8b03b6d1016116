"""The rest of a Supabase project: its settings through the Management API (a fake checked against the operations
Supabase documents), `drkit supabase recreate` from them, the Storage reconciliation and Supabase's own backups
in the DR report."""

from __future__ import annotations

import json
import stat
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from conftest import keys
from drkit.functions import config_backup
from drkit.platform.runtime import handle
from drkit_dev.fakesupabase import TOKEN, FakeSupabase
from drkit_dev.pgserver import PgServer
from support.clirun import cli_with_env
from support.records import content

REF = "abcdefghijklmnopqrst"
SECRETS = ("smtp-pw-drkit-fixture", "gsecret-drkit-fixture", "whsec_drkit_fixture", "jwt-secret-drkit-fixture",
           "sk_live_drkit_fixture", "re_drkit_fixture", TOKEN)


@pytest.fixture
def api() -> Iterator[FakeSupabase]:
    with FakeSupabase() as fake:
        fake.add_project(REF, "shop-prod", "eu-central-1")
        yield fake
    assert fake.violations == [], fake.violations  # every request drkit sent is one Supabase documents
    assert fake.answers_complete() == []


@pytest.fixture
def env(make_env: Any, api: FakeSupabase, age_keys: tuple[str, str]) -> dict[str, str]:
    source = {"type": "supabase", "name": "supabase", "project_ref": REF, "api_url": api.url}
    out: dict[str, str] = make_env({}, DRKIT_CONFIG_SOURCES=json.dumps([source]), DRKIT_SUPABASE_TOKEN=TOKEN,
                                   DRKIT_AGE_IDENTITY=age_keys[0])
    out.pop("DRKIT_DATABASES")
    return out


def config_run(env: dict[str, str]) -> dict[str, Any]:
    time.sleep(max(0.0, 1.05 - time.time() % 1))  # backup ids carry seconds
    return dict(handle("config-backup", config_backup.run, {}, None, env))


def cli(env: dict[str, str], capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str]:
    return cli_with_env(env, capsys, *argv, columns=250)


def extracted(env: dict[str, str], capsys: pytest.CaptureFixture[str], tmp_path: Path) -> Path:
    dest = tmp_path / f"x-{uuid.uuid4().hex[:6]}"
    code, out = cli(env, capsys, "config", "extract", "--backup", "latest", "--to", str(dest))
    assert code == 0, out
    return dest


def test_config_backup_keeps_the_project_outside_its_database_and_no_secret(
        env: dict[str, str], api: FakeSupabase, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    result = config_run(env)
    assert result["ok"], result
    (unit,) = result["sources"]
    d = unit["details"]
    assert (d["project"], d["region"], d["plan"], d["postgres"]) == (REF, "eu-central-1", "pro", "17.6.1.005")
    assert (d["functions"], d["secrets"], d["buckets"]) == (1, 2, 1) and d["auth_secrets"] == 3
    assert d["provider_backups"]["completed"] == 7 and d["provider_backups"]["pitr_enabled"] is False
    folder = extracted(env, capsys, tmp_path) / "supabase"
    auth = json.loads((folder / "auth-config.json").read_text())
    assert auth["site_url"] == "https://app.example.com" and auth["external_google_enabled"] is True
    assert auth["smtp_pass"] == auth["external_google_secret"] == "<redacted: re-enter it>"
    assert {"smtp_pass", "external_google_secret", "hook_send_email_secrets"} <= set(
        json.loads((folder / "auth-secrets.json").read_text()))
    assert [s["name"] for s in json.loads((folder / "secret-names.json").read_text())] == ["RESEND_API_KEY",
                                                                                           "STRIPE_KEY"]
    assert (folder / "functions" / "hello-world.eszip").read_bytes() == api.projects[REF].functions["hello-world"][1]
    assert json.loads((folder / "network-restrictions.json").read_text())["config"]["dbAllowedCidrs"] == [
        "203.0.113.0/24"]
    everything = b"".join(p.read_bytes() for p in folder.rglob("*") if p.is_file()) + json.dumps(result).encode()
    for secret in SECRETS:
        assert secret.encode() not in everything, secret


def test_the_api_failing_is_a_failed_source_that_says_what_to_check(env: dict[str, str], api: FakeSupabase) -> None:
    api.fail("GET", r"/config/auth$", 429, times=1, retry_after=0)  # retried: the request was not processed
    assert config_run(env)["ok"]
    api.token = "sbp_another_token"
    result = config_run(env)
    (unit,) = result["sources"]
    assert not result["ok"] and unit["status"] == "failed"
    assert "the token was refused (HTTP 401): check DRKIT_SUPABASE_TOKEN" in unit["error"]
    assert TOKEN not in json.dumps(result)


def test_recreate_plans_then_rebuilds_resumably_and_never_twice(
        env: dict[str, str], api: FakeSupabase, tmp_path: Path, capsys: pytest.CaptureFixture[str],
        s3_client: Any, bucket: str) -> None:
    assert config_run(env)["ok"]
    args = ("supabase", "recreate", "--region", "us-east-1", "--name", "shop-dr", "--db", "shop", "--files-source",
            "supabase-files", "--api-url", api.url)
    before = len(api.requests)
    code, out = cli(env, capsys, *args)
    assert code == 0 and "plan only: nothing was changed" in out, out
    assert "create project shop-dr in us-east-1 (organization acme-org, plan pro)" in out
    assert "Edge Function hello-world version 7" in out and "STRIPE_KEY=…" in out
    assert len(api.requests) == before  # a plan reads the backup, never the API

    pw = tmp_path / "db-pass"
    api.fail("POST", r"/functions$", 500, times=1)  # the deploy fails once: a POST is never retried blindly
    code, out = cli(env, capsys, *args, "--apply", "--db-pass-file", str(pw))
    assert code == 1 and "step 'function:hello-world' failed" in out, out
    (new,) = [p for p in api.projects.values() if p.name == "shop-dr"]
    assert f"the project {new.ref} exists; run the same command again" in out
    assert stat.S_IMODE(pw.stat().st_mode) == 0o600 and pw.read_text().strip() not in out

    code, out = cli(env, capsys, *args, "--apply", "--db-pass-file", str(pw))
    assert code == 0, out
    assert [p.name for p in api.projects.values()].count("shop-dr") == 1  # continued, not created again
    old = api.projects[REF]
    assert new.auth["site_url"] == old.auth["site_url"] and new.auth["jwt_exp"] == 3600
    assert new.auth["smtp_pass"] is None  # secrets are re-entered by a person, never copied
    assert new.postgrest["db_schema"] == "public,graphql_public"
    assert new.network["config"]["dbAllowedCidrs"] == ["203.0.113.0/24"]
    assert new.functions["hello-world"][1] == old.functions["hello-world"][1]
    assert f"./scripts/drkit restore --db shop --target \"postgresql://postgres:$(cat {pw})@db.{new.ref}" in out
    assert f"files restore --source supabase-files --to-endpoint https://{new.ref}.supabase.co" in out
    state = content(s3_client, bucket, "state/supabase/recreate/shop-dr.json")
    assert state["ref"] == new.ref and state["done"] == ["project", "auth", "api", "network", "function:hello-world"]
    steps = [content(s3_client, bucket, k)["details"]["step"] for k in keys(s3_client, bucket, "audit/")
             if "supabase.recreate.step" in k]
    assert sorted(steps) == sorted(state["done"])
    code, out = cli(env, capsys, *args, "--apply", "--db-pass-file", str(pw))  # a third run has nothing left to do
    assert code == 0 and [p.name for p in api.projects.values()].count("shop-dr") == 1


@pytest.fixture
def storage_db(pg: PgServer, dbname: str) -> str:
    pg.execute("CREATE SCHEMA storage; CREATE TABLE storage.objects (id uuid PRIMARY KEY DEFAULT gen_random_uuid(), "
               "bucket_id text, name text, metadata jsonb)", dbname)
    return pg.url(dbname)


def test_storage_reconciliation_names_rows_without_files_and_files_without_rows(
        make_env: Any, s3_client: Any, s3_server: Any, pg: PgServer, dbname: str, storage_db: str,
        age_keys: tuple[str, str], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    b = f"avatars-{uuid.uuid4().hex[:8]}"
    s3_client.create_bucket(Bucket=b)
    for name in ("u1/a.png", "u2/a.png", "orphan.png"):
        s3_client.put_object(Bucket=b, Key=name, Body=b"x" * 100)
    pg.execute(f"INSERT INTO storage.objects (bucket_id, name, metadata) VALUES ('{b}', 'u1/a.png', "
               f"'{{\"size\": 100}}'), ('{b}', 'u2/a.png', '{{\"size\": 99}}'), ('{b}', 'gone.png', '{{\"size\": 5}}')",
               dbname)
    source = {"type": "storage", "name": "supabase-files", "endpoint": s3_server.endpoint, "buckets": [b],
              "database_env": "DRKIT_STORAGE_DB_URL"}
    env = make_env({}, DRKIT_CONFIG_SOURCES=json.dumps([source]), DRKIT_STORAGE_S3_KEY="k",
                   DRKIT_STORAGE_S3_SECRET="s", DRKIT_STORAGE_DB_URL=storage_db, DRKIT_AGE_IDENTITY=age_keys[0])
    env.pop("DRKIT_DATABASES")
    result = config_run(env)
    assert result["ok"], result
    rec = result["sources"][0]["details"]["reconcile"]
    assert (rec["rows"], rec["files"], rec["rows_without_file"], rec["files_without_row"], rec["size_differs"]) == (
        3, 3, 1, 1, 1)
    assert rec["summary"] == "1 rows without a file (broken after a restore); 1 files without a row; 1 size differences"
    listed = json.loads((extracted(env, capsys, tmp_path) / "supabase-files" / "reconcile.json").read_text())
    assert listed["lists"] == {"rows_without_file": [f"{b}/gone.png"], "files_without_row": [f"{b}/orphan.png"],
                               "size_differs": [f"{b}/u2/a.png"]}
    assert "gone.png" not in json.dumps(result)  # object names stay in the encrypted archive

    code, out = cli(env, capsys, "report", "--out", str(tmp_path / "report.html"))
    page = (tmp_path / "report.html").read_text()
    assert "Storage reconciliation" in page and "1 storage.objects rows have no file" in page


def test_the_report_shows_supabases_own_backups_beside_drkits(env: dict[str, str], api: FakeSupabase,
                                                              tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    api.projects[REF].backups["backups"] = [{"id": i, "is_physical_backup": True, "status": "COMPLETED",
                                             "inserted_at": f"2026-11-2{i}T03:00:00Z"} for i in range(1, 8)]
    api.projects[REF].backups["pitr_enabled"] = True
    api.projects[REF].backups["physical_backup_data"] = {"earliest_physical_backup_date_unix": 1764547200,
                                                         "latest_physical_backup_date_unix": 1765152000}
    assert config_run(env)["ok"]
    code, out = cli(env, capsys, "report", "--out", str(tmp_path / "report.html"))
    page = (tmp_path / "report.html").read_text()
    assert "Their copy and ours (Supabase)" in page and f"Supabase&#x27;s ({REF}, eu-central-1, plan pro)" in page
    assert "7 completed, 0 failed" in page and "PITR 2025-12-01" in page
    # Supabase's newest backup is over two days old: a finding, named
    assert f"Supabase project {REF}: its own newest backup is from 2026-11-27" in page


def test_a_reconciliation_that_cannot_run_keeps_the_files_backup_and_is_a_finding(
        make_env: Any, s3_client: Any, s3_server: Any, age_keys: tuple[str, str], tmp_path: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    b = f"avatars-{uuid.uuid4().hex[:8]}"
    s3_client.create_bucket(Bucket=b)
    s3_client.put_object(Bucket=b, Key="u1/a.png", Body=b"x" * 10)
    source = {"type": "storage", "name": "supabase-files", "endpoint": s3_server.endpoint, "buckets": [b],
              "database_env": "DRKIT_STORAGE_DB_URL"}
    env = make_env({}, DRKIT_CONFIG_SOURCES=json.dumps([source]), DRKIT_STORAGE_S3_KEY="k",
                   DRKIT_STORAGE_S3_SECRET="s", DRKIT_AGE_IDENTITY=age_keys[0],
                   DRKIT_STORAGE_DB_URL="postgresql://reader:not-this-Pw-123@127.0.0.1:1/postgres")
    env.pop("DRKIT_DATABASES")
    result = config_run(env)
    assert result["ok"] and result["sources"][0]["details"]["objects"] == 1, result  # the files are backed up
    assert "cannot read storage.objects with DRKIT_STORAGE_DB_URL" in result["sources"][0]["details"]["reconcile"][
        "error"]
    assert "not-this-Pw-123" not in json.dumps(result)
    cli(env, capsys, "report", "--out", str(tmp_path / "report.html"))
    assert "Storage supabase-files: the reconciliation did not run" in (tmp_path / "report.html").read_text()
