"""The local DR drill (./scripts/drill): the real functions against local stand-ins.

Starts an embedded PostgreSQL 18 with an Odoo-like sample database and a local
S3 server (moto, HTTP on 127.0.0.1), runs db-backup exactly as the function
runs it, restores the newest backup into a fresh database, compares every
table, then runs restore-verify, health-probe, a failover rehearsal, a snapshot
rotation and config-backup (two runs: the second's drift report names a DNS and
a firewall change), and prints a report. Exit status 0 only if every step passed.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import boto3
from rich.console import Console
from rich.table import Table

from drkit.core import log
from drkit.core.deadline import Deadline
from drkit.crypto import encryption
from drkit.functions import db_backup, dns_failover, health_probe, restore_verify, snapshot_rotate
from drkit.platform.config import Config
from drkit.platform.runtime import handle, handle_web
from drkit.postgres import restore
from drkit.storage import catalog

from . import drill_offsite, drill_pages, drill_schedule, drill_supabase, probeservers, sampledb
from .keys import signing_env, store_of
from .pgserver import PgServer
from .s3server import S3Server

ROOT = Path(__file__).resolve().parents[2]


@dataclass
class Step:
    name: str
    ok: bool
    detail: str
    seconds: float


@dataclass
class Drill:
    console: Console
    steps: list[Step] = field(default_factory=list)
    facts: dict[str, str] = field(default_factory=dict)

    def step(self, name: str, ok: bool, detail: str, seconds: float) -> None:
        self.steps.append(Step(name, ok, detail, seconds))
        mark = "[green]PASS[/green]" if ok else "[red]FAIL[/red]"
        self.console.print(f"{mark} {name}: {detail} [dim]({seconds:.1f}s)[/dim]")

    @property
    def ok(self) -> bool:
        return all(s.ok for s in self.steps)


def run(size_mb: int, keep: bool) -> int:
    console = Console()
    drill = Drill(console)
    pgbin = os.environ.get("DRKIT_PG_BIN")
    if not pgbin or not (Path(pgbin) / "pg_dump").exists():
        console.print("[red]vendored pg_dump missing[/red]: run ./scripts/drill (it builds build/pgbin first)")
        return 2
    log.configure("warning")  # the report is the output; JSON logs only for warnings and errors
    work = Path(tempfile.mkdtemp(prefix="drkit-drill-"))
    console.rule("drkit drill: local stand-ins")
    t = time.monotonic()
    with PgServer() as pg, S3Server() as s3:
        console.print(f"PostgreSQL {pg.major} on 127.0.0.1:{pg.port}, S3 (moto) at {s3.endpoint}, work dir {work}")
        boto3.client("s3", endpoint_url=s3.endpoint, aws_access_key_id="DRILL00ACCESSKEY", aws_secret_access_key="drill-secret-key",
                      region_name="us-east-1").create_bucket(Bucket="drkit-drill")
        identity, recipient = encryption.generate_identity()
        pg.create_database("erp")
        sampledb.fill(pg, "erp", size_mb)
        db_size = sampledb.database_size(pg, "erp")
        drill.facts["database size"] = f"{db_size / 1e6:.1f} MB (PostgreSQL {pg.major}, Odoo-like sample)"
        drill.step("stand-ins", True, f"embedded PostgreSQL, moto S3, sample database {db_size / 1e6:.0f} MB",
                   time.monotonic() - t)

        env = {
            "DRKIT_SPACES_BUCKET": "drkit-drill", "DRKIT_SPACES_ENDPOINT": s3.endpoint,
            "DRKIT_SPACES_KEY": "DRILL00ACCESSKEY", "DRKIT_SPACES_SECRET": "drill-secret-key",
            "DRKIT_LOG_LEVEL": "warning",
            **signing_env(), "DRKIT_AGE_RECIPIENTS": recipient, "DRKIT_DATABASES": "erp", "DRKIT_DB_ERP_URL": pg.url("erp"),
            "DRKIT_DB_ERP_COUNT_TABLES": "*",
            "DRKIT_STAGING_URL": pg.url("postgres"), "DRKIT_AGE_IDENTITY": identity,
            "DRKIT_DB_ERP_CHECKS": DRILL_CHECKS,
            "DRKIT_PG_BIN": pgbin, "PATH": os.environ.get("PATH", ""),
        }
        web, web_port = probeservers.serve(probeservers.Behaviour())
        env["DRKIT_PROBES"] = json.dumps([
            {"name": "erp-web", "type": "http", "url": f"http://127.0.0.1:{web_port}/health", "body_contains": "UP"},
            {"name": "erp-db", "type": "tcp", "host": "127.0.0.1", "port": pg.port}])
        try:
            backup_step(drill, env)
            restore_step(drill, env, pg, identity)
            verify_step(drill, env)
            drill_offsite.offsite_step(drill, env, pg, identity, _Context(900_000))
            health_step(drill, env)
            failover_step(drill, env, web_port)
            snapshot_step(drill, env)
            config_step(drill, env, work)
            drill_supabase.supabase_step(drill, env, identity)
            drill_schedule.compressed_day(drill, env)
            drill_pages.pages_step(drill, env, _Context(300_000))
        finally:
            probeservers.stop(web)
    if keep:
        console.print(f"kept {work}")
    else:
        shutil.rmtree(work, ignore_errors=True)
    report(drill)
    return 0 if drill.ok else 1


def backup_step(drill: Drill, env: dict[str, str]) -> None:
    t = time.monotonic()
    result = handle("db-backup", db_backup.run, {}, _Context(900_000), env)
    secs = time.monotonic() - t
    if not result["ok"]:
        drill.step("db-backup", False, str(result.get("decision")), secs)
        return
    db = result["databases"][0]
    drill.facts["dump size (pg_dump -Fc -Z0)"] = f"{db['bytes_in'] / 1e6:.1f} MB"
    drill.facts["stored size (zstd + age)"] = f"{db['bytes_out'] / 1e6:.1f} MB ({db['bytes_in'] / db['bytes_out']:.2f}x smaller)"
    drill.facts["backup duration"] = f"{db['duration_s']:.1f} s ({db['throughput_mb_s']} MB/s of dump)"
    drill.facts["backup key"] = db["key"]
    drill.step("db-backup", True, result["decision"], secs)


def restore_step(drill: Drill, env: dict[str, str], pg: PgServer, identity: str) -> None:
    if not drill.ok:
        drill.step("restore", False, "skipped: no backup", 0.0)
        return
    t = time.monotonic()
    cfg = Config.from_env(env)
    store = store_of(env)
    entry = catalog.find(store, "latest", "erp")
    pg.create_database("erp_restored")
    try:
        manifest = catalog.read_manifest(store, entry)
        result = restore.restore(store, entry, [encryption.parse_identity(identity)], cfg.databases["erp"], "erp_restored",
                                 manifest=manifest)
    except Exception as exc:  # noqa: BLE001 - reported as a failed step
        drill.step("restore", False, f"{type(exc).__name__}: {exc}", time.monotonic() - t)
        return
    drill.facts["restore duration"] = (f"{result.duration_s:.1f} s (stream from S3, verify SHA-256, decrypt, "
                                       f"decompress, pg_restore {result.pg_restore_version})")
    drill.step("restore", True, f"{entry.id} into a fresh database", time.monotonic() - t)

    t = time.monotonic()
    source, restored = sampledb.fingerprint(pg, "erp"), sampledb.fingerprint(pg, "erp_restored")
    rows = sum(n for n, _ in source.values())
    same = source == restored
    counts = {f"{x['schema']}.{x['name']}": x["exact_rows"] for x in manifest["tables"] if x["exact_rows"] is not None}
    counts_ok = all(restored.get(k, (-1, ""))[0] == v for k, v in counts.items())
    detail = (f"{len(source)} tables, {rows:,} rows identical; manifest row counts match" if same and counts_ok
              else f"MISMATCH: {sorted(k for k in source if source[k] != restored.get(k))}")
    drill.facts["restore check"] = detail
    drill.step("compare", same and counts_ok, detail, time.monotonic() - t)


DRILL_CHECKS = (
    '[{"name": "partners exist", "sql": "SELECT count(*) FROM res_partner", "expect": "> 0"},'
    ' {"name": "posted moves", "sql": "SELECT count(*) FROM account_move WHERE state = \'posted\'", "expect": "> 0"},'
    ' {"name": "balanced lines", "sql": "SELECT count(*) FROM account_move_line WHERE debit < 0 OR credit < 0",'
    ' "expect": "== 0"}]'
)


def verify_step(drill: Drill, env: dict[str, str]) -> None:
    """restore-verify, exactly as the weekly trigger runs it; its checks become the report's table."""
    if not drill.ok:
        drill.step("restore-verify", False, "skipped: earlier step failed", 0.0)
        return
    t = time.monotonic()
    result = handle("restore-verify", restore_verify.run, {"backup": "latest"}, _Context(900_000), env)
    secs = time.monotonic() - t
    db = result.get("databases", [{}])[0]
    table = Table("check", "result", "detail", title="restore-verify checks")
    for c in db.get("checks", []):
        table.add_row(c["name"], "[green]pass[/green]" if c["passed"] else "[red]FAIL[/red]", c["detail"])
    drill.console.print(table)
    if db.get("restore"):
        r = db["restore"]
        drill.facts["restore-verify (RTO evidence)"] = (f"{r['duration_s']:.1f} s restore into PostgreSQL "
                                                       f"{r['target_version']} ({r['throughput_mb_s']} MB/s), "
                                                       f"{len(db['checks'])} checks")
    drill.step("restore-verify", bool(result["ok"]), str(result.get("decision")), secs)


def health_step(drill: Drill, env: dict[str, str]) -> None:
    """health-probe, as the minutely trigger runs it: the RPO/RTO compliance table."""
    t = time.monotonic()
    result = handle("health-probe", health_probe.run, {}, _Context(55_000), env)
    secs = time.monotonic() - t
    targets = {x["name"]: x for x in result.get("targets", [])}
    table = Table("database", "backup age (RPO)", "last verified restore", "restore duration (RTO)",
                  "failed runs", title="RPO / RTO compliance")
    for name in env["DRKIT_DATABASES"].split(","):
        cells = []
        for key in ("backup-age", "verify-age", "restore-duration", "backup-failures"):
            x = targets.get(f"{key}:{name}")
            cells.append("-" if x is None else ("[green]ok[/green] " if x["ok"] else "[red]NO[/red] ") + x["detail"])
        table.add_row(name, *cells)
    drill.console.print(table)
    others = [x for x in result.get("targets", []) if x["type"] not in ("backup", "verify")]
    drill.facts["health-probe"] = "; ".join(f"{x['name']} {'up' if x['ok'] else 'DOWN'} ({x['detail']})" for x in others)
    drill.step("health-probe", bool(result["ok"]), str(result.get("decision")), secs)


def failover_step(drill: Drill, env: dict[str, str], dr_port: int) -> None:
    """A failover rehearsal on the fake DO API: signed alert -> DR, replay -> nothing, operator failback."""
    import hashlib
    import hmac

    from .fakedo import FakeDO

    t = time.monotonic()
    fake = FakeDO().start()
    try:
        fake.add_record("example.net", "A", "erp", "203.0.113.10", 60)
        secret = "drill-Signing-Secret-0001"
        e = dict(env, DRKIT_DO_TOKEN=fake.token, DRKIT_DO_ENDPOINT=fake.endpoint, DRKIT_DO_CA_FILE=fake.ca_file,
                 DRKIT_WEBHOOK_HMAC=secret, DRKIT_FAILOVER_PLAN=json.dumps({
                     "sites": ["primary", "dr"], "health": {"dr": f"http://127.0.0.1:{dr_port}/health"},
                     "trigger": {"labels": {"alertname": "PrimarySiteDown"}},
                     "records": [{"domain": "example.net", "name": "erp", "type": "A", "ttl": 60,
                                  "values": {"primary": "203.0.113.10", "dr": "198.51.100.20"}}]}))
        body = json.dumps({"version": "4", "groupKey": "drill", "status": "firing", "receiver": "drkit", "alerts": [{
            "status": "firing", "labels": {"alertname": "PrimarySiteDown"}, "fingerprint": "drill",
            "startsAt": "2026-11-26T00:00:00Z"}]}).encode()
        ts = str(int(time.time()))
        mac = hmac.new(secret.encode(), ts.encode() + b"." + body, hashlib.sha256).hexdigest()
        call = {"http": {"method": "POST", "body": body.decode(), "isBase64Encoded": False,
                         "headers": {"x-drkit-timestamp": ts, "x-drkit-signature": f"sha256={mac}"}}}
        table = Table("step", "answer", "DNS erp.example.net", title="failover rehearsal (fake DO API)")
        steps = []
        for label, event in (("signed alert", call), ("replay of the same alert", call),
                             ("operator failback", {"action": "failback", "reason": "drill"})):
            reply = handle_web("dns-failover", dns_failover.run_web, dns_failover.run, event, _Context(25_000), e)
            answer_of = reply["body"] if "statusCode" in reply else reply
            answer = answer_of.get("decision") or answer_of.get("error")
            code = reply.get("statusCode", "invoke")
            data = fake.records["example.net"][0]["data"]
            steps.append(data)
            table.add_row(label, f"{code}: {answer}", data)
        drill.console.print(table)
        ok = steps == ["198.51.100.20", "198.51.100.20", "203.0.113.10"] and not fake.violations
        drill.facts["failover rehearsal"] = (f"alert -> DR, replay -> no change, failback -> primary; "
                                             f"{len(fake.writes())} DO API writes, all valid for the API spec"
                                             if ok else f"UNEXPECTED: {steps} {fake.violations[:2]}")
        drill.step("dns-failover", ok, drill.facts["failover rehearsal"], time.monotonic() - t)
    finally:
        fake.stop()


def snapshot_step(drill: Drill, env: dict[str, str]) -> None:
    """One rotation on the fake DO API: two tagged resources with history, a manual snapshot that stays."""
    import datetime as dt

    from .fakedo import FakeDO

    t = time.monotonic()
    fake = FakeDO().start()
    try:
        now = dt.datetime.now(dt.UTC)
        erp = fake.add_droplet("erp", ["dr:snapshot"])
        data = fake.add_volume("erp-data", ["dr:snapshot"])
        for weeks in range(1, 7):
            when = now - dt.timedelta(weeks=weeks)
            fake.add_snapshot(snapshot_rotate.snapshot_name("erp", when), erp["id"], "droplet", when)
            fake.add_snapshot(snapshot_rotate.snapshot_name("erp-data", when), data["id"], "volume", when)
        fake.add_snapshot("erp-before-upgrade", erp["id"], "droplet", now - dt.timedelta(days=100))
        e = dict(env, DRKIT_DO_TOKEN=fake.token, DRKIT_DO_ENDPOINT=fake.endpoint, DRKIT_DO_CA_FILE=fake.ca_file,
                 DRKIT_SNAPSHOT_POLICIES=json.dumps([{"tag": "dr:snapshot", "schedule": "0 3 * * 0",
                                                     "retention": "keep_last=4"}]))
        first = handle("snapshot-rotate", snapshot_rotate.run, {}, _Context(300_000), e)
        second = handle("snapshot-rotate", snapshot_rotate.run, {}, _Context(300_000), e)  # actions completed
        table = Table("run", "created", "pruned", "decision", title="snapshot rotation (fake DO API)")
        for label, r in (("first", first), ("second", second)):
            table.add_row(label, "\n".join(r.get("created", [])) or "-", "\n".join(r.get("deleted", [])) or "-",
                          str(r.get("decision")))
        drill.console.print(table)
        kept = sorted(s["name"] for s in fake.snapshots)
        ok = bool(first["ok"] and second["ok"]) and "erp-before-upgrade" in kept and not fake.violations \
            and len([k for k in kept if k.startswith("drkit-erp-2")]) == 4
        drill.facts["snapshot rotation"] = (f"created {len(first['created'])}, pruned "
                                            f"{len(first['deleted']) + len(second['deleted'])} (keep_last=4 per "
                                            "resource); the manual snapshot stays")
        drill.step("snapshot-rotate", ok, drill.facts["snapshot rotation"], time.monotonic() - t)
    finally:
        fake.stop()


def config_step(drill: Drill, env: dict[str, str], work: Path) -> None:
    """config-backup of a sample account (fake DO API, local GitHub/Grafana, Terraform state in S3), a DNS
    and firewall change, a second run whose drift names them, then extract and a DNS restore plan."""
    from drkit.configbackup import catalog, dns_restore, extract
    from drkit.digitalocean.api import DoApi
    from drkit.functions import config_backup
    from drkit.storage.transfer import VerifyingReader, explain_crypto_failure

    from . import sampleaccount
    from .fakedo import FakeDO
    from .fakeweb import FakeWeb

    t = time.monotonic()
    fake, web = FakeDO(page_cap=20).start(), FakeWeb().start()
    try:
        sampleaccount.populate_do(fake)
        sampleaccount.populate_web(web)
        store = store_of(env)
        store.client.create_bucket(Bucket="drkit-drill-tfstate")
        store.client.put_object(Bucket="drkit-drill-tfstate", Key="prod/terraform.tfstate", Body=b'{"version": 4}')
        e = dict(env, DRKIT_DO_TOKEN=fake.token, DRKIT_DO_ENDPOINT=fake.endpoint, DRKIT_DO_CA_FILE=fake.ca_file,
                 DRKIT_GITHUB_TOKEN=web.github_token, DRKIT_GRAFANA_TOKEN=web.grafana_token,
                 DRKIT_CONFIG_SOURCES=json.dumps(sampleaccount.sources(web, "drkit-drill-tfstate")))
        first = handle("config-backup", config_backup.run, {}, _Context(900_000), e)
        erp = next(r for r in fake.records["example.net"] if r["name"] == "erp")
        erp["data"] = "198.51.100.20"  # somebody moved erp
        fake.inventory["firewalls"][0]["inbound_rules"].append(
            {"protocol": "tcp", "ports": "5432", "sources": {"addresses": ["0.0.0.0/0"]}})
        second = handle("config-backup", config_backup.run, {}, _Context(900_000), e)
        table = Table("run", "status", "files", "stored", "drift", title="config-backup (fake DO API, GitHub, Grafana, S3)")
        for label, r in (("first", first), ("second", second)):
            table.add_row(label, str(r.get("status")), str(r.get("files")), f"{r.get('bytes_out', 0) / 1e3:.0f} kB",
                          "\n".join([*r.get("drift", {}).get("dns", []), *r.get("drift", {}).get("firewalls", [])])
                          or (f"first run: {len(r['drift']['new_units'])} sources, nothing to compare"
                              if r.get("drift", {}).get("new_units") else str(r.get("drift", {}).get("summary"))))
        drill.console.print(table)
        identities = [encryption.parse_identity(env["DRKIT_AGE_IDENTITY"])]
        entry = catalog.find(store, "latest")
        manifest = catalog.read_manifest(store, entry)
        raw = store.open_read(entry.data_key)
        reader = VerifyingReader(raw, int(manifest["bytes_out"]), str(manifest["sha256"]))
        done = extract.extract(reader, manifest["files"], identities, work / "config",
                               explain=lambda: explain_crypto_failure(reader, "disk"))
        raw.close()
        zone = (work / "config/digitalocean/domains/example.net.zone").read_text()
        api = DoApi.from_env(e, Deadline(None))
        backup_id, records = dns_restore.backed_up_records(store, first["backup_id"], "example.net", identities)
        plan = dns_restore.make_plan(api, backup_id, "example.net", records)
        drill.console.print(f"dns restore --from {backup_id} --dry-run: " + "; ".join(s.text("example.net")
                                                                                      for s in plan.changes))
        dns_line = "A erp.example.net 203.0.113.10 → 198.51.100.20"
        ok = bool(first["ok"] and second["ok"]) and dns_line in second["drift"]["dns"] and \
            "198.51.100.20" in zone and len(plan.changes) == 1 and not fake.violations
        drill.facts["config backup"] = (f"{first['files']} files from {len(first['sources'])} sources; second run's "
                                        f"drift: {dns_line}, {second['drift']['firewalls'][0] if second['drift']['firewalls'] else '-'}; "
                                        f"extracted {done.files} verified files; DNS restore plan: 1 update")
        drill.step("config-backup", ok, drill.facts["config backup"], time.monotonic() - t)
    finally:
        web.stop()
        fake.stop()


# The DR plan's scenarios: what this drill rehearses of each, and what it leaves out (and where that is tested).
SCENARIOS = (
    ("1 database loss (RTO 2 h)", "rehearsed: backup, restore into a new database, row-for-row compare, "
     "restore-verify; a Supabase project into a new one", "apps stop/start, validate and the incident record are "
     "in the suite (tests/integration/test_apps.py, test_validate.py), not here"),
    ("2 App Platform to another region (RTO 4 h)", "the app specs are in the config backup (config-backup step)",
     "no command recreates the apps in another region yet (drkit region evacuate: not built)"),
    ("3 droplet failure (RTO 1 h)", "rehearsed: snapshots taken and retained by policy",
     "the rebuild itself (once, new IP, reserved IP, DNS) is in the suite: test_snapshot_rotate.py"),
    ("4 regional outage (RTO 8 h)", "rehearsed: restore and verify from the off-site copy with the primary "
     "bucket unreachable; DNS failover and failback; a Supabase project rebuilt in another region",
     "droplets and apps in the DR region are not rehearsed (snapshot copies to dr_region: in the suite)"),
)


def report(drill: Drill) -> None:
    table = Table(title="drill report", show_header=False)
    for k, v in drill.facts.items():
        table.add_row(k, v)
    verdict = "[green]ALL STEPS PASSED[/green]" if drill.ok else "[red]DRILL FAILED[/red]"
    table.add_row("result", verdict)
    drill.console.print(table)
    plan = Table("DR plan scenario", "this drill", "left out", title="what the drill rehearses")
    for row in SCENARIOS:
        plan.add_row(*row)
    drill.console.print(plan)


class _Context:
    activation_id = "local-drill"

    def __init__(self, ms: int):
        self._end = time.monotonic() + ms / 1000

    def get_remaining_time_in_millis(self) -> int:
        return int((self._end - time.monotonic()) * 1000)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="Run the drkit DR drill on local stand-ins.")
    ap.add_argument("--size-mb", type=int, default=60, help="sample database size (default: %(default)s)")
    ap.add_argument("--keep", action="store_true", help="keep the work directory")
    args = ap.parse_args(argv)
    return run(args.size_mb, args.keep)


if __name__ == "__main__":
    sys.exit(main())
