"""docs/runbook.md, executed verbatim: the blocks marked `<!-- run -->`, in order, as one bash script.

Only the first block (the server to restore into) is replaced with the stand-ins' values. The rest runs
as written, from a working folder holding the operator's `.env` and `drkit-identity.txt`, with `drkit`,
`doctl` and `fn` on PATH: drkit is the checkout's CLI; doctl is drkit_dev.doctl_shim (functions invoked in
process with the environment project.yml gives them). A doc change that breaks a command fails here.
"""

from __future__ import annotations

import datetime as dt
import json
import re
import subprocess
from pathlib import Path
from typing import Any

from conftest import ROOT, SPACES_SECRET, fill_rich, keys, table_fingerprints
from drkit.functions import config_backup, db_backup, scheduler
from drkit.platform import envvars
from drkit.platform.runtime import handle, without_unset
from drkit_dev.fakedo import FakeDO
from drkit_dev.fakewhisk import FakeWhisk
from drkit_dev.pgserver import PgServer
from drkit_dev.probeservers import Behaviour, serve, stop
from support import operator
from support.offsite import copy_bucket
from support.scenarios import base_env

RUNBOOK = ROOT / "docs" / "runbook.md"


def blocks() -> list[str]:
    return re.findall(r"^<!-- run -->\n```bash\n(.*?)^```", RUNBOOK.read_text(), flags=re.M | re.S)


def test_the_runbook_marks_its_scenarios() -> None:
    found = blocks()
    assert found[0].startswith("set -euo pipefail") and "SERVER=" in found[0]
    text = "\n".join(found)
    for command in ("drkit schedule status", "drkit backups pin", "drkit restore --db odoo", "drkit failover failover",
                    "drkit failover failback", "fn dr/db-backup", "dr/restore-verify", "drkit dns restore",
                    "drkit config extract", "drkit config check --connect", "action:rebuild -p droplet:erp -p dry_run:true",
                    "drkit status post", "drkit status resolve latest", "drkit report --out"):
        assert command in text, command


def _function_env(function: str, dotenv: dict[str, str]) -> dict[str, str]:
    return without_unset(envvars.function_environment((ROOT / "project.yml").read_text(), function, dotenv))


def test_the_runbook_runs_verbatim(tmp_path: Path, pg: PgServer, dbname: str, s3_server: Any, bucket: str,
                                   s3_client: Any, age_keys: tuple[str, str]) -> None:
    fill_rich(pg, dbname)
    fake = FakeDO().start()
    whisk = FakeWhisk().start()
    dr_site = Behaviour()
    server, dr_port = serve(dr_site)
    restored = "odoo_restored"
    try:
        fake.add_domain("example.net")
        erp = fake.add_droplet("erp", ["dr:snapshot"])  # §6c: a droplet and its newest drkit snapshot
        fake.add_snapshot("drkit-erp-20261129T0300Z", erp["id"], "droplet",
                          dt.datetime(2026, 11, 29, 3, 0, tzinfo=dt.UTC))
        fake.add_record("example.net", "A", "erp", "203.0.113.10", 60)
        plan = {"sites": ["primary", "dr"], "health": {"dr": f"http://127.0.0.1:{dr_port}/health"},
                "trigger": {"labels": {"alertname": "PrimarySiteDown"}},
                "records": [{"domain": "example.net", "name": "erp", "type": "A", "ttl": 60,
                             "values": {"primary": "203.0.113.10", "dr": "198.51.100.20"}}]}
        dotenv = {**base_env(s3_server.endpoint, bucket, SPACES_SECRET, pg.url(dbname), pg.url("postgres"), age_keys,
                             pg.port),
                  **whisk.env(), "DRKIT_DO_TOKEN": fake.token, "DRKIT_DO_ENDPOINT": fake.endpoint,
                  "DRKIT_DO_CA_FILE": fake.ca_file, "DRKIT_FAILOVER_PLAN": json.dumps(plan),
                  "DRKIT_WEBHOOK_BEARER": "alertmanager-Token-0123456789",
                  "DRKIT_STATUS_PAGE": json.dumps({"title": "Example status", "private": ["127.0.0.1"],
                                                   "services": [{"name": "ERP", "targets": ["db"]}]}),
                  "DRKIT_CONFIG_SOURCES": json.dumps([{"type": "digitalocean", "include": ["domains"]}])}
        copy_bucket(dotenv)  # the off-site copy's bucket, with Object Lock
        work = operator.folder(tmp_path, dotenv, age_keys[0])
        # a deployment that has been running: a backup, a config backup, a scheduler tick
        assert handle("db-backup", db_backup.run, {}, None, _function_env("db-backup", dotenv))["ok"]
        assert handle("config-backup", config_backup.run, {}, None, _function_env("config-backup", dotenv))["ok"]
        assert handle("scheduler", scheduler.run, {}, None, _function_env("scheduler", dotenv))["ok"]
        whisk.wait_idle()
        found = blocks()
        found[0] = f"set -euo pipefail\nSERVER='postgresql://postgres@127.0.0.1:{pg.port}'\n"
        script = "\n".join(found)
        env = operator.shell(tmp_path, pg.password)
        proc = subprocess.run(["bash", "-xc", script], cwd=work, env=env, capture_output=True, text=True, timeout=600)
        (tmp_path / "stderr.txt").write_text(proc.stderr)
        assert proc.returncode == 0, proc.stderr[-3000:]
        assert table_fingerprints(pg, restored) == table_fingerprints(pg, dbname)  # §2: restored, identical
        record = [r["data"] for r in fake.records["example.net"] if r["type"] == "A" and r["name"] == "erp"]
        assert record == ["203.0.113.10"]  # §6b: failed over, then back
        assert any(w[0] == "PATCH" for w in fake.writes())
        events = keys(s3_client, bucket, "audit/")
        assert (work / "rebuild" / "digitalocean").is_dir()  # §8: the config backup extracted
        for action in ("failover.transition", "failover.drill", "restore.completed", "pinned", "unpinned",
                       "status.notice.posted", "status.notice.resolved"):
            assert any(action in e for e in events), (action, events)
        # §6b and §9: the move's notice and the operator's, both resolved, on the public page
        page = json.loads(s3_client.get_object(Bucket=bucket, Key="public/status.json")["Body"].read())
        assert [n["title"] for n in page["notices"]] == ["Orders are delayed",
                                                          "Service moved to our disaster-recovery site"]
        assert all(n["resolved_at"] for n in page["notices"]), page["notices"]
        assert "Full DR drill" in (work / "dr-report.html").read_text()
        assert pg.password not in proc.stdout + proc.stderr and SPACES_SECRET not in proc.stdout + proc.stderr
        assert not fake.violations and not whisk.violations
    finally:
        stop(server)
        fake.stop()
        whisk.stop()
        with pg.connect() as conn:
            if conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (restored,)).fetchone():
                pg.drop_database(restored)
