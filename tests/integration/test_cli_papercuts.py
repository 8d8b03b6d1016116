"""Operator papercuts, each one seen by a new operator: what drkit said, and what it says now."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import pytest

from drkit.cli import main
from drkit.cli.common import print_result
from drkit.crypto import encryption
from drkit.functions import db_backup
from drkit.platform.runtime import handle
from drkit_dev.pgserver import PgServer


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str]:
    code = main.main(list(argv))
    out = capsys.readouterr()
    return code, " ".join((out.out + out.err).split())


@pytest.fixture
def dotenv(tmp_path: Path, make_env: Any, pg: PgServer, dbname: str, age_keys: tuple[str, str]) -> Any:
    pg.execute("CREATE TABLE t AS SELECT g FROM generate_series(1, 100) g", dbname)
    env = make_env({"odoo": pg.url(dbname)})

    def write(*extra_lines: str, mode: int = 0o600, **over: str) -> tuple[Path, dict[str, str]]:
        values = {**env, **over}
        path = tmp_path / ".env"
        path.write_text("".join(f"{k}={v}\n" for k, v in values.items()) + "".join(f"{x}\n" for x in extra_lines))
        path.chmod(mode)
        return path, values

    return write


def test_a_line_the_env_file_cannot_hold_is_refused_by_number_without_its_value(
        dotenv: Any, capsys: pytest.CaptureFixture[str]) -> None:
    path, _ = dotenv('DRKIT_NOTIFY_WEBHOOK_URL = "https://hooks.example.com/x?token=s3cr3t-value')
    code, out = run(capsys, "--env-file", str(path), "config", "check")
    lines = len(path.read_text().splitlines())
    assert code == 2, out
    assert f"line {lines}: cannot be read (it starts with DRKIT_NOTIFY_WEBHOOK_URL)" in out
    assert "s3cr3t-value" not in out


def test_a_misspelt_name_and_a_readable_file_are_warned_about(dotenv: Any, capsys: pytest.CaptureFixture[str]) -> None:
    path, _ = dotenv("DRKIT_SPACES_BUKET=oops", "DRKIT_GITHUB_TOKEN_INFRA=ghp_x",
                     'DRKIT_CONFIG_SOURCES=[{"type": "github", "name": "infra", "repo": "a/b", '
                     '"token_env": "DRKIT_GITHUB_TOKEN_INFRA"}]', mode=0o644)
    _, out = run(capsys, "--env-file", str(path), "config", "check")
    assert "DRKIT_SPACES_BUKET is not a drkit variable, so nothing reads it: did you mean DRKIT_SPACES_BUCKET?" in out
    assert "DRKIT_GITHUB_TOKEN_INFRA is not a drkit variable" not in out  # a source's token_env names it
    assert f"{path} is readable by others (mode 0644)" in out and f"chmod 600 {path}" in out


def test_one_age_recipient_is_a_warning(dotenv: Any, capsys: pytest.CaptureFixture[str]) -> None:
    path, values = dotenv()
    assert len(values["DRKIT_AGE_RECIPIENTS"].split()) == 1
    _, out = run(capsys, "--env-file", str(path), "config", "check")
    assert "DRKIT_AGE_RECIPIENTS names one age recipient" in out
    two = values["DRKIT_AGE_RECIPIENTS"] + " " + encryption.generate_identity()[1]
    path, _ = dotenv(DRKIT_AGE_RECIPIENTS=two)
    _, out = run(capsys, "--env-file", str(path), "config", "check")
    assert "names one age recipient" not in out


def test_deploy_env_works_from_any_folder_and_names_a_missing_project_file(
        dotenv: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    path, _ = dotenv()
    monkeypatch.chdir(tmp_path)  # outside the checkout: its project.yml is still the one
    code, out = run(capsys, "--env-file", str(path), "config", "deploy-env", "--out", str(tmp_path / "d.env"))
    # project.yml was read (it names what this .env lacks), no traceback
    assert code == 2 and "DRKIT_STAGING_URL is required by dr/restore-verify" in out and "Traceback" not in out
    code, out = run(capsys, "--env-file", str(path), "config", "deploy-env", "--project", str(tmp_path / "no.yml"))
    assert code == 2 and "cannot read the project file" in out and "Traceback" not in out


def test_an_unknown_database_name_is_refused_with_the_closest_one(dotenv: Any,
                                                                   capsys: pytest.CaptureFixture[str]) -> None:
    path, _ = dotenv()
    for argv in (("backups", "list", "--db", "odo"),
                 ("restore", "--db", "odo", "--target", "postgresql://u@127.0.0.1:1/x", "--dry-run")):
        code, out = run(capsys, "--env-file", str(path), *argv)
        assert code == 2 and "unknown database 'odo' (did you mean 'odoo'?)" in out, out


def test_restore_checks_the_identity_and_refuses_jobs_it_would_ignore(
        dotenv: Any, tmp_path: Path, pg: PgServer, capsys: pytest.CaptureFixture[str]) -> None:
    path, values = dotenv()
    assert handle("db-backup", db_backup.run, {}, None, values)["ok"]
    wrong = tmp_path / "wrong.txt"
    wrong.write_text(encryption.generate_identity()[0] + "\n")
    target = pg.url("papercut_target")
    code, out = run(capsys, "--env-file", str(path), "restore", "--db", "odoo", "--target", target,
                    "--identity", str(wrong), "--dry-run")
    assert code == 2 and f"wrong age identity (--identity {wrong}): it does not open backup" in out, out
    assert "Nothing was changed" in out
    code, out = run(capsys, "--env-file", str(path), "restore", "--db", "odoo", "--target", target, "--jobs", "4")
    assert code == 2 and "--jobs runs pg_restore in parallel from a local copy: add --download-to PATH" in out


def test_the_report_period_error_is_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main.main(["report", "--days", "0"])
    err = capsys.readouterr().err
    assert exc.value.code == 2 and "0 days is outside 1 to 400" in err and "399" not in err


def test_a_failed_result_is_said_once(capsys: pytest.CaptureFixture[str]) -> None:
    print_result({"ok": False, "status": "failed", "decision": "failed: reserved IP 203.0.113.9: HTTP 422"}, False)
    out = " ".join(capsys.readouterr().out.split())
    assert out == "failed: reserved IP 203.0.113.9: HTTP 422"


def test_schedule_status_never_says_on_schedule_when_the_scheduler_is_silent(
        dotenv: Any, capsys: pytest.CaptureFixture[str]) -> None:
    from drkit.storage import jobs, records
    from drkit_dev.keys import store_of

    path, values = dotenv()
    store = store_of(values, "scheduler")
    then = dt.datetime.now(dt.UTC) - dt.timedelta(hours=3)
    records.write(store, jobs.KEY, jobs.ScheduleStatus(then, then, "dispatched 0; every job on schedule"), then)
    code, out = run(capsys, "--env-file", str(path), "schedule", "status")
    assert code == 1 and "the scheduler is silent: its last tick was 3.0 h ago" in out, out
    assert out.index("silent") < out.index("every job on schedule")  # the old sentence, labelled as old
