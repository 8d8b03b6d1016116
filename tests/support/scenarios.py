"""One test `.env` per function for the local stand-ins, and what a run of it must leave behind.

Used by the built-function tests (in-process loader stand-in and DO's real loader): the
function's environment is always what project.yml gives it, substituted from these values.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from conftest import keys
from drkit_dev.fakedo import FakeDO
from drkit_dev.fakewhisk import FakeWhisk
from drkit_dev.keys import signing_env
from support.offsite import copy_bucket, copy_env, verify_copy_env

WEBHOOK_TOKEN = "built-function-Token-0001"
FAILOVER_PLAN = {"sites": ["primary", "dr"], "trigger": {"labels": {"alertname": "PrimarySiteDown"}},
                 "records": [{"domain": "example.net", "name": "erp", "type": "A", "ttl": 60,
                              "values": {"primary": "203.0.113.10", "dr": "198.51.100.20"}}]}

# A sample event for every function; a new function must add one here.
EVENTS: dict[str, dict[str, Any]] = {
    "db-backup": {"database": "odoo"},
    "restore-verify": {"database": "odoo", "backup": "latest"},
    "health-probe": {"format": "json"},
    "snapshot-rotate": {"dry_run": "false"},
    "config-backup": {"source": "digitalocean,files"},
    # a web call, as DO delivers it to a `web: raw` function: an authenticated Alertmanager alert
    "dns-failover": {"__ow_method": "post", "__ow_path": "",
                     "__ow_headers": {"authorization": f"Bearer {WEBHOOK_TOKEN}", "content-type": "application/json"},
                     "__ow_isBase64Encoded": False, "__ow_body": json.dumps({
                         "version": "4", "groupKey": "g", "status": "firing", "receiver": "drkit", "alerts": [
                             {"status": "firing", "labels": {"alertname": "PrimarySiteDown"},
                              "fingerprint": "f1", "startsAt": "2026-11-26T03:00:00Z"}]})},
    "scheduler": {},  # the every-minute trigger's tick
    "report": {},  # the scheduler's daily invoke: the DR report
    "backup-copy": {},  # the scheduler's dispatch after a backup: copy what is new
}
# The event of a run that must fail (with the failure `broken()` sets up).
FAILING_EVENTS: dict[str, dict[str, Any]] = {
    **EVENTS,
    "dns-failover": {"action": "failover", "site": "dr", "reason": "drill"},  # an operator invoke
}


@dataclass
class Scenario:
    function: str
    dotenv: dict[str, str]
    fake: FakeDO | None = None
    whisk: FakeWhisk | None = None
    notes: dict[str, Any] = field(default_factory=dict)


def base_env(s3_endpoint: str, bucket: str, secret: str, db_url: str, staging_url: str,
             age_keys: tuple[str, str], probe_port: int) -> dict[str, str]:
    """What an operator's .env holds for one database `odoo` (the stand-ins' addresses)."""
    return {
        "DRKIT_SPACES_BUCKET": bucket, "DRKIT_SPACES_ENDPOINT": s3_endpoint, "DRKIT_SPACES_KEY": "test-key",
        "DRKIT_SPACES_SECRET": secret, "DRKIT_PART_SIZE_MB": "5", "DRKIT_LOG_LEVEL": "info",
        "DRKIT_AGE_RECIPIENTS": age_keys[1], "DRKIT_AGE_IDENTITY": age_keys[0], **signing_env(),
        "DRKIT_DATABASES": "odoo", "DRKIT_DB_ODOO_URL": db_url, "DRKIT_DB_ODOO_COUNT_TABLES": "t",
        "DRKIT_STAGING_URL": staging_url,
        "DRKIT_FUNCTIONS_KEY": "dof_v1_placeholder:not-the-namespace-key-0000",  # the scheduler's scenario sets its own
        # the scheduler runs config-backup daily, so a deploy needs its sources (config-backup's scenario sets its own)
        "DRKIT_CONFIG_SOURCES": json.dumps([{"type": "digitalocean", "include": ["domains"]}]),
        "DRKIT_PROBES": json.dumps([{"name": "db", "type": "tcp", "host": "127.0.0.1", "port": probe_port}]),
        # the off-site copy: a second bucket on the same stand-in (created with Object Lock by `copy_bucket`)
        **copy_env(s3_endpoint, bucket, secret),
    }


def _storage_bucket(env: dict[str, str]) -> str:
    import uuid

    import boto3

    name = f"storage-{uuid.uuid4().hex[:10]}"
    client = boto3.client("s3", endpoint_url=env["DRKIT_SPACES_ENDPOINT"], region_name="us-east-1",
                          aws_access_key_id=env["DRKIT_SPACES_KEY"], aws_secret_access_key=env["DRKIT_SPACES_SECRET"])
    client.create_bucket(Bucket=name)
    client.put_object(Bucket=name, Key="user-1/avatar.png", Body=b"\x89PNG a picture")
    return name


@contextmanager
def scenario(function: str, env: dict[str, str]) -> Iterator[Scenario]:
    """The stand-ins one function needs (a fake DO API where it calls DigitalOcean)."""
    fake = None
    env = dict(env)
    if function in ("snapshot-rotate", "config-backup", "dns-failover"):
        fake = FakeDO().start()
        env.update({"DRKIT_DO_TOKEN": fake.token, "DRKIT_DO_ENDPOINT": fake.endpoint, "DRKIT_DO_CA_FILE": fake.ca_file})
    if function == "snapshot-rotate":
        assert fake is not None
        fake.add_droplet("erp", ["dr:snapshot"])
        env["DRKIT_SNAPSHOT_POLICIES"] = json.dumps([{"tag": "dr:snapshot", "retention": "keep_last=4"}])
    if function == "config-backup":
        assert fake is not None
        fake.add_domain("example.net")
        fake.add_record("example.net", "A", "erp", "203.0.113.10", 60)
        files_bucket = _storage_bucket(env)  # the "Supabase Storage" whose file bytes the storage source copies
        env.update({"DRKIT_STORAGE_S3_KEY": env["DRKIT_SPACES_KEY"], "DRKIT_STORAGE_S3_SECRET": env["DRKIT_SPACES_SECRET"]})
        env["DRKIT_CONFIG_SOURCES"] = json.dumps([
            {"type": "digitalocean", "include": ["domains", "firewalls"]},
            {"type": "storage", "name": "files", "endpoint": env["DRKIT_SPACES_ENDPOINT"], "buckets": [files_bucket]}])
    if function == "dns-failover":
        assert fake is not None
        fake.add_record("example.net", "A", "erp", "203.0.113.10", 60)
        env.update({"DRKIT_WEBHOOK_BEARER": WEBHOOK_TOKEN, "DRKIT_FAILOVER_PLAN": json.dumps(FAILOVER_PLAN)})
    if function == "backup-copy":
        copy_bucket(env)
    if function == "restore-verify":  # the copy configured and filled: the first proof is the primary's, the next
        copy_bucket(env)                # the copy's (they alternate)
        env.update(verify_copy_env(env))
        from drkit.functions import backup_copy
        from drkit.platform.runtime import handle
        from drkit_dev import artifact

        assert handle("backup-copy", backup_copy.run, {}, None, artifact.function_env("backup-copy", env))["ok"]
    whisk = None
    if function == "scheduler":  # the namespace API it dispatches through; every invoked function succeeds
        whisk = FakeWhisk().start()
        env.update(whisk.env())
    try:
        yield Scenario(function, env, fake, whisk)
    finally:
        if fake is not None:
            fake.stop()
        if whisk is not None:
            whisk.stop()
            assert whisk.violations == [], whisk.violations


def broken(sc: Scenario, closed_port: int) -> None:
    """Make the scenario's run fail the way production runs fail."""
    if sc.function == "db-backup":  # a wrong database password
        url = sc.dotenv["DRKIT_DB_ODOO_URL"]
        sc.dotenv["DRKIT_DB_ODOO_URL"] = url.replace("drkit-Local-pw-7", "wrong-password-9")
    elif sc.function == "restore-verify":  # the staging server is down
        sc.dotenv["DRKIT_STAGING_URL"] = f"postgresql://postgres:pw@127.0.0.1:{closed_port}/postgres"
    elif sc.function == "scheduler":  # the namespace key was revoked: every invoke is refused (401)
        sc.dotenv["DRKIT_FUNCTIONS_KEY"] = "dof_v1_revoked:revoked-Secret-0123456789"
    elif sc.function == "backup-copy":  # the copy's region is down
        sc.dotenv.update({"DRKIT_COPY_ENDPOINT": f"http://127.0.0.1:{closed_port}", "DRKIT_S3_MAX_ATTEMPTS": "1"})
    elif sc.function in ("health-probe", "report"):  # the bucket cannot be reached (targets down would be a success)
        sc.dotenv.update({"DRKIT_SPACES_ENDPOINT": f"http://127.0.0.1:{closed_port}", "DRKIT_S3_MAX_ATTEMPTS": "1"})
    else:  # the DigitalOcean API answers 500
        assert sc.fake is not None
        sc.fake.fail("GET", ".*", 500, times=None)
        sc.fake.fail("POST", ".*", 500, times=None)
        sc.fake.fail("PUT", ".*", 500, times=None)


def check_effects(function: str, result: dict[str, Any], s3_client: Any, bucket: str, sc: Scenario) -> None:
    """What a successful run of `function` must have done."""
    if function == "dns-failover":  # a web reply
        assert result["statusCode"] == 200 and result["body"]["outcome"] == "applied", result
        assert sc.fake is not None and sc.fake.records["example.net"][0]["data"] == "198.51.100.20"
        return
    assert result["ok"] and "error" not in result, result
    stored = keys(s3_client, bucket, "db/odoo/")
    if function == "db-backup":
        assert len([k for k in stored if k.endswith(".dump.zst.age")]) >= 1, stored
        assert len([k for k in stored if k.endswith(".manifest.json")]) >= 1, stored
    elif function == "config-backup":
        assert [k for k in keys(s3_client, bucket, "config/") if k.endswith(".tar.zst.age")]
        assert result["files"] == 4  # example.net records + zone, the domain index; the storage source's index
        assert [k for k in keys(s3_client, bucket, "files/files/blobs/")]  # the file bytes, encrypted
    elif function == "snapshot-rotate":
        assert result["created"] and result["created"][0].startswith("droplet erp: drkit-erp-"), result
    elif function == "scheduler":  # a first tick: each job's latest slot, one activation per database
        names = sorted(d["name"] for d in result["dispatched"] if d["state"] == "dispatched")
        assert names == ["backup-copy", "config-backup", "db-backup/odoo", "health-probe", "report",
                         "restore-verify/odoo"], result
        assert sc.whisk is not None
        # each slot once; the every-minute probe may get a second slot when the warm run starts in the next minute;
        # the copy may follow the backup whose success the warm run sees
        others = [i.action for i in sc.whisk.invoked() if i.action not in ("dr/health-probe", "dr/backup-copy")]
        assert sorted(others) == ["dr/config-backup", "dr/db-backup", "dr/report", "dr/restore-verify"], others
        assert len(sc.whisk.invoked("backup-copy")) in (1, 2)
        assert len(sc.whisk.invoked("health-probe")) in (1, 2)
        assert "status/schedule.json" in keys(s3_client, bucket, "status/")
    elif function == "report":  # the month's report and its evidence, kept; a link to it
        assert {"reports/latest.html", "reports/latest.json"} <= set(keys(s3_client, bucket, "reports/")), result
        assert "X-Amz-Signature=" in result["url"] or "Signature=" in result["url"], result
    elif function == "backup-copy":  # every object of the backup, in the copy bucket, locked; the status in both
        copied = set(keys(s3_client, sc.dotenv["DRKIT_COPY_BUCKET"]))
        backups = {k for k in stored if k.startswith("db/")}
        assert backups and backups <= copied and "state/copy/ledger.json" in copied, result
        assert result["ok"] and result["immutability"] == "object-lock", result
        assert "state/copy/status.json" in keys(s3_client, bucket, "state/copy/")
    elif function == "health-probe":
        names = {t["name"]: t["ok"] for t in result["targets"]}
        assert names["db"] and names["backup-age:odoo"], names
        assert "status/health.prom" in keys(s3_client, bucket, "status/")
    else:
        assert result["databases"][0]["status"] == "passed", result
        assert any(k.endswith(".verified") for k in stored) and any(k.endswith(".verify.json") for k in stored)
