"""The vendored pg_dump over SSL, and the built function run from its own folder."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
import zipfile
from pathlib import Path
from typing import Any

import pytest

from conftest import ROOT, fill_rich, keys, table_fingerprints
from drkit import db_backup
from drkit.runtime import handle
from drkit_dev.pgserver import PgServer


def test_vendored_pg_dump_speaks_ssl_to_an_ssl_only_server(ssl_pg: PgServer, pg: PgServer, make_env: Any,
                                                           s3_client: Any, bucket: str, age_keys: tuple[str, str]) -> None:
    name = f"s_{uuid.uuid4().hex[:8]}"
    ssl_pg.create_database(name)
    fill_rich(ssl_pg, name)
    env = make_env({"supa": ssl_pg.url(name, sslmode="require")}, DRKIT_DB_SUPA_COUNT_TABLES="customers")
    result = handle("db-backup", db_backup.run, {}, None, env)
    assert result["ok"], result
    manifest = json.loads(s3_client.get_object(Bucket=bucket, Key=result["databases"][0]["key"].replace(
        ".dump.zst.age", ".manifest.json"))["Body"].read())
    assert manifest["source"]["server_version"].startswith("15.")
    assert manifest["dump"]["tool_version"].startswith("18.")
    assert [t["exact_rows"] for t in manifest["tables"] if t["name"] == "customers"] == [3000]

    # the server refuses plaintext: the failure says what to do
    plain = make_env({"supa": ssl_pg.url(name, sslmode="disable")})
    failed = handle("db-backup", db_backup.run, {}, None, plain)
    assert failed["status"] == "failed"
    assert "requires SSL" in failed["databases"][0]["error"]

    # a PostgreSQL 15 archive restores into PostgreSQL 18
    from test_db_backup import restore_into

    env_pg18 = dict(env, DRKIT_DB_SUPA_URL=pg.url("postgres"))  # restore target server: the PG 18 one
    target, _ = restore_into(env_pg18, pg, "supa", age_keys[0])
    try:
        assert table_fingerprints(pg, target) == table_fingerprints(ssl_pg, name)
    finally:
        pg.drop_database(target)
        ssl_pg.drop_database(name)


RUNNER = r"""
import importlib.util, json, os, sys
fn = sys.argv[1]
os.chdir(fn)
activate = os.path.join(fn, "virtualenv", "bin", "activate_this.py")
exec(open(activate).read(), {"__file__": activate})    # what the DO prelauncher does
sys.path.append(fn)                                     # the zip root comes last
spec = importlib.util.spec_from_file_location("main__", os.path.join(fn, "__main__.py"))
mod = importlib.util.module_from_spec(spec)
spec.loader.exec_module(mod)

class Context:
    activation_id = "test-activation"
    def get_remaining_time_in_millis(self):
        return 300000

from drkit import pg
result = mod.main(json.loads(sys.argv[2]), Context())
shipped = os.path.join(fn, "pgbin", "bin", "pg_dump")
print("RESULT " + json.dumps({"result": result, "pg_dump": str(pg.find_binary("pg_dump")) if os.path.exists(shipped) else None,
                              "path": sys.path, "modules": sorted(m for m in sys.modules if "." not in m)}))
"""


# A sample event for every function; a new function must add one here.
SAMPLE_EVENTS: dict[str, dict[str, Any]] = {
    "db-backup": {"database": "app"},
    "restore-verify": {"database": "app", "backup": "latest"},
    "health-probe": {"format": "json"},
    "snapshot-rotate": {"dry_run": "true"},
    "config-backup": {"source": "digitalocean"},
    # a web call, as DO delivers it to a `web: raw` function: an authenticated Alertmanager alert
    "dns-failover": {"http": {"method": "POST", "headers": {"authorization": "Bearer built-function-Token-0001",
                                                            "content-type": "application/json"},
                              "isBase64Encoded": False, "body": json.dumps({
                                  "version": "4", "groupKey": "g", "status": "firing", "alerts": [
                                      {"status": "firing", "labels": {"alertname": "PrimarySiteDown"},
                                       "fingerprint": "f1", "startsAt": "2026-11-26T03:00:00Z"}]})}},
}
FUNCTIONS = sorted(p.parent.name for p in (ROOT / "packages" / "dr").glob("*/__main__.py"))


def test_every_function_has_a_sample_event() -> None:
    assert set(FUNCTIONS) == set(SAMPLE_EVENTS)


@pytest.mark.parametrize("function", FUNCTIONS)
def test_built_function_runs_from_its_own_folder(function: str, tmp_path: Path, pg: PgServer, dbname: str,
                                                 make_env: Any, s3_client: Any, bucket: str,
                                                 age_keys: tuple[str, str]) -> None:
    archive = ROOT / "build" / "dist" / f"dr-{function}.zip"
    assert archive.exists(), f"{archive} is missing: ./scripts/test runs scripts/build first"
    assert archive.stat().st_size < 48 * 1024 * 1024
    fn = tmp_path / "action"
    with zipfile.ZipFile(archive) as zf:
        zf.extractall(fn)  # like the runtime's unzip: exec bits are not restored
    ships_pg = (fn / "pgbin").exists()
    assert ships_pg == ("pgbin" in (ROOT / "packages" / "dr" / function / ".include").read_text().split())
    if ships_pg:
        assert not os.access(fn / "pgbin" / "bin" / "pg_dump", os.X_OK)
    pg.execute("CREATE TABLE t AS SELECT g, md5(g::text) FROM generate_series(1, 5000) g", dbname)
    env = make_env({"app": pg.url(dbname)}, DRKIT_STAGING_URL=pg.url("postgres"), DRKIT_AGE_IDENTITY=age_keys[0],
                   DRKIT_PROBES=json.dumps([{"name": "db", "type": "tcp", "host": "127.0.0.1", "port": pg.port}]))
    if function in ("restore-verify", "health-probe"):
        assert handle("db-backup", db_backup.run, {}, None, env)["ok"]  # something to verify / to judge
    fake = None
    if function == "snapshot-rotate":
        from drkit_dev.fakedo import FakeDO

        fake = FakeDO().start()
        fake.add_droplet("erp", ["dr:snapshot"])
        env.update({"DRKIT_DO_TOKEN": fake.token, "DRKIT_DO_ENDPOINT": fake.endpoint, "DRKIT_DO_CA_FILE": fake.ca_file,
                    "DRKIT_SNAPSHOT_POLICIES": json.dumps([{"tag": "dr:snapshot", "retention": "keep_last=4"}])})
    if function == "config-backup":
        from drkit_dev.fakedo import FakeDO

        fake = FakeDO().start()
        fake.add_domain("example.net")
        fake.add_record("example.net", "A", "erp", "203.0.113.10", 60)
        env.update({"DRKIT_DO_TOKEN": fake.token, "DRKIT_DO_ENDPOINT": fake.endpoint, "DRKIT_DO_CA_FILE": fake.ca_file,
                    "DRKIT_CONFIG_SOURCES": json.dumps([{"type": "digitalocean", "include": ["domains", "firewalls"]}])})
    if function == "dns-failover":
        from drkit_dev.fakedo import FakeDO

        fake = FakeDO().start()
        fake.add_record("example.net", "A", "erp", "203.0.113.10", 60)
        env.update({"DRKIT_DO_TOKEN": fake.token, "DRKIT_DO_ENDPOINT": fake.endpoint, "DRKIT_DO_CA_FILE": fake.ca_file,
                    "DRKIT_WEBHOOK_BEARER": "built-function-Token-0001", "DRKIT_FAILOVER_PLAN": json.dumps({
                        "sites": ["primary", "dr"], "trigger": {"labels": {"alertname": "PrimarySiteDown"}},
                        "records": [{"domain": "example.net", "name": "erp", "type": "A", "ttl": 60,
                                     "values": {"primary": "203.0.113.10", "dr": "198.51.100.20"}}]})})
    env.update({"PATH": "/usr/bin:/bin", "LC_ALL": "C.UTF-8"})  # nothing of the dev venv
    proc = subprocess.run([sys.executable, "-I", "-S", "-c", RUNNER, str(fn), json.dumps(SAMPLE_EVENTS[function])],
                          env=env, capture_output=True, text=True, timeout=120)
    if fake is not None:
        fake.stop()
        assert fake.violations == []
        if function == "dns-failover":
            assert fake.records["example.net"][0]["data"] == "198.51.100.20"
    line = [x for x in proc.stdout.splitlines() if x.startswith("RESULT ")]
    assert line, proc.stdout[-2000:] + proc.stderr[-2000:]
    out = json.loads(line[0][7:])
    if function == "dns-failover":  # a web reply
        assert out["result"]["statusCode"] == 200 and out["result"]["body"]["outcome"] == "applied", out["result"]
        return
    assert out["result"]["ok"], out["result"]
    assert out["result"]["activation_id"] == "test-activation"
    if ships_pg:
        assert out["pg_dump"].startswith(str(fn / "pgbin" / "bin"))
    assert not [p for p in out["path"] if ".venv" in p or "site-packages" in p and str(fn) not in p]
    assert {"boto3", "drkit"} <= set(out["modules"])
    stored = keys(s3_client, bucket, "db/app/")
    if function == "db-backup":
        assert len(stored) == 2
    elif function == "config-backup":
        assert [k for k in keys(s3_client, bucket, "config/") if k.endswith(".tar.zst.age")]
        assert out["result"]["files"] == 3  # example.net records + zone, the domain index
    elif function == "snapshot-rotate":
        assert out["result"]["created"] == ["droplet erp: drkit-erp-" + out["result"]["created"][0].split("drkit-erp-")[1]]
    elif function == "health-probe":
        names = {t["name"]: t["ok"] for t in out["result"]["targets"]}
        assert names["db"] and names["backup-age:app"] and not names["verify-age:app"]
        assert "status/health.prom" in keys(s3_client, bucket, "status/")
    else:
        assert any(k.endswith(".verified") for k in stored) and any(k.endswith(".verify.json") for k in stored)
    # the activation's log lines are JSON and carry no secrets
    for raw in proc.stdout.splitlines():
        if raw.startswith("{"):
            assert json.loads(raw)["function"] == function
    assert "spaces-Secret-Value-123" not in proc.stdout + proc.stderr
    assert pg.password not in proc.stdout + proc.stderr


def test_restore_into_postgresql_15_is_strict_and_complete(ssl_pg: PgServer, pg: PgServer, dbname: str,
                                                           make_env: Any, age_keys: tuple[str, str]) -> None:
    """pg_restore 18 archives into a PostgreSQL 15 target: script mode, no ignored errors."""
    from drkit import catalog, crypto, restore
    from drkit.config import Config
    from drkit.store import Store

    fill_rich(pg, dbname)
    # a row whose text is exactly the filtered statement must survive
    pg.execute("INSERT INTO audit_log (note) VALUES ('SET transaction_timeout = 0;')", dbname)
    env = make_env({"app": pg.url(dbname)})
    assert handle("db-backup", db_backup.run, {}, None, env)["ok"]
    target = f"r15_{uuid.uuid4().hex[:8]}"
    ssl_pg.create_database(target)
    try:
        env15 = dict(env, DRKIT_DB_APP_URL=ssl_pg.url("postgres", sslmode="require"))
        cfg = Config.from_env(env15)
        store = Store(cfg.spaces)
        entry = catalog.find(store, "latest", "app")
        result = restore.restore(store, entry, [crypto.parse_identity(age_keys[0])], cfg.databases["app"], target)
        assert result.strategy == "script" and result.target_version_num // 10000 == 15
        assert table_fingerprints(ssl_pg, target) == table_fingerprints(pg, dbname)
    finally:
        ssl_pg.drop_database(target)
