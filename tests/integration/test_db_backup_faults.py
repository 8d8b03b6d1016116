"""Failure injection: nothing partial may remain, nothing half-written is listed."""

from __future__ import annotations

import datetime as dt
import json
import threading
from pathlib import Path
from typing import Any

import pytest

from conftest import PGBIN, keys, open_uploads
from drkit.core.deadline import Deadline
from drkit.functions import db_backup
from drkit.platform.config import Config
from drkit.platform.runtime import handle
from drkit.policy import layout
from drkit.storage import catalog
from drkit.storage.store import Store
from drkit_dev.pgserver import PgServer
from drkit_dev.s3server import S3Server
from support.faultproxy import FaultProxy, Rule
from support.records import content, genuine_backup, mark_verified, pin
from support.shims import KILL_AFTER, SLOW_START, make_shim

BIG_TABLE = ("CREATE TABLE big AS SELECT g AS id, md5(g::text) || md5((g * 7)::text) AS a, "
             "md5((g * 3)::text)::uuid AS b FROM generate_series(1, 250000) g")


@pytest.fixture
def big_db(pg: PgServer, dbname: str) -> str:
    """~25 MB of dump, ~12 MB stored: several 5 MiB parts."""
    pg.execute(BIG_TABLE, dbname)
    return dbname


@pytest.fixture
def pg_bin(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Any:
    def use(template: str, **values: object) -> None:
        make_shim(tmp_path / "bin", PGBIN, template, **values)
        monkeypatch.setenv("DRKIT_PG_BIN", str(tmp_path / "bin"))
    return use


def run(env: dict[str, str], context: Any = None, **params: Any) -> dict[str, Any]:
    return handle("db-backup", db_backup.run, params, context, env)


def assert_nothing_left(s3_client: Any, bucket: str, name: str) -> None:
    assert keys(s3_client, bucket, f"db/{name}/") == []
    assert open_uploads(s3_client, bucket) == []


def test_pg_dump_killed_mid_stream(pg: PgServer, big_db: str, make_env: Any, s3_client: Any, bucket: str,
                                   pg_bin: Any) -> None:
    pg_bin(KILL_AFTER, limit=14 * 1024 * 1024)  # after enough output for parts to be uploaded
    result = run(make_env({"app": pg.url(big_db)}))
    assert result["status"] == "failed"
    err = result["databases"][0]["error"]
    assert "pg_dump exited with status" in err
    assert_nothing_left(s3_client, bucket, "app")
    assert content(s3_client, bucket, "state/db/app.json")["consecutive_failures"] == 1


def test_s3_failing_mid_upload_aborts(pg: PgServer, big_db: str, make_env: Any, s3_client: Any, bucket: str,
                                      s3_server: S3Server) -> None:
    proxy = FaultProxy(s3_server.endpoint, [Rule("PUT", "partNumber=2", 500)]).start()
    try:
        env = make_env({"app": pg.url(big_db)}, DRKIT_SPACES_ENDPOINT=proxy.endpoint, DRKIT_S3_MAX_ATTEMPTS="2")
        result = run(env)
    finally:
        proxy.stop()
    assert result["status"] == "failed"
    assert "uploading part 2" in result["databases"][0]["error"]
    assert any("uploadId" in s and s.startswith("DELETE") for s in proxy.seen), "multipart upload was not aborted"
    assert_nothing_left(s3_client, bucket, "app")


def test_transient_s3_errors_are_retried(pg: PgServer, big_db: str, make_env: Any, s3_client: Any, bucket: str,
                                         s3_server: S3Server) -> None:
    proxy = FaultProxy(s3_server.endpoint, [Rule("PUT", "partNumber=1", 503, times=1),
                                            Rule("PUT", "partNumber=3", 500, times=1)]).start()
    try:
        result = run(make_env({"app": pg.url(big_db)}, DRKIT_SPACES_ENDPOINT=proxy.endpoint))
    finally:
        proxy.stop()
    assert result["ok"], result
    assert len(keys(s3_client, bucket, "db/app/")) == 3  # data, manifest, its signature
    assert open_uploads(s3_client, bucket) == []


def test_manifest_write_failure_removes_the_data(pg: PgServer, dbname: str, make_env: Any, s3_client: Any,
                                                 bucket: str, s3_server: S3Server) -> None:
    pg.execute("CREATE TABLE t AS SELECT g FROM generate_series(1, 1000) g", dbname)
    proxy = FaultProxy(s3_server.endpoint, [Rule("PUT", ".manifest.json", 500)]).start()
    try:
        result = run(make_env({"app": pg.url(dbname)}, DRKIT_SPACES_ENDPOINT=proxy.endpoint,
                              DRKIT_S3_MAX_ATTEMPTS="1"))
    finally:
        proxy.stop()
    assert result["status"] == "failed"
    assert_nothing_left(s3_client, bucket, "app")  # the data, and the signature written just before, are gone


def test_a_failed_state_write_is_bookkeeping_not_a_failed_backup(pg: PgServer, dbname: str, make_env: Any,
                                                                s3_client: Any, bucket: str, s3_server: S3Server) -> None:
    pg.execute("CREATE TABLE t AS SELECT g FROM generate_series(1, 1000) g", dbname)
    env = make_env({"app": pg.url(dbname)})
    proxy = FaultProxy(s3_server.endpoint, [Rule("PUT", "state/db/app.json", 500)]).start()
    try:
        result = run(dict(env, DRKIT_SPACES_ENDPOINT=proxy.endpoint, DRKIT_S3_MAX_ATTEMPTS="1"))
    finally:
        proxy.stop()
    db = result["databases"][0]
    assert result["ok"] and db["status"] == "ok" and "state not written" in db["bookkeeping_error"]
    assert "backed up app" in db["decision"] and "bookkeeping failed (the backup is good" in db["decision"]
    assert "retention" in db  # the catalog was written: retention ran
    assert any(k.endswith(layout.MANIFEST_SUFFIX) for k in keys(s3_client, bucket, "db/app/"))
    again = run(env)  # the next run repairs it
    assert again["ok"] and "bookkeeping_error" not in again["databases"][0]
    assert content(s3_client, bucket, "state/db/app.json")["last_success"]["id"] == again["databases"][0]["backup_id"]


def test_a_slow_bucket_stops_the_dump_earlier(pg: PgServer, big_db: str, make_env: Any, s3_client: Any,
                                             bucket: str, s3_server: S3Server, pg_bin: Any,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    """The stop margin grows with the bucket's measured latency: the abort, the state and the audit event
    that follow the stop are requests too, and each takes that long."""
    from drkit.backup import pipeline

    pg_bin(SLOW_START, delay=60)
    monkeypatch.setattr(db_backup, "MIN_START_S", 1.0)
    proxy = FaultProxy(s3_server.endpoint, delay=1.0).start()

    class Context:
        def get_remaining_time_in_millis(self) -> int:
            return 45_000

    try:
        t0 = dt.datetime.now()
        result = run(make_env({"app": pg.url(big_db)}, DRKIT_SPACES_ENDPOINT=proxy.endpoint), Context())
        took = (dt.datetime.now() - t0).total_seconds()
    finally:
        proxy.stop()
    db = result["databases"][0]
    assert db["status"] == "timed_out" and "before the function deadline" in db["error"], db
    margin = float(db["error"].split("pg_dump stopped ")[1].split("s ")[0])
    assert margin > pipeline.ABORT_MARGIN_S + 5, db["error"]
    assert took < 45 - pipeline.ABORT_MARGIN_S, took  # done well before the deadline, cleanup included
    assert_nothing_left(s3_client, bucket, "app")


def test_deadline_stops_the_dump_cleanly(pg: PgServer, big_db: str, make_env: Any, s3_client: Any, bucket: str,
                                         pg_bin: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    pg_bin(SLOW_START, delay=30)
    monkeypatch.setattr(db_backup, "MIN_START_S", 1.0)

    class Context:
        def get_remaining_time_in_millis(self) -> int:
            return 27_000  # the watchdog fires 25 s before the deadline: after ~2 s

    t0 = dt.datetime.now()
    result = run(make_env({"app": pg.url(big_db)}), Context())
    assert (dt.datetime.now() - t0).total_seconds() < 15
    assert result["status"] == "failed" and result["databases"][0]["status"] == "timed_out"
    assert "before the function deadline" in result["databases"][0]["error"]
    assert_nothing_left(s3_client, bucket, "app")


def test_too_little_time_left_does_not_start(pg: PgServer, dbname: str, make_env: Any, s3_client: Any,
                                             bucket: str) -> None:
    class Context:
        def get_remaining_time_in_millis(self) -> int:
            return 10_000

    result = run(make_env({"app": pg.url(dbname)}), Context())
    assert result["databases"][0]["status"] == "timed_out"
    assert "not starting" in result["databases"][0]["error"]
    assert keys(s3_client, bucket, "db/") == []


def test_overlapping_runs_never_corrupt_or_prune_each_other(pg: PgServer, big_db: str, make_env: Any,
                                                            s3_client: Any, bucket: str) -> None:
    env = make_env({"app": pg.url(big_db)}, DRKIT_RETENTION="keep_last=1")
    results: list[dict[str, Any]] = []
    threads = [threading.Thread(target=lambda: results.append(db_backup.run({}, env, Deadline(600))))
               for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert all(r["ok"] for r in results), results
    store = Store(Config.from_env(env).spaces)
    entries = catalog.list_backups(store, "app")
    assert entries and all(e.complete for e in entries), [e.summary() for e in entries]
    newest = max(r["databases"][0]["backup_id"] for r in results)
    assert newest in {e.id for e in entries}  # the newest backup always survives
    assert open_uploads(s3_client, bucket) == []


def test_retention_and_garbage_in_the_store(pg: PgServer, dbname: str, make_env: Any, s3_client: Any,
                                            bucket: str) -> None:
    pg.execute("CREATE TABLE t AS SELECT g FROM generate_series(1, 10) g", dbname)
    env = make_env({"app": pg.url(dbname)}, DRKIT_RETENTION="keep_last=2")
    now = dt.datetime.now(dt.UTC)

    def seed(hours_ago: int, *, manifest: bool = True, marker: str | None = None) -> str:
        bid = layout.new_id(now - dt.timedelta(hours=hours_ago))
        if manifest:
            genuine_backup(env, "app", bid)
        else:
            s3_client.put_object(Bucket=bucket, Key=layout.data_key("app", bid), Body=b"x")
        if marker == layout.PINNED_SUFFIX:
            pin(env, "app", bid)
        elif marker == layout.VERIFIED_SUFFIX:
            mark_verified(env, "app", bid)
        return bid

    old = [seed(h) for h in (50, 40, 30)]
    pinned = seed(60, marker=layout.PINNED_SUFFIX)
    verified = seed(70, marker=layout.VERIFIED_SUFFIX)
    orphan = seed(20, manifest=False)
    s3_client.create_multipart_upload(Bucket=bucket, Key=layout.data_key("app", layout.new_id(now)))

    # dry run first: the plan, and nothing deleted
    dry = run(env, dry_run="true")
    # (before the new backup exists keep_last=2 keeps 30h and 40h; pinned and verified are safe)
    assert dry["ok"] and dry["decision"].endswith("kept 4, would delete 1"), dry["decision"]
    assert "leftovers" not in dry["decision"]
    before = keys(s3_client, bucket, "db/app/")

    # the orphan and the open upload are younger than the grace period: kept today ...
    result = run(env)
    assert result["ok"], result
    ret = result["databases"][0]["retention"]
    assert sorted(ret["deleted"]) == sorted(old[:2])  # 50h and 40h old; 30h is the second newest
    remaining = {e.id for e in catalog.list_backups(Store(Config.from_env(env).spaces), "app")}
    assert {pinned, verified, old[2], result["databases"][0]["backup_id"], orphan} <= remaining
    assert not set(old[:2]) & remaining
    assert len(before) > len(keys(s3_client, bucket, "db/app/")) - 2

    # ... and removed by a run 7 hours later
    later = db_backup.run({}, env, Deadline(600), clock=lambda: now + dt.timedelta(hours=7))
    assert later["ok"], later
    assert any(orphan in k for k in later["databases"][0]["retention"]["leftovers"])
    assert orphan not in {e.id for e in catalog.list_backups(Store(Config.from_env(env).spaces), "app")}
    assert open_uploads(s3_client, bucket) == []
    deleted_events = [k for k in keys(s3_client, bucket, "audit/") if "backup.deleted" in k]
    assert len(deleted_events) >= 2


def test_rejected_spaces_credentials_say_so(pg: PgServer, dbname: str, make_env: Any, s3_server: S3Server) -> None:
    proxy = FaultProxy(s3_server.endpoint, [Rule("HEAD", "/", 403)]).start()
    try:
        result = run(make_env({"app": pg.url(dbname)}, DRKIT_SPACES_ENDPOINT=proxy.endpoint))
    finally:
        proxy.stop()
    assert result["status"] == "failed"
    assert "rejected the credentials" in result["error"] and "DRKIT_SPACES_KEY" in result["error"]
    assert not any(s.startswith("PUT") or s.startswith("POST") for s in proxy.seen)  # nothing was written


def test_a_failed_backup_fails_the_activation_and_notifies(make_env: Any, pg: PgServer, dbname: str,
                                                          webhook: Any, s3_client: Any, bucket: str) -> None:
    """DigitalOcean lists the activation as failed (`error` in the result); the operators hear of it."""
    url, received = webhook
    good = pg.url(dbname)
    env = make_env({"app": good, "crm": good.replace(pg.password, "wrong-password-9")},
                   DRKIT_NOTIFY_WEBHOOK_URL=f"{url}/drkit", DRKIT_NOTIFY_SECRET="s" * 20)
    result = handle("db-backup", db_backup.run, {}, None, env)
    assert result["ok"] is False and result["status"] == "partial"
    assert result["error"] and "crm failed" in result["error"] and "backed up app" in result["error"]
    (path, headers, body), = received
    event = json.loads(body)
    assert path == "/drkit" and event["event"] == "db_backup.failed" and headers["X-Drkit-Signature"].startswith("sha256=")
    assert [d["database"] for d in event["databases"]] == ["crm"] and "password" in event["failed_checks"][0]
    assert pg.password not in body.decode() and "wrong-password-9" not in body.decode()

    # a run that cannot start at all (the bucket is unreachable) is notified too
    received.clear()
    broken = dict(env, DRKIT_SPACES_ENDPOINT="http://127.0.0.1:9", DRKIT_S3_MAX_ATTEMPTS="1")
    result = handle("db-backup", db_backup.run, {}, None, broken)
    assert result["ok"] is False and result["error"]
    assert len(received) == 1 and json.loads(received[0][2])["decision"].startswith("no backup was made")

    # and so is one whose configuration is refused (backups stop then too)
    received.clear()
    result = handle("db-backup", db_backup.run, {}, None, dict(env, DRKIT_AGE_RECIPIENTS="age1notakey"))
    assert result["ok"] is False and result["status"] == "invalid_config"
    assert len(received) == 1 and "DRKIT_AGE_RECIPIENTS" in json.loads(received[0][2])["decision"]
