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

from conftest import ROOT, SPACES_SECRET, fill_rich, table_fingerprints
from drkit.functions import db_backup
from drkit.platform.runtime import handle
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

from drkit.postgres import binaries
result = mod.main(json.loads(sys.argv[2]), Context())
shipped = os.path.join(fn, "pgbin", "bin", "pg_dump")
print("RESULT " + json.dumps({"result": result, "pg_dump": str(binaries.find_binary("pg_dump")) if os.path.exists(shipped) else None,
                              "path": sys.path, "modules": sorted(m for m in sys.modules if "." not in m)}))
"""


FUNCTIONS = sorted(p.parent.name for p in (ROOT / "packages" / "dr").glob("*/__main__.py"))


@pytest.mark.parametrize("function", FUNCTIONS)
def test_built_function_runs_from_its_own_folder(function: str, tmp_path: Path, pg: PgServer, dbname: str,
                                                 s3_server: Any, s3_client: Any, bucket: str,
                                                 age_keys: tuple[str, str]) -> None:
    """The built zip, unpacked as the runtime unpacks it, run by a stand-in of DO's prelauncher with
    project.yml's env (tests/integration/test_artifacts.py runs DO's own loader where shared/ is)."""
    from drkit_dev import artifact
    from support.scenarios import EVENTS, base_env, check_effects, scenario

    archive = ROOT / "build" / "dist" / f"dr-{function}.zip"
    assert archive.exists(), f"{archive} is missing: ./scripts/test runs scripts/build first"
    assert archive.stat().st_size < 48 * 1024 * 1024
    fn = tmp_path / "action"
    with zipfile.ZipFile(archive) as zf:
        zf.extractall(fn)  # like the runtime's unzip: exec bits are not restored
        names = zf.namelist()
    ships_pg = (fn / "pgbin").exists()
    assert ships_pg == ("pgbin" in (ROOT / "packages" / "dr" / function / ".include").read_text().split())
    if ships_pg:
        assert not os.access(fn / "pgbin" / "bin" / "pg_dump", os.X_OK)
    # every module ships compiled (hash-based: valid whatever the unzip does to file times)
    sources = [n for n in names if n.endswith(".py") and not n.startswith(("__main__", "virtualenv/bin/"))]
    compiled = {n for n in names if n.endswith(".pyc")}
    uncompiled = [n for n in sources if f"{n.rsplit('/', 1)[0]}/__pycache__/{n.rsplit('/', 1)[1][:-3]}.cpython-311.pyc"
                  not in compiled]
    assert not uncompiled, uncompiled[:5]
    pg.execute("CREATE TABLE t AS SELECT g, md5(g::text) FROM generate_series(1, 5000) g", dbname)
    dotenv = base_env(s3_server.endpoint, bucket, SPACES_SECRET, pg.url(dbname), pg.url("postgres"), age_keys, pg.port)
    if function in ("restore-verify", "health-probe", "report", "backup-copy"):
        assert handle("db-backup", db_backup.run, {}, None, artifact.function_env("db-backup", dotenv))["ok"]
    with scenario(function, dotenv) as sc:
        env = artifact.function_env(function, sc.dotenv)
        env.update({"PATH": "/usr/bin:/bin", "LC_ALL": "C.UTF-8"})  # nothing of the dev venv
        proc = subprocess.run([sys.executable, "-I", "-S", "-B", "-c", RUNNER, str(fn), json.dumps(EVENTS[function])],
                              env=env, capture_output=True, text=True, timeout=120)
        if sc.fake is not None:
            assert sc.fake.violations == []
    line = [x for x in proc.stdout.splitlines() if x.startswith("RESULT ")]
    assert line, proc.stdout[-2000:] + proc.stderr[-2000:]
    out = json.loads(line[0][7:])
    check_effects(function, out["result"], s3_client, bucket, sc)
    assert not [p for p in out["path"] if ".venv" in p or "site-packages" in p and str(fn) not in p]
    assert {"boto3", "drkit"} <= set(out["modules"])
    if function != "dns-failover":
        assert out["result"]["activation_id"] == "test-activation"
    if ships_pg:
        assert out["pg_dump"].startswith(str(fn / "pgbin" / "bin"))
    # the activation's log lines are JSON and carry no secrets
    for raw in proc.stdout.splitlines():
        if raw.startswith("{"):
            assert json.loads(raw)["function"] == function
    assert SPACES_SECRET not in proc.stdout + proc.stderr
    assert pg.password not in proc.stdout + proc.stderr


def test_restore_into_postgresql_15_is_strict_and_complete(ssl_pg: PgServer, pg: PgServer, dbname: str,
                                                           make_env: Any, age_keys: tuple[str, str]) -> None:
    """pg_restore 18 archives into a PostgreSQL 15 target: script mode, no ignored errors."""
    from drkit.crypto import encryption
    from drkit.platform.config import Config
    from drkit.postgres import restore
    from drkit.storage import catalog
    from drkit_dev.keys import store_of

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
        store = store_of(env15)
        entry = catalog.find(store, "latest", "app")
        manifest = catalog.read_manifest(store, entry)
        result = restore.restore(store, entry, [encryption.parse_identity(age_keys[0])], cfg.databases["app"], target,
                                 manifest=manifest)
        assert result.strategy == "script" and result.target_version_num // 10000 == 15
        assert table_fingerprints(ssl_pg, target) == table_fingerprints(pg, dbname)
    finally:
        ssl_pg.drop_database(target)


NOEXEC_RUNNER = r"""
import sys
from drkit.core.secret import Secret
from drkit.platform.databases import DatabaseConfig, parse_db_url
from drkit.postgres.binaries import tool_version
from drkit.postgres.dump import start_dump
problems = []
params, password = parse_db_url("app", sys.argv[1], problems)
db = DatabaseConfig("app", Secret(sys.argv[1]), params, Secret(password))
tool = tool_version("pg_dump")
proc = start_dump(db, None)
head = proc.stdout.read(5)
rest = proc.stdout.read()
proc.check(proc.wait())
print("TOOL", tool.path, tool.version, "HEAD", head.decode(), "BYTES", len(head) + len(rest))
"""


def test_vendored_tools_run_from_a_noexec_mount(tmp_path: Path, pg: PgServer, dbname: str) -> None:
    """DO may unpack the function where nothing may be executed: the same pg_dump then runs from memory."""
    import shutil

    if os.geteuid() != 0 or not shutil.which("unshare"):
        pytest.skip("needs root and unshare(1) for a private mount namespace with a noexec tmpfs")
    preflight = subprocess.run(["unshare", "--mount", "--propagation", "private", "true"], capture_output=True, text=True)
    if preflight.returncode != 0:
        pytest.skip(f"no private mount namespace here: {preflight.stderr.strip()[-200:]}")
    pg.execute("CREATE TABLE t AS SELECT g FROM generate_series(1, 1000) g", dbname)
    mnt = tmp_path / "noexec"
    mnt.mkdir()
    script = (f"mount -t tmpfs -o noexec,size=256m tmpfs {mnt} && cp -r {ROOT}/build/pgbin {mnt}/ && "
              f"! {mnt}/pgbin/bin/pg_dump --version 2>/dev/null && "  # the mount really forbids exec
              f"DRKIT_PG_BIN={mnt}/pgbin/bin exec {sys.executable} -c '{NOEXEC_RUNNER}' '{pg.url(dbname)}'")
    proc = subprocess.run(["unshare", "--mount", "--propagation", "private", "bash", "-c", script],
                          capture_output=True, text=True, timeout=120, env={**os.environ, "PYTHONPATH": str(ROOT / "lib")})
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    line = [x for x in proc.stdout.splitlines() if x.startswith("TOOL ")][0].split()
    assert "drkit-pgbin-" in line[1] and line[2].startswith("18.") and line[4] == "PGDMP" and int(line[6]) > 1000
    assert "run from memory" in proc.stdout  # said once, in the log
