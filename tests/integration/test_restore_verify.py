"""restore-verify against a real PostgreSQL (staging), a real S3 server and local webhooks."""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import json
import threading
from pathlib import Path
from typing import Any

import pytest

from conftest import PGBIN, fill_rich, keys
from drkit.crypto import encryption
from drkit.functions import db_backup, restore_verify
from drkit.platform.runtime import handle
from drkit.policy import layout
from drkit.postgres import restore
from drkit_dev.pgserver import PgServer
from drkit_dev.s3server import free_port
from support.records import content
from support.shims import make_shim

CHECKS = json.dumps([
    {"name": "customers exist", "sql": "SELECT count(*) FROM customers", "expect": "> 0"},
    {"name": "recent customers", "sql": "SELECT max(created_at) FROM customers", "expect": "age <= 3650d"},
    {"name": "happy view", "sql": "SELECT count(*) FROM happy_customers", "expect": "== 1000"},
])


@pytest.fixture
def verify_env(pg: PgServer, dbname: str, make_env: Any, age_keys: tuple[str, str]) -> Any:
    fill_rich(pg, dbname)

    def make(**extra: str) -> dict[str, str]:
        base = {"DRKIT_STAGING_URL": pg.url("postgres"), "DRKIT_AGE_IDENTITY": age_keys[0],
                "DRKIT_DB_APP_COUNT_TABLES": "*", "DRKIT_DB_APP_CHECKS": CHECKS}
        return make_env({"app": pg.url(dbname)}, **(base | extra))

    return make


def backup(env: dict[str, str]) -> dict[str, Any]:
    result = handle("db-backup", db_backup.run, {}, None, env)
    assert result["ok"], result
    return dict(result["databases"][0])


def verify(env: dict[str, str], context: Any = None, **params: Any) -> dict[str, Any]:
    return handle("restore-verify", restore_verify.run, params, context, env)


def scratch_dbs(pg: PgServer) -> list[str]:
    with pg.connect() as conn:
        return [r[0] for r in conn.execute("SELECT datname FROM pg_database WHERE datname LIKE 'drkit_verify_%'")]


def test_happy_path_proves_and_times_the_restore(verify_env: Any, pg: PgServer, s3_client: Any, bucket: str) -> None:
    env = verify_env()
    b = backup(env)
    result = verify(env)
    assert result["ok"], result
    db = result["databases"][0]
    assert db["status"] == "passed" and db["backup_id"] == b["backup_id"]
    by = {c["name"]: c for c in db["checks"]}
    assert list(by)[:4] == ["checksum", "restore", "table count", "row counts"]
    assert all(c["passed"] for c in db["checks"]), db["checks"]
    # customers, events (partitioned) + 2 partitions, audit_log, "Odd Schema"."Mixed Case"
    assert by["table count"]["detail"] == "6 tables restored, manifest lists 6"
    assert by["row counts"]["value"] == str(3000 + 5000 + 3000 + 3)  # customers + events partitions + audit + odd
    assert by["happy view"]["detail"].startswith("1000 == 1000")
    assert db["restore"]["target_version"] == 18 and db["restore"]["strategy"] == "script"  # one transaction, committed by drkit
    assert db["restore"]["duration_s"] > 0 and db["restore"]["throughput_mb_s"] > 0
    # the objects a faithful restore must bring back are compared too (tests below give them something to compare)
    assert [by[k]["detail"] for k in ("policies", "row-level security", "triggers", "publication members")] == \
        ["0 identical", "0 identical", "1 identical", "0 identical"]  # fill_rich's audit trigger
    assert result["decision"].startswith(f"verified app {b['backup_id']}: 12 checks passed (6 tables, 11003 rows, ")
    stored = keys(s3_client, bucket, "db/app/")
    base = layout.backup_base("app", b["backup_id"])
    assert base + layout.VERIFIED_SUFFIX in stored and base + layout.REPORT_SUFFIX in stored
    report = content(s3_client, bucket, base + layout.REPORT_SUFFIX)
    assert report["status"] == "passed" and len(report["checks"]) == 12
    assert report["checks"][-1] == {"name": "skipped objects", "passed": True, "value": "0",
                                    "detail": "none: everything in the backup was restored"}
    state = content(s3_client, bucket, "state/verify/app.json")
    assert state["last_success"]["throughput_mb_s"] == db["restore"]["throughput_mb_s"]
    assert any("verify.passed" in k for k in keys(s3_client, bucket, "audit/"))
    assert scratch_dbs(pg) == []


def test_bit_flip_is_caught_by_the_checksum(verify_env: Any, pg: PgServer, s3_client: Any, bucket: str) -> None:
    env = verify_env()
    b = backup(env)
    assert verify(env)["ok"]  # verified once ...
    body = bytearray(s3_client.get_object(Bucket=bucket, Key=b["key"])["Body"].read())
    body[len(body) // 3] ^= 0x10
    s3_client.put_object(Bucket=bucket, Key=b["key"], Body=bytes(body))
    result = verify(env)  # ... then the stored object rots
    db = result["databases"][0]
    assert db["status"] == "failed"
    check = next(c for c in db["checks"] if c["name"] == "checksum")
    assert not check["passed"] and "SHA-256" in check["detail"] and "nothing was committed" in check["detail"]
    assert layout.backup_base("app", b["backup_id"]) + layout.VERIFIED_SUFFIX not in keys(s3_client, bucket)
    assert scratch_dbs(pg) == []


def test_truncated_object(verify_env: Any, pg: PgServer, s3_client: Any, bucket: str) -> None:
    env = verify_env()
    b = backup(env)
    body = s3_client.get_object(Bucket=bucket, Key=b["key"])["Body"].read()
    s3_client.put_object(Bucket=bucket, Key=b["key"], Body=body[: len(body) // 2])
    db = verify(env)["databases"][0]
    assert db["status"] == "failed" and "truncated" in db["error"]
    assert scratch_dbs(pg) == []


def test_wrong_identity(verify_env: Any, pg: PgServer) -> None:
    env = verify_env()
    backup(env)
    other, _ = encryption.generate_identity()
    db = verify(dict(env, DRKIT_AGE_IDENTITY=other))["databases"][0]
    by = {c["name"]: c for c in db["checks"]}
    assert db["status"] == "failed" and by["checksum"]["passed"] and not by["decrypt"]["passed"]
    assert "wrong age identity" in by["decrypt"]["detail"]
    assert other not in json.dumps(db)
    assert scratch_dbs(pg) == []


def test_missing_and_unparsable_manifest(verify_env: Any, s3_client: Any, bucket: str) -> None:
    env = verify_env()
    b = backup(env)
    manifest_key = b["key"].replace(layout.DATA_SUFFIX, layout.MANIFEST_SUFFIX)
    s3_client.put_object(Bucket=bucket, Key=manifest_key, Body=b"{not json")
    db = verify(env)["databases"][0]
    assert db["status"] == "failed" and not db["checks"][0]["passed"] and db["checks"][0]["name"] == "manifest"
    s3_client.delete_object(Bucket=bucket, Key=manifest_key)
    db = verify(env)["databases"][0]
    assert db["status"] == "failed" and "no complete backups" in db["error"]


def test_staging_server_down_is_not_held_against_the_backup(verify_env: Any, pg: PgServer, s3_client: Any,
                                                             bucket: str) -> None:
    env = verify_env()
    b = backup(env)
    assert verify(env)["ok"]  # verified once: report and marker exist
    base = layout.backup_base("app", b["backup_id"])
    before = s3_client.get_object(Bucket=bucket, Key=base + layout.REPORT_SUFFIX)["Body"].read()
    result = verify(dict(env, DRKIT_STAGING_URL=f"postgresql://postgres:x-Secret-1@127.0.0.1:{free_port()}/postgres"))
    db = result["databases"][0]
    assert not result["ok"] and db["status"] == "failed" and db["infrastructure"]
    assert "staging server" in db["error"] and "Connection refused" in db["error"]
    assert "x-Secret-1" not in json.dumps(result)
    assert base + layout.VERIFIED_SUFFIX in keys(s3_client, bucket)  # still verified
    assert s3_client.get_object(Bucket=bucket, Key=base + layout.REPORT_SUFFIX)["Body"].read() == before
    state = content(s3_client, bucket, "state/verify/app.json")
    assert state["consecutive_failures"] == 1 and state["last_success"]["id"] == b["backup_id"]


def test_failing_operator_check_fails_the_verification(verify_env: Any, pg: PgServer, s3_client: Any,
                                                       bucket: str) -> None:
    checks = json.dumps([{"name": "too many", "sql": "SELECT count(*) FROM customers", "expect": "< 10"},
                         {"name": "broken sql", "sql": "SELECT nope FROM nowhere", "expect": "> 0"},
                         {"name": "writes refused", "sql": "DELETE FROM customers RETURNING 1", "expect": "> 0"}])
    env = verify_env(DRKIT_DB_APP_CHECKS=checks)
    backup(env)
    db = verify(env)["databases"][0]
    by = {c["name"]: c for c in db["checks"]}
    assert db["status"] == "failed"
    assert by["row counts"]["passed"] and not by["too many"]["passed"] and "3000 < 10: no" in by["too many"]["detail"]
    assert "query failed" in by["broken sql"]["detail"]
    assert "read-only transaction" in by["writes refused"]["detail"]
    assert "too many" in db["decision"]
    assert scratch_dbs(pg) == []


def test_deadline_mid_restore_drops_the_scratch_database(verify_env: Any, pg: PgServer, tmp_path: Path,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    env = verify_env()
    backup(env)
    make_shim(tmp_path / "bin", PGBIN, "#!{python}\nimport os, sys, time\ntime.sleep({delay})\n"
              "os.execv({real!r}, [{real!r}] + sys.argv[1:])\n", delay=30)
    shim = tmp_path / "bin" / "pg_restore"
    shim.unlink()  # the shim must be pg_restore here: swap the names
    (tmp_path / "bin" / "pg_dump").rename(shim)
    shim.write_text(shim.read_text().replace("pg_dump", "pg_restore").replace(
        "time.sleep", "time.sleep(0) if '--version' in sys.argv else time.sleep"))
    (tmp_path / "bin" / "psql").symlink_to(PGBIN / "psql")
    monkeypatch.setenv("DRKIT_PG_BIN", str(tmp_path / "bin"))
    monkeypatch.setattr(restore, "ABORT_MARGIN_S", 1.0)
    monkeypatch.setattr(restore_verify, "MARGIN_S", 1.0)

    class Context:
        def get_remaining_time_in_millis(self) -> int:
            return 9_000

    t0 = dt.datetime.now()
    db = verify(env, Context())["databases"][0]
    assert (dt.datetime.now() - t0).total_seconds() < 20
    assert db["status"] == "timed_out" and "deadline" in db["error"]
    assert scratch_dbs(pg) == []


def test_not_enough_time_is_skipped_with_advice(verify_env: Any) -> None:
    env = verify_env()
    backup(env)

    class Context:
        def get_remaining_time_in_millis(self) -> int:
            return 30_000

    db = verify(env, Context())["databases"][0]
    assert db["status"] == "skipped" and "scripts/drkit restore --db app" in db["error"]


def test_two_concurrent_runs_do_not_collide(verify_env: Any, pg: PgServer) -> None:
    env = verify_env()
    backup(env)
    results: list[dict[str, Any]] = []
    threads = [threading.Thread(target=lambda: results.append(verify(env))) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert [r["ok"] for r in results] == [True, True], results
    names = {r["databases"][0]["scratch_database"] for r in results}
    assert len(names) == 2
    assert scratch_dbs(pg) == []


def test_leftovers_of_crashed_runs_are_dropped_but_not_live_ones(verify_env: Any, pg: PgServer) -> None:
    env = verify_env()
    backup(env)
    old = "drkit_verify_20200101000000_abcd_app"
    live = restore_verify.scratch_name("app", dt.datetime.now(dt.UTC))
    pg.create_database(old)
    pg.create_database(live)
    try:
        result = verify(env)
        assert result["leftovers_dropped"] == [old]
        assert scratch_dbs(pg) == [live]
    finally:
        pg.drop_database(live)
        pg.drop_database(old)


def test_random_pick_within_a_window_and_dry_run(verify_env: Any, s3_client: Any, bucket: str) -> None:
    env = verify_env(DRKIT_RETENTION="keep_last=10")  # three backups in one hour: keep them all
    ids = {backup(env)["backup_id"] for _ in range(3)}
    picked = {verify(env, backup="random", dry_run="true")["databases"][0]["backup_id"] for _ in range(8)}
    assert picked <= ids and len(picked) >= 2
    dry = verify(env, dry_run="true")
    assert dry["status"] == "dry_run" and "would restore" in dry["decision"]
    assert not [k for k in keys(s3_client, bucket) if k.endswith((".verify.json", ".verified"))]
    bad = verify(env, backup="random", window_days="0")
    assert bad["status"] == "invalid_config"


def test_failure_notifies_slack_and_a_signed_webhook(verify_env: Any, webhook: Any) -> None:
    url, received = webhook
    secret = "notify-Secret-0123456789"
    env = verify_env(DRKIT_DB_APP_CHECKS=json.dumps([{"name": "none", "sql": "SELECT 0", "expect": "> 0"}]),
                     DRKIT_NOTIFY_SLACK_URL=f"{url}/slack", DRKIT_NOTIFY_WEBHOOK_URL=f"{url}/hook",
                     DRKIT_NOTIFY_SECRET=secret)
    backup(env)
    result = verify(env)
    assert not result["ok"]
    assert [n["ok"] for n in result["notifications"]] == [True, True]
    by_path = {path: (headers, body) for path, headers, body in received}
    slack = json.loads(by_path["/slack"][1])
    assert "restore-verify" in slack["text"] and "none" in slack["text"]
    headers, body = by_path["/hook"]
    expected = hmac.new(secret.encode(), f"{headers['X-Drkit-Timestamp']}.".encode() + body, hashlib.sha256).hexdigest()
    assert headers["X-Drkit-Signature"] == f"sha256={expected}"
    assert json.loads(body)["event"] == "restore_verify.failed"
    assert secret not in json.dumps(result) and "/slack" not in json.dumps(result)


def test_verification_into_a_postgresql_15_staging_server(verify_env: Any, ssl_pg: PgServer) -> None:
    env = verify_env(DRKIT_STAGING_URL=ssl_pg.url("postgres", sslmode="require"))
    backup(env)
    db = verify(env)["databases"][0]
    assert db["status"] == "passed", db
    assert db["restore"]["target_version"] == 15 and db["restore"]["strategy"] == "script"


def test_invalid_verify_config_changes_nothing(verify_env: Any, s3_client: Any, bucket: str) -> None:
    env = verify_env(DRKIT_STAGING_URL="", DRKIT_AGE_IDENTITY="age1notanidentity", DRKIT_DB_APP_CHECKS="[{]",
                     DRKIT_NOTIFY_SLACK_URL="http://example.com/x")
    result = verify(env)
    assert result["status"] == "invalid_config"
    text = " ".join(result["problems"])
    for part in ("DRKIT_STAGING_URL is not set", "DRKIT_AGE_IDENTITY is not set", "DRKIT_DB_APP_CHECKS",
                 "DRKIT_NOTIFY_SLACK_URL must be an https:// URL"):
        assert part in text
    assert keys(s3_client, bucket) == []


SECURITY_SQL = """
CREATE ROLE drkit_app_user NOLOGIN;
CREATE TABLE orders (id int PRIMARY KEY, owner text NOT NULL, total numeric NOT NULL);
INSERT INTO orders SELECT g, 'user' || (g % 7), g * 1.5 FROM generate_series(1, 500) g;
ALTER TABLE orders ENABLE ROW LEVEL SECURITY;
CREATE POLICY own_orders ON orders FOR SELECT TO drkit_app_user USING (owner = current_user);
CREATE POLICY no_deletes ON orders AS RESTRICTIVE FOR DELETE USING (false);
CREATE FUNCTION orders_touch() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN RETURN NEW; END $$;
CREATE TRIGGER orders_touch BEFORE UPDATE ON orders FOR EACH ROW EXECUTE FUNCTION orders_touch();
CREATE PUBLICATION orders_feed FOR TABLE orders;
"""


def test_policies_triggers_and_publications_are_recorded_and_proven(verify_env: Any, pg: PgServer, dbname: str,
                                                                     s3_client: Any, bucket: str) -> None:
    """A restore that loses row-level security policies is a failed restore, even with every row there."""
    from drkit.storage import signed

    try:
        pg.execute(SECURITY_SQL, dbname)
        env = verify_env()
        b = backup(env)
        key = layout.manifest_key("app", b["backup_id"])
        manifest = json.loads(s3_client.get_object(Bucket=bucket, Key=key)["Body"].read())
        objects = manifest["objects"]
        assert objects["supabase"] is False and "not_in_dump" not in objects
        assert {p["name"] for p in objects["policies"]} == {"own_orders", "no_deletes"}
        assert objects["triggers"] == ["public.customers.customers_audit", "public.orders.orders_touch"]
        assert objects["rls_tables"] == ["public.orders"]
        assert objects["publication_members"] == ["orders_feed: public.orders"]
        assert {"name": "drkit_app_user", "login": False, "superuser": False, "bypassrls": False, "member_of": [],
                "inherit": True, "createdb": False, "createrole": False, "replication": False, "connection_limit": -1,
                "platform": False} in objects["roles"]
        result = verify(env)
        by = {c["name"]: c for c in result["databases"][0]["checks"]}
        assert result["ok"] and by["policies"]["detail"] == "2 identical" and by["triggers"]["detail"] == "2 identical"
        assert by["publication members"]["passed"] and by["row-level security"]["detail"] == "1 identical"
        # the same backup, its manifest saying one more policy than any restore brings back: the proof fails
        objects["policies"].append({"table": "public.orders", "name": "lost_in_restore", "command": "ALL",
                                    "roles": "{public}"})
        objects["counts"]["policies"] = 3
        signed.put_json(s3_client_store(env), key, manifest)
        failed = verify(env)
        by = {c["name"]: c for c in failed["databases"][0]["checks"]}
        assert not failed["ok"] and not by["policies"]["passed"]
        assert by["policies"]["detail"] == "1 of 3 missing after the restore: public.orders: lost_in_restore"
        assert by["row counts"]["passed"]  # every row arrived; the restore still is not faithful
    finally:
        pg.execute("DROP PUBLICATION IF EXISTS orders_feed; DROP TABLE IF EXISTS orders; "
                   "DROP FUNCTION IF EXISTS orders_touch(); DROP ROLE IF EXISTS drkit_app_user", dbname)


def s3_client_store(env: dict[str, str]) -> Any:
    from drkit_dev.keys import store_of

    return store_of(env, "db-backup")
