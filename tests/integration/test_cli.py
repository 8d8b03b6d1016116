"""The operator CLI end to end (real PostgreSQL, real S3 server)."""

from __future__ import annotations

import datetime as dt
import json
import os
import re
import stat
import time
from pathlib import Path
from typing import Any

import pytest

from conftest import ROOT, keys
from drkit.cli import main
from drkit.policy import layout
from drkit_dev.pgserver import PgServer
from support.offsite import copy_bucket


@pytest.fixture
def env_file(tmp_path: Path, make_env: Any, pg: PgServer, dbname: str) -> Any:
    pg.execute("CREATE TABLE t AS SELECT g, md5(g::text) FROM generate_series(1, 2000) g", dbname)

    def write(**extra: str) -> str:
        env = make_env({"app": pg.url(dbname)}, **extra)
        path = tmp_path / "drkit.env"
        path.write_text("# test\n" + "".join(f"export {k}='{v}'\n" for k, v in env.items()))
        return str(path)

    return write


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    """Exit code, stdout, stderr. Human output is wrapped by rich: whitespace is normalised unless --json."""
    code = main.main(list(argv))
    out = capsys.readouterr()
    if "--json" in argv:
        return code, out.out, out.err
    return code, " ".join(out.out.split()), " ".join(out.err.split())


def test_keygen_writes_a_private_file_and_refuses_to_overwrite(tmp_path: Path,
                                                              capsys: pytest.CaptureFixture[str]) -> None:
    target = tmp_path / "id.txt"
    code, out, _ = run(capsys, "keygen", "--out", str(target))
    assert code == 0
    assert stat.S_IMODE(os.stat(target).st_mode) == 0o600
    assert "AGE-SECRET-KEY-1" in target.read_text()
    assert out.split()[-1].startswith("age1")  # the public key, last, for scripts
    assert "AGE-SECRET-KEY" not in out
    code, _, err = run(capsys, "keygen", "--out", str(target))
    assert code == 2 and "refusing to overwrite" in err
    # the signing key: private file, public key printed last, and usable as DRKIT_SIGNING_KEY as written
    from drkit.crypto import signing
    from drkit.platform.config import signing_key_from_env

    key_file = tmp_path / "signing.key"
    code, out, _ = run(capsys, "keygen", "--signing", "--out", str(key_file))
    assert code == 0 and stat.S_IMODE(os.stat(key_file).st_mode) == 0o600
    assert "drkit-sign-1:" not in out and out.split()[-1].startswith("RW")
    secret = signing_key_from_env({"DRKIT_SIGNING_KEY": key_file.read_text()}, [])
    assert secret is not None and signing.public_of(secret.reveal()) == out.split()[-1]
    assert f"# drkit trusted key: {out.split()[-1]}" in key_file.read_text()


def test_config_check(make_env: Any, age_keys: tuple[str, str], capsys: pytest.CaptureFixture[str], pg: PgServer,
                      dbname: str, tmp_path: Path) -> None:
    """Every function's own start-up validation, on what project.yml gives it; --connect with its credentials."""
    project = tmp_path / "project.yml"
    project.write_text((ROOT / "project.yml").read_text().replace("ODOO", "APP"))

    def check(*extra: str, connect: bool = False, **changes: str) -> tuple[int, str]:
        env = make_env({"app": pg.url(dbname)}, DRKIT_STAGING_URL=pg.url("postgres"), DRKIT_AGE_IDENTITY=age_keys[0],
                       DRKIT_CONFIG_SOURCES='[{"type": "digitalocean", "include": ["domains"]}]',
                       DRKIT_DO_TOKEN="dop_v1_" + "0" * 64, DRKIT_FUNCTIONS_KEY="dof_v1_key:secret-0123456789abcdef")
        env.update(changes)
        path = tmp_path / "drkit.env"
        path.write_text("".join(f"{k}={v}\n" for k, v in env.items() if v != ""))
        argv = ["--env-file", str(path), "config", "check", "--project", str(project), *(["--connect"] if connect else []),
                *extra]
        code, out, err = run(capsys, *argv)
        return code, out + err

    code, out = check()
    assert code == 0, out
    assert "configuration is valid for every function" in out
    assert "dr/db-backup: ok" in out and "dr/scheduler: ok" in out and "dr/restore-verify: ok" in out
    assert "dr/dns-failover: not set up" in out and "dr/snapshot-rotate: not set up" in out  # nothing runs them
    # the test .env signs every role with one key: config check says that a stolen one would forge them all
    assert "is shared by db-backup, restore-verify" in out and "drkit keygen --signing --for all" in out
    assert "dr/dns-failover uses the same Spaces key as the backup writers" in out  # least privilege
    # what the functions refuse, config check refuses: one line per problem, exit 2
    code, out = check(DRKIT_AGE_IDENTITY="AGE-SECRET-KEY-1CHANGEME", DRKIT_PROBES='[{"name": "x"',
                      DRKIT_STAGING_URL="not a url", DRKIT_WEBHOOK_BEARER="short", DRKIT_FAILOVER_PLAN='{"sites": 1}',
                      DRKIT_SCHEDULE='[{"job": "db-backup", "cron": "hourly"}]', DRKIT_SPACES_BUCKET="")
    assert code == 2, out
    for line in ("dr/restore-verify: the age identity is not a valid AGE-SECRET-KEY-1",
                 "dr/health-probe: DRKIT_PROBES is not valid JSON", "dr/restore-verify: database 'staging': URL cannot be "
                 "parsed", "dr/dns-failover: DRKIT_WEBHOOK_BEARER: every secret must be "
                 "at least 16 characters", "dr/scheduler: DRKIT_SCHEDULE item 1: cron 'hourly'",
                 "dr/db-backup: DRKIT_SPACES_BUCKET is not set", "configuration problem(s)"):
        assert line in out, (line, out)
    assert pg.password not in out
    # a test message only when asked, to each notification URL
    from drkit_dev.drill_schedule import Receiver

    receiver = Receiver()
    try:
        code, out = check(DRKIT_NOTIFY_WEBHOOK_URL=receiver.url)
        assert code == 0 and receiver.events == []
        code, out = check("--notify", DRKIT_NOTIFY_WEBHOOK_URL=receiver.url)
        assert code == 0 and "notifications: webhook: delivered" in out, out
        assert [e["event"] for e in receiver.events] == ["drkit.test"]
    finally:
        receiver.stop()
    # --connect: each function reaches its endpoints with its own credentials
    code, out = check(connect=True, DRKIT_DO_TOKEN="", DRKIT_CONFIG_SOURCES="",
                      DRKIT_SCHEDULE='[{"job": "config-backup", "enabled": false}]')
    assert code == 1 and "dr/backup-copy: not reached" in out and "-copy' does not exist" in out, out
    copy_bucket(make_env({}))  # the off-site copy's bucket, with Object Lock: now every endpoint answers
    code, out = check(connect=True, DRKIT_DO_TOKEN="", DRKIT_CONFIG_SOURCES="",
                      DRKIT_SCHEDULE='[{"job": "config-backup", "enabled": false}]')
    assert code == 0, out
    assert "PostgreSQL 18" in out and "compatible" in out and "staging" in out and "every endpoint answered" in out
    assert "the off-site copy" in out and "Object Lock enforced" in out
    code, out = check(connect=True, DRKIT_DO_TOKEN="", DRKIT_CONFIG_SOURCES="",
                      DRKIT_SCHEDULE='[{"job": "config-backup", "enabled": false}]',
                      DRKIT_DB_APP_URL=pg.url(dbname, password="nope-Wrong-1"))
    assert code == 1 and "dr/db-backup: not reached" in out and "password authentication failed" in out, out
    assert "nope-Wrong-1" not in out


def test_backup_list_show_pin_and_plan(env_file: Any, capsys: pytest.CaptureFixture[str], s3_client: Any,
                                       bucket: str) -> None:
    path = env_file(DRKIT_RETENTION="keep_last=1")
    code, out, _ = run(capsys, "--env-file", path, "backup", "--db", "app")  # no deadline: the CLI path
    assert code == 0, out
    assert "backed up app" in out

    code, out, _ = run(capsys, "--env-file", path, "backups", "list", "--json")
    listed = json.loads(out)
    assert code == 0 and len(listed) == 1 and listed[0]["complete"] and not listed[0]["pinned"]
    first = listed[0]["id"]

    code, out, _ = run(capsys, "--env-file", path, "backups", "show", "latest", "--db", "app", "--json")
    manifest = json.loads(out)
    assert code == 0 and manifest["id"] == first and manifest["database"] == "app"
    code, out, _ = run(capsys, "--env-file", path, "backups", "show", listed[0]["key"])
    assert code == 0 and "restore with standard tools" in out and "public" in out

    code, out, _ = run(capsys, "--env-file", path, "backups", "pin", first, "--db", "app", "--reason", "audit")
    assert code == 0 and "pinned" in out
    assert layout.marker_key("app", first, layout.PINNED_SUFFIX) in keys(s3_client, bucket)

    # keep_last=1 would delete the first backup; the pin keeps it. Ids carry seconds and retention keeps every
    # backup of the newest second, so the second backup must start in a later second for the plan to prune.
    while dt.datetime.now(dt.UTC).replace(microsecond=0) <= layout.id_time(first):
        time.sleep(0.05)
    code, out, _ = run(capsys, "--env-file", path, "backup", "--db", "app", "--json")
    result = json.loads(out)
    assert code == 0 and result["databases"][0]["retention"]["deleted"] == []
    code, out, _ = run(capsys, "--env-file", path, "retention", "plan", "--db", "app")
    assert code == 0 and "pinned" in out and "newest completed backup" in out

    code, out, _ = run(capsys, "--env-file", path, "backups", "unpin", first, "--db", "app")
    assert code == 0
    code, out, _ = run(capsys, "--env-file", path, "retention", "plan", "--db", "app")
    assert "delete" in out and "would delete 1" in out
    events = [k for k in keys(s3_client, bucket, "audit/") if "-cli-" in k]
    assert any("backup.pinned" in k for k in events) and any("backup.unpinned" in k for k in events)


def test_cli_errors_say_what_to_do(env_file: Any, capsys: pytest.CaptureFixture[str], pg: PgServer) -> None:
    path = env_file()
    code, _, err = run(capsys, "--env-file", path, "retention", "plan", "--db", "nope")
    assert code == 2 and "unknown database 'nope'; configured: app" in err
    code, _, err = run(capsys, "--env-file", path, "backups", "show", "latest", "--db", "app")
    assert code == 2 and "no complete backups" in err
    code, _, err = run(capsys, "--env-file", "/nonexistent/file", "backups", "list")
    assert code == 2 and "does not exist" in err
    partial = env_file(DRKIT_DATABASES="app,other", DRKIT_DB_OTHER_URL=pg.url("postgres", password="bad-Pw-123"))
    code, out, _ = run(capsys, "--env-file", partial, "backup")
    assert code == 3 and "partial" in out and "bad-Pw-123" not in out


@pytest.fixture
def restore_setup(tmp_path: Path, make_env: Any, pg: PgServer, dbname: str, age_keys: tuple[str, str]) -> Any:
    from conftest import fill_rich

    fill_rich(pg, dbname)
    env = make_env({"app": pg.url(dbname)}, DRKIT_DB_APP_COUNT_TABLES="*", DRKIT_RETENTION="keep_last=10")
    path = tmp_path / "drkit.env"
    path.write_text("".join(f"{k}={v}\n" for k, v in env.items()))
    identity = tmp_path / "id.txt"
    identity.write_text(f"# test identity\n{age_keys[0]}\n")
    return str(path), str(identity), dbname


def test_restore_into_a_new_database(restore_setup: Any, capsys: pytest.CaptureFixture[str], pg: PgServer,
                                     s3_client: Any, bucket: str) -> None:
    from conftest import table_fingerprints

    env_file, identity, source = restore_setup
    assert run(capsys, "--env-file", env_file, "backup")[0] == 0
    target = f"new_{os.urandom(4).hex()}"
    code, out, _ = run(capsys, "--env-file", env_file, "restore", "--db", "app", "--target", pg.url(target),
                       "--identity", identity, "--dry-run")
    assert code == 0 and "will be created" in out and "dry run: nothing was changed" in out
    with pg.connect() as conn:
        assert conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (target,)).fetchone() is None
    try:
        code, out, err = run(capsys, "--env-file", env_file, "restore", "--db", "app", "--target", pg.url(target),
                             "--identity", identity)
        assert code == 0, out + err
        assert "PASS row counts" in out and "PASS table count" in out
        assert table_fingerprints(pg, target) == table_fingerprints(pg, source)
        assert any("restore.completed" in k for k in keys(s3_client, bucket, "audit/"))
        assert pg.password not in out + err
    finally:
        pg.drop_database(target)


def test_restore_takes_the_password_from_the_libpq_environment_not_the_command_line(
        restore_setup: Any, capsys: pytest.CaptureFixture[str], pg: PgServer, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """`--target postgresql://user@host/db` and PGPASSWORD (or ~/.pgpass): every tool drkit runs gets it, and a
    wrong one says why instead of "stopped reading its input"."""
    from conftest import table_fingerprints

    env_file, identity, source = restore_setup
    assert run(capsys, "--env-file", env_file, "backup")[0] == 0
    no_password = pg.url("TARGET").replace(f":{pg.password}@", "@")
    assert pg.password not in no_password
    target = f"env_{os.urandom(4).hex()}"
    monkeypatch.setenv("PGPASSWORD", "not-the-password-0")
    code, out, err = run(capsys, "--env-file", env_file, "restore", "--db", "app", "--target",
                         no_password.replace("TARGET", target), "--identity", identity)
    assert code != 0 and "password authentication failed" in out + err, out + err
    monkeypatch.delenv("PGPASSWORD")
    passfile = tmp_path / "pgpass"
    passfile.write_text(f"127.0.0.1:{pg.port}:*:postgres:{pg.password}\n")
    passfile.chmod(0o600)
    monkeypatch.setenv("PGPASSFILE", str(passfile))
    try:
        code, out, err = run(capsys, "--env-file", env_file, "restore", "--db", "app", "--target",
                             no_password.replace("TARGET", target), "--identity", identity)
        assert code == 0, out + err
        assert table_fingerprints(pg, target) == table_fingerprints(pg, source)
    finally:
        pg.drop_database(target)
    monkeypatch.delenv("PGPASSFILE")
    monkeypatch.setenv("PGPASSWORD", pg.password)
    second = f"env_{os.urandom(4).hex()}"
    try:
        code, out, err = run(capsys, "--env-file", env_file, "restore", "--db", "app", "--target",
                             no_password.replace("TARGET", second), "--identity", identity)
        assert code == 0, out + err
    finally:
        pg.drop_database(second)


def test_restore_guard_for_a_database_with_tables(restore_setup: Any, capsys: pytest.CaptureFixture[str],
                                                  pg: PgServer, tmp_path: Path) -> None:
    from conftest import table_fingerprints

    env_file, identity, source = restore_setup
    assert run(capsys, "--env-file", env_file, "backup")[0] == 0
    target = f"busy_{os.urandom(4).hex()}"
    pg.create_database(target)
    pg.execute("CREATE TABLE customers (precious text); INSERT INTO customers VALUES ('keep me')", target)
    try:
        base = ["--env-file", env_file, "restore", "--db", "app", "--target", pg.url(target), "--identity", identity]
        code, _, err = run(capsys, *base)
        assert code == 2 and "already has 1 tables" in err and "--force" in err
        code, _, err = run(capsys, *base, "--force")  # pytest has no terminal: cannot prompt
        assert code == 2 and "--yes-i-know" in err
        code, _, err = run(capsys, *base, "--force", "--yes-i-know", "other")
        assert code == 2 and "does not name the target" in err
        with pg.connect(target) as conn:
            assert conn.execute("SELECT precious FROM customers").fetchall() == [("keep me",)]
        download = tmp_path / "app.dump"
        code, out, err = run(capsys, *base, "--force", "--yes-i-know", target, "--download-to", str(download),
                             "--jobs", "2")
        assert code == 0, out + err
        kept = re.search(rf"rename {target} -> ({target}_before_\d+) \(kept\)", " ".join(out.split()))
        assert kept, out
        assert "--jobs 2" in " ".join(out.split())  # the job count shown is the one used (PostgreSQL 18)
        assert download.exists() and download.read_bytes()[:5] == b"PGDMP" and download.stat().st_mode & 0o777 == 0o600
        assert table_fingerprints(pg, target) == table_fingerprints(pg, source)
        with pg.connect(kept.group(1)) as conn:  # the replaced database is kept, exactly as it was
            assert conn.execute("SELECT precious FROM customers").fetchall() == [("keep me",)]
        code, out, err = run(capsys, "--env-file", env_file, "swap-back", "--target", pg.url(target),
                             "--kept", kept.group(1))  # no terminal, no confirmation: refused, nothing changed
        assert code == 2 and "pass --yes-i-know NAME" in err, out + err
        assert table_fingerprints(pg, target) == table_fingerprints(pg, source)
        code, out, err = run(capsys, "--env-file", env_file, "swap-back", "--target", pg.url(target),
                             "--kept", kept.group(1), "--yes-i-know", target)
        assert code == 0, out + err
        with pg.connect(target) as conn:
            assert conn.execute("SELECT precious FROM customers").fetchall() == [("keep me",)]
        restored = re.search(rf"({target}_restored_\d+)", " ".join(out.split()))
        assert restored and table_fingerprints(pg, restored.group(1)) == table_fingerprints(pg, source)
    finally:
        for name in [r[0] for r in pg.connect().execute("SELECT datname FROM pg_database WHERE datname LIKE %s",
                                                        (f"{target}%",)).fetchall()]:
            pg.drop_database(name)


def test_restore_before_a_time_and_into_postgresql_15(restore_setup: Any, capsys: pytest.CaptureFixture[str],
                                                      pg: PgServer, ssl_pg: PgServer, tmp_path: Path) -> None:
    import datetime as dt
    import time

    env_file, identity, source = restore_setup
    assert run(capsys, "--env-file", env_file, "backup")[0] == 0
    first = json.loads(run(capsys, "--env-file", env_file, "backups", "list", "--json")[1])[0]["id"]
    time.sleep(1.1)
    pg.execute("INSERT INTO customers (name) VALUES ('after the first backup')", source)
    assert run(capsys, "--env-file", env_file, "backup")[0] == 0
    cutoff = (layout.id_time(first) + dt.timedelta(milliseconds=500)).strftime("%Y-%m-%dT%H:%M:%S")
    target = f"old_{os.urandom(4).hex()}"
    try:
        code, out, err = run(capsys, "--env-file", env_file, "restore", "--db", "app", "--before", cutoff,
                             "--target", ssl_pg.url(target, sslmode="require"), "--identity", identity,
                             "--no-privileges", "--download-to", str(tmp_path / "a.dump"))
        assert code == 0, out + err
        assert first in out and "PostgreSQL 15" in out and "in one transaction (one job)" in " ".join(out.split())
        with ssl_pg.connect(target) as conn:
            assert conn.execute("SELECT count(*) FROM customers").fetchone() == (3000,)  # not the later row
    finally:
        ssl_pg.drop_database(target)


def test_restore_over_the_postgres_database(restore_setup: Any, capsys: pytest.CaptureFixture[str],
                                           pg: PgServer) -> None:
    """A target named `postgres` is replaced through template1 (the old one kept)."""
    from conftest import table_fingerprints

    env_file, identity, source = restore_setup
    assert run(capsys, "--env-file", env_file, "backup")[0] == 0
    with PgServer() as fresh:
        base = ["--env-file", env_file, "restore", "--db", "app", "--target", fresh.url("postgres"),
                "--identity", identity]
        assert run(capsys, *base)[0] == 0  # empty target: no guard
        fresh.execute("DELETE FROM audit_log WHERE id > 10", "postgres")
        code, out, err = run(capsys, *base, "--force", "--yes-i-know", "postgres")
        assert code == 0, out + err
        assert "postgres -> postgres_before_" in " ".join(out.split()) and "(kept)" in out
        assert table_fingerprints(fresh, "postgres") == table_fingerprints(pg, source)


def test_init_writes_a_private_env_and_keys_outside_the_checkout(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    from drkit.cli import envfile
    from drkit.crypto import signing

    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    env_path = tmp_path / "work" / ".env"
    env_path.parent.mkdir()
    code, out, err = run(capsys, "--env-file", str(env_path), "init")
    assert code == 0, out + err
    keys = tmp_path / "home" / ".config" / "drkit"
    assert stat.S_IMODE(os.stat(keys).st_mode) == 0o700
    for path in (env_path, keys / "drkit-identity.txt", keys / "drkit-signing.keys"):
        assert stat.S_IMODE(os.stat(path).st_mode) == 0o600, path
    values = envfile.read(env_path)
    assert values["DRKIT_AGE_RECIPIENTS"].startswith("age1") and values["DRKIT_AGE_IDENTITY"].startswith("AGE-SECRET")
    from drkit.cli.check import signing_warnings
    from drkit.platform.identity import ROLES

    trusted = dict(e.split("=", 1) for e in values["DRKIT_TRUSTED_KEYS"].split())
    assert set(trusted) == set(ROLES)  # one key per function and one for the operator, each trusted for its role
    publics = {signing.public_of(values[f"DRKIT_SIGNING_KEY_{r.upper().replace('-', '_')}"]) for r in ROLES}
    assert publics == set(trusted.values()) and len(publics) == len(ROLES)
    assert "DRKIT_SIGNING_KEY" not in values  # no shared key
    assert signing_warnings(values) == []
    assert values["DRKIT_AGE_IDENTITY"] in (keys / "drkit-identity.txt").read_text()
    assert envfile.differences(env_path) == []  # the deployer reads it as drkit does
    assert "AGE-SECRET-KEY" not in out and "drkit-sign-1:" not in out
    code, _, err = run(capsys, "--env-file", str(env_path), "init")
    assert code == 2 and "refusing to overwrite" in err
    code, _, err = run(capsys, "--env-file", str(tmp_path / "other.env"), "init", "--keys-dir", str(ROOT / "keys"))
    assert code == 2 and "inside the checkout" in err and not (ROOT / "keys").exists()


def test_messages_fit_the_laptop_and_logs_need_verbose(restore_setup: Any, capsys: pytest.CaptureFixture[str],
                                                       pg: PgServer, tmp_path: Path, age_keys: tuple[str, str]) -> None:
    from drkit.crypto import encryption

    env_file, _, _ = restore_setup
    with open(env_file, "a") as f:
        f.write("DRKIT_LOG_LEVEL=info\n")  # the deployed functions' setting: not the terminal's
    code, out, err = run(capsys, "--env-file", env_file, "backup")
    assert code == 0 and '"level"' not in out + err  # no JSON log lines without -v
    code, out, err = run(capsys, "--env-file", env_file, "-v", "backup")
    assert code == 0 and '"level": "info"' in err
    stranger = tmp_path / "other-identity.txt"
    stranger.write_text(encryption.generate_identity()[0] + "\n")
    target = f"wrong_{os.urandom(4).hex()}"
    code, out, err = run(capsys, "--env-file", env_file, "restore", "--db", "app", "--target", pg.url(target),
                         "--identity", str(stranger))
    # checked before anything starts (the backup's header names its recipients): refused, nothing changed
    assert code == 2 and f"wrong age identity (--identity {stranger})" in err and "DRKIT_AGE_IDENTITY" not in err
    assert "Nothing was changed" in err
    with pg.connect() as conn:
        assert conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (target,)).fetchone() is None
