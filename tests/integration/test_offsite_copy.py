"""The off-site copy (dr/backup-copy): a second bucket, with Object Lock, that the primary's keys cannot reach.

On the local S3 server: the copy bucket is created with Object Lock (moto refuses deleting a locked
version, as S3 does). The attacker holds every key drkit holds, the copy's included: it deletes every
version it can in the copy, overwrites objects, and empties the primary. `drkit restore --from copy`
still restores the source's rows, and restore-verify passes on the copy. With the primary's endpoint
refusing connections, the copy is what restores.

moto's one gap, noted where it matters: it lets a COMPLIANCE retention date be shortened, which S3
refuses (AccessDenied); the attacker here does only what S3 allows it.
"""

from __future__ import annotations

import datetime as dt
import json
import time
import uuid
from pathlib import Path
from typing import Any

import pytest

from conftest import SPACES_SECRET, fill_rich, keys, table_fingerprints
from drkit.cli import main
from drkit.core.deadline import Deadline
from drkit.functions import backup_copy, config_backup, db_backup, health_probe, restore_verify
from drkit.platform.runtime import handle
from drkit.policy import layout
from drkit.storage import records
from drkit.storage.copies import CopyStatus
from drkit_dev.fakedo import FakeDO
from drkit_dev.keys import store_of
from drkit_dev.pgserver import PgServer
from drkit_dev.s3server import S3Server


@pytest.fixture
def copy_bucket(s3_client: Any) -> str:
    name = f"copy-{uuid.uuid4().hex[:12]}"
    s3_client.create_bucket(Bucket=name, ObjectLockEnabledForBucket=True)
    return name


def copy_env(s3_server: S3Server, copy_bucket: str, **extra: str) -> dict[str, str]:
    return {"DRKIT_COPY_BUCKET": copy_bucket, "DRKIT_COPY_ENDPOINT": s3_server.endpoint,
            "DRKIT_COPY_KEY": "copy-key", "DRKIT_COPY_SECRET": SPACES_SECRET, "DRKIT_COPY_LOCK_DAYS": "2", **extra}


@pytest.fixture
def app(make_env: Any, pg: PgServer, dbname: str, s3_server: S3Server, copy_bucket: str) -> dict[str, str]:
    fill_rich(pg, dbname)
    return make_env({"app": pg.url(dbname)}, **copy_env(s3_server, copy_bucket))


def backup(env: dict[str, str]) -> dict[str, Any]:
    result = handle("db-backup", db_backup.run, {}, None, env)
    assert result["ok"], result
    return dict(result["databases"][0])


def copy(env: dict[str, str], **params: Any) -> dict[str, Any]:
    result = backup_copy.run(params, env, Deadline(300))
    return result


def test_a_backup_is_copied_verified_locked_and_recorded(app: dict[str, str], s3_client: Any, bucket: str,
                                                         copy_bucket: str) -> None:
    b = backup(app)
    result = copy(app)
    assert result["ok"], result
    assert result["immutability"] == "object-lock" and result["lock_days"] == 2
    data = layout.data_key("app", b["backup_id"])
    held = keys(s3_client, copy_bucket)
    for key in (data, layout.manifest_key("app", b["backup_id"]), layout.manifest_key("app", b["backup_id"]) + ".minisig",
                layout.catalog_key("app"), layout.COPY_LEDGER_KEY, layout.COPY_STATUS_KEY):
        assert key in held, key
    head = s3_client.head_object(Bucket=copy_bucket, Key=data)
    assert head["ObjectLockMode"] == "COMPLIANCE"
    assert head["ObjectLockRetainUntilDate"] > dt.datetime.now(dt.UTC) + dt.timedelta(days=1)
    assert s3_client.get_object(Bucket=copy_bucket, Key=data)["Body"].read() == \
        s3_client.get_object(Bucket=bucket, Key=data)["Body"].read()
    # the status is in the primary too, signed by backup-copy, and says the copy is current
    got = records.read(store_of(app), layout.COPY_STATUS_KEY, CopyStatus, dt.datetime.now(dt.UTC))
    assert got is not None and got.writer == "backup-copy" and got.value.ok
    db = got.value.database("app")
    assert db is not None and db.newest_copied == b["backup_id"] and db.lag == dt.timedelta(0)
    # a second run copies nothing new
    again = copy(app)
    assert again["ok"] and again["copied"] == 0, again
    # the next backup: only its objects (and the moved catalog head)
    time.sleep(1.1)  # backup ids count seconds: the next one is newer
    b2 = backup(app)
    third = copy(app)
    assert third["ok"] and third["copied"] == 4 and b2["backup_id"] in json.dumps(third["databases"]), third


def test_a_planted_backup_is_never_copied(app: dict[str, str], s3_client: Any, bucket: str, copy_bucket: str) -> None:
    b = backup(app)
    fake = "20261201T000000Z-abcdef"
    for suffix, body in ((layout.DATA_SUFFIX, b"x" * 100), (layout.MANIFEST_SUFFIX, b'{"id": "%s"}' % fake.encode())):
        s3_client.put_object(Bucket=bucket, Key=layout.backup_base("app", fake) + suffix, Body=body)
    result = copy(app)
    assert not result["ok"] and any(fake in f for f in result["failures"]), result
    held = keys(s3_client, copy_bucket)
    assert layout.data_key("app", b["backup_id"]) in held
    assert not any(fake in k for k in held)


def test_the_copy_survives_an_attacker_with_every_key(app: dict[str, str], s3_client: Any, bucket: str,
                                                      copy_bucket: str, pg: PgServer, dbname: str, tmp_path: Path,
                                                      age_keys: tuple[str, str],
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    source = table_fingerprints(pg, dbname)
    backup(app)
    assert copy(app)["ok"]
    # the attack: overwrite every object in the copy, delete every version it can (and leave delete markers),
    # then empty the primary
    time.sleep(1.1)  # the S3 server stamps versions to the second: the attack starts in a later one
    attacked_at = dt.datetime.now(dt.UTC).replace(microsecond=0)
    for key in keys(s3_client, copy_bucket):
        s3_client.put_object(Bucket=copy_bucket, Key=key, Body=b"encrypted by ransomware",
                             ContentMD5="x6DLBbqVf6z6CugA8lBeuQ==")
    refused = deleted = 0
    for page in s3_client.get_paginator("list_object_versions").paginate(Bucket=copy_bucket):
        for v in page.get("Versions", []) + page.get("DeleteMarkers", []):
            try:
                s3_client.delete_object(Bucket=copy_bucket, Key=v["Key"], VersionId=v["VersionId"],
                                        BypassGovernanceRetention=True)
                deleted += 1
            except s3_client.exceptions.ClientError:
                refused += 1
    for key in keys(s3_client, copy_bucket):
        s3_client.delete_object(Bucket=copy_bucket, Key=key)  # delete markers on top of what is left
    for key in keys(s3_client, bucket):
        s3_client.delete_object(Bucket=bucket, Key=key)
    assert refused >= 3 and deleted > 0, (refused, deleted)
    assert keys(s3_client, bucket) == [] and keys(s3_client, copy_bucket) == []
    # restore from the copy: behind the delete markers, the original (locked) versions
    env_file = tmp_path / ".env"
    env_file.write_text("".join(f"{k}={v}\n" for k, v in app.items()))
    identity = tmp_path / "id.txt"
    identity.write_text(age_keys[0] + "\n")
    target = f"r_{uuid.uuid4().hex[:8]}"
    argv = ["--env-file", str(env_file), "restore", "--from", "copy", "--db", "app", "--target", pg.url(target),
            "--identity", str(identity)]
    assert main.main(argv) == 0, capsys.readouterr().err
    try:
        assert table_fingerprints(pg, target) == source
    finally:
        pg.drop_database(target)
    # as of before the attack, too (the overwrites are newer versions, and are ignored)
    as_of = (attacked_at - dt.timedelta(milliseconds=1)).isoformat()
    target = f"r_{uuid.uuid4().hex[:8]}"
    argv = ["--env-file", str(env_file), "restore", "--from", "copy", "--as-of", as_of, "--db", "app", "--target",
            pg.url(target), "--identity", str(identity)]
    assert main.main(argv) == 0, capsys.readouterr().err
    pg.drop_database(target)
    # and restore-verify proves the copy
    verify_env = {**app, "DRKIT_AGE_IDENTITY": age_keys[0], "DRKIT_STAGING_URL": pg.url("postgres"),
                  "DRKIT_OFFSITE_BUCKET": copy_bucket, "DRKIT_OFFSITE_ENDPOINT": app["DRKIT_COPY_ENDPOINT"],
                  "DRKIT_OFFSITE_KEY": "read-key", "DRKIT_OFFSITE_SECRET": SPACES_SECRET}
    result = handle("restore-verify", restore_verify.run, {"database": "app", "repo": "copy"}, None, verify_env)
    assert result["ok"], result
    assert result.get("repo") == "copy"


def test_the_primary_down_restores_from_the_copy(app: dict[str, str], pg: PgServer, dbname: str, tmp_path: Path,
                                                 age_keys: tuple[str, str], capsys: pytest.CaptureFixture[str]) -> None:
    from drkit_dev.s3server import free_port

    source = table_fingerprints(pg, dbname)
    backup(app)
    assert copy(app)["ok"]
    down = {**app, "DRKIT_SPACES_ENDPOINT": f"http://127.0.0.1:{free_port()}", "DRKIT_S3_MAX_ATTEMPTS": "1"}
    env_file = tmp_path / ".env"
    env_file.write_text("".join(f"{k}={v}\n" for k, v in down.items()))
    identity = tmp_path / "id.txt"
    identity.write_text(age_keys[0] + "\n")
    target = f"r_{uuid.uuid4().hex[:8]}"
    # the primary unreachable: drkit says so and names the --from copy command (never a password it was given)
    with_password = pg.url(target, password="Typed-in-9")
    assert main.main(["--env-file", str(env_file), "restore", "--db", "app", "--target", with_password,
                      "--identity", str(identity)]) != 0
    err = capsys.readouterr().err
    assert "cannot reach" in err and "--from copy" in err and "Typed-in-9" not in err, err
    assert main.main(["--env-file", str(env_file), "restore", "--from", "copy", "--db", "app", "--target",
                      pg.url(target), "--identity", str(identity)]) == 0, capsys.readouterr().err
    try:
        assert table_fingerprints(pg, target) == source
    finally:
        pg.drop_database(target)
    assert main.main(["--env-file", str(env_file), "backups", "list", "--from", "copy", "--db", "app"]) == 0
    assert "app" in capsys.readouterr().out


def test_copy_lag_is_alerted_when_the_copy_stops(app: dict[str, str]) -> None:
    backup(app)
    assert copy(app)["ok"]
    now = dt.datetime.now(dt.UTC)
    fine = health_probe.run({}, app, Deadline(50))
    lag = {t["name"]: t for t in fine["targets"]}["copy-lag:app"]
    assert lag["ok"], lag
    # the copy stops; backups go on for four hours
    later = now + dt.timedelta(hours=4)
    time.sleep(1.1)  # backup ids count seconds: the next one is newer
    result = handle("db-backup", db_backup.run, {}, None, app)
    assert result["ok"]
    # a backup newer than the copy by more than DRKIT_OFFSITE_MAX_LAG: the next probe (run four hours on) alerts
    probe = health_probe.run({}, {**app, "DRKIT_OFFSITE_MAX_LAG": "1m"}, Deadline(50), clock=lambda: later)
    lag = {t["name"]: t for t in probe["targets"]}["copy-lag:app"]
    assert not lag["ok"] and "behind" in lag["detail"], lag


def test_the_runbooks_primary_lost_scenario_runs_verbatim(tmp_path: Path, pg: PgServer, dbname: str, s3_server: S3Server,
                                                          bucket: str, age_keys: tuple[str, str]) -> None:
    """docs/runbook.md §6a, as written, with the primary bucket's endpoint refusing every connection."""
    import re
    import subprocess

    from conftest import ROOT
    from drkit.platform import envvars
    from drkit.platform.runtime import without_unset
    from drkit_dev.s3server import free_port
    from support import operator
    from support.offsite import copy_bucket, verify_copy_env
    from support.scenarios import base_env

    fill_rich(pg, dbname)
    text = (ROOT / "docs" / "runbook.md").read_text()
    (block,) = re.findall(r"^<!-- run primary-lost -->\n```bash\n(.*?)^```", text, flags=re.M | re.S)
    dotenv = base_env(s3_server.endpoint, bucket, SPACES_SECRET, pg.url(dbname), pg.url("postgres"), age_keys, pg.port)
    dotenv.update(verify_copy_env(dotenv))  # restore-verify proves the copy too, with the copy's Read key
    copy_bucket(dotenv)
    project = (ROOT / "project.yml").read_text()

    def deployed(function: str) -> dict[str, str]:
        return without_unset(envvars.function_environment(project, function, dotenv))

    fake = FakeDO().start()
    try:
        fake.add_domain("example.net")
        dotenv.update(DRKIT_DO_TOKEN=fake.token, DRKIT_DO_ENDPOINT=fake.endpoint, DRKIT_DO_CA_FILE=fake.ca_file)
        assert handle("db-backup", db_backup.run, {}, None, deployed("db-backup"))["ok"]
        assert handle("config-backup", config_backup.run, {}, None, deployed("config-backup"))["ok"]
        assert handle("backup-copy", backup_copy.run, {}, None, deployed("backup-copy"))["ok"]
    finally:
        fake.stop()
    dotenv.update(DRKIT_SPACES_ENDPOINT=f"http://127.0.0.1:{free_port()}", DRKIT_S3_MAX_ATTEMPTS="1")  # the region is gone
    work = operator.folder(tmp_path, dotenv, age_keys[0])
    script = f"set -euo pipefail\nSERVER='postgresql://postgres@127.0.0.1:{pg.port}'\n" + block
    env = operator.shell(tmp_path, pg.password, COLUMNS="200")
    try:
        proc = subprocess.run(["bash", "-xc", script], cwd=work, env=env, capture_output=True, text=True, timeout=300)
        assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
        assert table_fingerprints(pg, "odoo_from_copy") == table_fingerprints(pg, dbname)
        assert '"repo": "copy"' in proc.stdout and '"ok": true' in proc.stdout  # restore-verify proved the copy
        assert (work / "rebuild-from-copy").is_dir()
        assert SPACES_SECRET not in proc.stdout + proc.stderr and pg.password not in proc.stdout + proc.stderr
    finally:
        with pg.connect() as conn:
            if conn.execute("SELECT 1 FROM pg_database WHERE datname = 'odoo_from_copy'").fetchone():
                pg.drop_database("odoo_from_copy")


def test_the_weekly_proof_alternates_between_the_primary_and_the_copy(app: dict[str, str], age_keys: tuple[str, str],
                                                                     pg: PgServer) -> None:
    from support.offsite import verify_copy_env

    backup(app)
    assert copy(app)["ok"]
    env = {**app, **verify_copy_env(app), "DRKIT_OFFSITE_BUCKET": app["DRKIT_COPY_BUCKET"],
           "DRKIT_AGE_IDENTITY": age_keys[0], "DRKIT_STAGING_URL": pg.url("postgres")}
    repos = []
    for _ in range(3):
        result = handle("restore-verify", restore_verify.run, {}, None, env)  # the scheduler's invoke: no repo
        assert result["ok"], result
        repos.append(result["repo"])
    assert repos == ["primary", "copy", "primary"]
    from drkit.storage.state import VerifyState

    proof = records.read(store_of(app), layout.verify_state_key("app", "copy"), VerifyState, dt.datetime.now(dt.UTC))
    assert proof is not None and proof.writer == "restore-verify" and proof.value.last_success is not None


def test_the_copys_retention_deletes_only_what_is_past_its_date_and_unlocked(app: dict[str, str], s3_client: Any,
                                                                            copy_bucket: str) -> None:
    """Three backups, copied; drkit's clock three days on (past every 2-day keep date). The oldest one's lock
    has run out on the server (moto cannot move time: its lock is shortened to now, which S3 itself would
    refuse), the middle one is still locked, the newest is the newest: only the oldest goes."""
    ids = []
    for _ in range(3):
        ids.append(backup(app)["backup_id"])
        assert copy(app)["ok"]
        time.sleep(1.1)
    for key in layout.data_key("app", ids[0]), layout.manifest_key("app", ids[0]), \
            layout.manifest_key("app", ids[0]) + ".minisig":
        for v in [v for v in s3_client.list_object_versions(Bucket=copy_bucket, Prefix=key)["Versions"]
                  if v["Key"] == key]:
            s3_client.put_object_retention(Bucket=copy_bucket, Key=key, VersionId=v["VersionId"],
                                           Retention={"Mode": "COMPLIANCE",
                                                      "RetainUntilDate": dt.datetime.now(dt.UTC)})
    time.sleep(1.1)
    later = dt.datetime.now(dt.UTC) + dt.timedelta(days=3)
    result = backup_copy.run({}, app, Deadline(300), clock=lambda: later)
    assert result["ok"], result
    held = keys(s3_client, copy_bucket)
    assert layout.manifest_key("app", ids[0]) not in held and layout.data_key("app", ids[0]) not in held
    assert all(layout.data_key("app", i) in held and layout.manifest_key("app", i) in held for i in ids[1:])
    assert "let 3 go by the copy's retention" in result["decision"], result["decision"]
    # and the primary's deletions never decide anything: its retention (one backup per hour) deleted the
    # middle one there long ago, and the copy keeps it until its own date
    primary = keys(s3_client, app["DRKIT_SPACES_BUCKET"])
    assert layout.data_key("app", ids[1]) not in primary and layout.data_key("app", ids[1]) in held


@pytest.mark.parametrize("kind", ["versioning", "none"])
def test_a_copy_bucket_without_object_lock_is_said_to_be_so(kind: str, make_env: Any, pg: PgServer, dbname: str,
                                                            s3_client: Any, s3_server: S3Server) -> None:
    fill_rich(pg, dbname)
    name = f"copy-{uuid.uuid4().hex[:12]}"
    s3_client.create_bucket(Bucket=name)
    if kind == "versioning":
        s3_client.put_bucket_versioning(Bucket=name, VersioningConfiguration={"Status": "Enabled"})
    env = make_env({"app": pg.url(dbname)}, **copy_env(s3_server, name))
    backup(env)
    result = copy(env)
    assert result["ok"] and result["immutability"] == kind, result
    assert ("versioning on" if kind == "versioning" else "no Object Lock and no versioning") in \
        result["immutability_detail"]
    status = records.read(store_of(env), layout.COPY_STATUS_KEY, CopyStatus, dt.datetime.now(dt.UTC))
    assert status is not None and status.value.immutability == kind


def test_the_report_scores_3_2_1_1_0_per_database(app: dict[str, str], age_keys: tuple[str, str], pg: PgServer) -> None:
    from drkit.functions import report
    from support.offsite import verify_copy_env

    backup(app)
    before = report.run({}, app, Deadline(120))
    assert any("off-site copy: none on record" in f for f in before["findings"]), before["findings"]
    assert copy(app)["ok"]
    env = {**app, **verify_copy_env(app), "DRKIT_AGE_IDENTITY": age_keys[0], "DRKIT_STAGING_URL": pg.url("postgres")}
    for repo in ("primary", "copy"):
        assert handle("restore-verify", restore_verify.run, {"repo": repo}, None, env)["ok"]
    after = report.run({}, app, Deadline(120))
    # the stand-in's two buckets share one endpoint: the one thing left to say about this copy
    assert [f for f in after["findings"] if "off-site" in f or "copy" in f] == [
        f"off-site copy: at the same endpoint as the primary ({app['DRKIT_COPY_ENDPOINT'][7:]}): one region or "
        "provider outage takes both; put the copy in another region or with another provider"], after["findings"]
    page = store_of(app).get_bytes("reports/latest.html").decode()
    assert "Off-site copy (3-2-1-1-0)" in page and 'id="copy-lag-app"' in page
    assert "3 (live, primary, off-site)" in page and "until " in page and "copy: 20" in page


def test_an_object_deleted_from_the_copy_is_copied_again_and_said(app: dict[str, str], s3_client: Any,
                                                                 copy_bucket: str) -> None:
    b = backup(app)
    assert copy(app)["ok"]
    data = layout.data_key("app", b["backup_id"])
    s3_client.delete_object(Bucket=copy_bucket, Key=data)  # a delete marker over the locked version
    assert data not in keys(s3_client, copy_bucket)
    again = copy(app)
    assert not again["ok"] and any("missing from the copy" in f for f in again["failures"]), again
    assert data in keys(s3_client, copy_bucket) and again["copied"] >= 1
    assert copy(app)["ok"]  # and the run after is clean again


def test_copy_run_and_status_from_a_laptop(app: dict[str, str], s3_client: Any, copy_bucket: str, tmp_path: Path,
                                           capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COLUMNS", "200")
    b = backup(app)
    env_file = tmp_path / ".env"
    env_file.write_text("".join(f"{k}={v}\n" for k, v in app.items()))
    assert main.main(["--env-file", str(env_file), "copy", "run", "--dry-run"]) == 0
    assert "would copy 4 object(s)" in " ".join(capsys.readouterr().out.split())
    assert keys(s3_client, copy_bucket) == []  # a dry run writes nothing
    assert main.main(["--env-file", str(env_file), "copy", "run"]) == 0
    out = " ".join(capsys.readouterr().out.split())
    assert "copied 4 object(s)" in out and "Object Lock enforced" in out and b["backup_id"] in out, out
    assert main.main(["--env-file", str(env_file), "copy", "status"]) == 0
    out = " ".join(capsys.readouterr().out.split())
    assert "object-lock" in out and "current" in out, out
    assert app["DRKIT_COPY_SECRET"] not in out


def test_a_run_out_of_time_says_what_is_left_and_the_next_one_finishes(app: dict[str, str], s3_client: Any,
                                                                      copy_bucket: str) -> None:
    from drkit.offsite.run import RESERVE_S

    b = backup(app)
    short = backup_copy.run({}, app, Deadline(RESERVE_S - 1))  # less time left than a copy may start with
    assert not short["ok"] and short["left_for_next_run"] > 0 and "left for the next run" in short["decision"]
    status = records.read(store_of(app), layout.COPY_STATUS_KEY, CopyStatus, dt.datetime.now(dt.UTC))
    assert status is not None and not status.value.ok  # recorded: health-probe's `copy` check alerts on it
    done = copy(app)
    assert done["ok"] and done["left_for_next_run"] == 0, done
    assert layout.manifest_key("app", b["backup_id"]) in keys(s3_client, copy_bucket)


def test_a_pass_on_the_copy_counts_for_the_weekly_proof(app: dict[str, str]) -> None:
    """The proof alternates: a primary pass ten days old and a copy pass of today keep verify-age healthy."""
    from drkit.storage import state
    from drkit.storage.state import RunInfo, VerifyState

    b = backup(app)
    now = dt.datetime.now(dt.UTC)
    verifier = store_of(app, "restore-verify")
    old = now - dt.timedelta(days=10)
    state.record_run(verifier, layout.verify_state_key("app"), VerifyState, "app",
                     RunInfo("passed", old, id=b["backup_id"], duration_s=3.0), success=True, now=old)

    def verify_age() -> dict[str, Any]:
        result = health_probe.run({}, app, Deadline(50))
        return {t["name"]: t for t in result["targets"]}["verify-age:app"]

    assert not verify_age()["ok"]  # only the primary's, ten days old: over the 8-day limit
    state.record_run(verifier, layout.verify_state_key("app", "copy"), VerifyState, "app",
                     RunInfo("passed", now, id=b["backup_id"], duration_s=3.0), success=True, now=now)
    assert verify_age()["ok"]
