"""config-backup against real stand-ins: the fake DO API (checked against DO's spec), a local GitHub/Grafana,
a bucket of Terraform state in the local S3 server; extract and DNS restore through the CLI."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import random
import subprocess
import sys
import tarfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from conftest import ROOT, keys, open_uploads
from drkit.cli import main
from drkit.core.deadline import Deadline
from drkit.functions import config_backup
from drkit.platform.runtime import handle
from drkit.policy import layout
from drkit_dev import sampleaccount
from drkit_dev.fakedo import FakeDO
from drkit_dev.fakeweb import FakeWeb, Generated
from support.records import content

TFSTATE = json.dumps({"version": 4, "terraform_version": "1.9.0", "resources": [{"type": "digitalocean_droplet"}]}).encode()


class Account:
    def __init__(self, fake: FakeDO, web: FakeWeb, env: dict[str, str], tf_bucket: str):
        self.fake, self.web, self.env, self.tf_bucket = fake, web, env, tf_bucket

    def run(self, **params: Any) -> dict[str, Any]:
        return handle("config-backup", config_backup.run, params, None, self.env)

    def with_sources(self, items: list[dict[str, Any]]) -> None:
        self.env["DRKIT_CONFIG_SOURCES"] = json.dumps(items)


@pytest.fixture
def account(make_env: Any, s3_client: Any) -> Iterator[Account]:
    fake = FakeDO(page_cap=7).start()  # DO serves up to 200 per page; 7 makes every list paginate
    web = FakeWeb().start()
    sampleaccount.populate_do(fake)
    sampleaccount.populate_web(web)
    tf_bucket = f"tf-{uuid.uuid4().hex[:10]}"
    s3_client.create_bucket(Bucket=tf_bucket)
    s3_client.put_object(Bucket=tf_bucket, Key="prod/terraform.tfstate", Body=TFSTATE)
    s3_client.put_object(Bucket=tf_bucket, Key="prod/network/terraform.tfstate", Body=b'{"version": 4}')
    s3_client.put_object(Bucket=tf_bucket, Key="staging/terraform.tfstate", Body=b"not ours")
    env = make_env({}, DRKIT_DO_TOKEN=fake.token, DRKIT_DO_ENDPOINT=fake.endpoint, DRKIT_DO_CA_FILE=fake.ca_file,
                   DRKIT_GITHUB_TOKEN=web.github_token, DRKIT_GRAFANA_TOKEN=web.grafana_token,
                   DRKIT_CONFIG_SOURCES=json.dumps(sampleaccount.sources(web, tf_bucket)))
    env.pop("DRKIT_DATABASES")
    yield Account(fake, web, env, tf_bucket)
    web.stop()
    fake.stop()
    assert fake.violations == [], fake.violations


def _manifest(s3_client: Any, bucket: str, result: dict[str, Any]) -> dict[str, Any]:
    key = result["key"].replace(layout.CONFIG_DATA_SUFFIX, layout.MANIFEST_SUFFIX)
    return json.loads(s3_client.get_object(Bucket=bucket, Key=key)["Body"].read())


def _cli(env: dict[str, str], *argv: str, capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    old = dict(os.environ)
    os.environ.update(env)
    os.environ["COLUMNS"] = "240"  # rich wraps tables to the terminal; a wide one keeps ids on one line
    try:
        capsys.readouterr()
        code = main.main(list(argv))
        out = capsys.readouterr()
        return code, out.out + out.err
    finally:
        os.environ.clear()
        os.environ.update(old)


def test_every_source_archived_checked_and_extractable(account: Account, s3_client: Any, bucket: str,
                                                        age_keys: tuple[str, str], tmp_path: Path,
                                                        capsys: pytest.CaptureFixture[str]) -> None:
    result = account.run()
    assert result["ok"] and result["status"] == "ok", result
    units = {u["name"]: u for u in result["sources"]}
    assert set(units) == {f"digitalocean/{k}" for k in ("apps", "domains", "firewalls", "load_balancers", "droplets",
                                                         "volumes", "reserved_ips", "vpcs", "databases", "projects")} \
        | {"infra", "tfstate", "grafana", "prometheus"}
    assert result["drift"]["new_units"] and "first successful run" in result["decision"]
    # every list was read to its last page (page_cap 7): 24 droplets -> 4 pages, 51 records -> 8 pages
    pages = [p for m, p, _ in account.fake.requests if m == "GET" and p == "/v2/droplets"]
    assert len(pages) == 4
    m = _manifest(s3_client, bucket, result)
    files = {f["path"]: f for f in m["files"]}
    assert len([p for p in files if p.startswith("digitalocean/droplets/")]) == 24
    assert m["sources"][1]["details"]["records"] == 40 + 4 + 7 + 4  # both domains, with SOA and NS
    assert {"infra/terraform/main.tf", "infra/scripts/restore.sh", "tfstate/terraform.tfstate",
            "tfstate/network/terraform.tfstate", "grafana/dashboards/odoo.json", "grafana/datasources/prom.json",
            "grafana/alert-rules.json", "prometheus/rules.yml", "digitalocean/domains/example.net.zone",
            "digitalocean/apps/superset.spec.json", "digitalocean/databases/supabase-mirror.json"} <= set(files)
    assert files["infra/docs"]["type"] == "symlink"
    assert files["tfstate/terraform.tfstate"]["sha256"] == hashlib.sha256(TFSTATE).hexdigest()
    assert not [p for p in files if "staging" in p]
    assert units["infra"]["details"]["commit"] == account.web.repos["acme/infra"].commit
    assert account.web.codeload_auth_headers() == []  # the token never went to the redirect target
    assert keys(s3_client, bucket, "state/") == ["state/catalog/config.json", "state/config.json"]
    assert any("config.backup.created" in k for k in keys(s3_client, bucket, "audit/"))

    # extract with the operator's identity: every file, checked
    ident = tmp_path / "id.txt"
    ident.write_text(age_keys[0])
    out = tmp_path / "restored"
    code, text = _cli(account.env, "config", "extract", "--backup", "latest", "--to", str(out), "--identity", str(ident),
                      capsys=capsys)
    assert code == 0, text
    assert (out / "tfstate/terraform.tfstate").read_bytes() == TFSTATE
    assert (out / "infra/compose/odoo.yml").read_bytes() == account.web.repos["acme/infra"].files["compose/odoo.yml"]
    assert os.access(out / "infra/scripts/restore.sh", os.X_OK) and not os.access(out / "infra/README.md", os.X_OK)
    assert os.readlink(out / "infra/docs") == "README.md"
    # extracted configuration may hold secrets (Terraform state): the operator's only
    modes = {p.relative_to(out).as_posix(): p.stat().st_mode & 0o777 for p in [out, *out.rglob("*")] if not p.is_symlink()}
    assert modes["tfstate/terraform.tfstate"] == 0o600 and modes["infra/scripts/restore.sh"] == 0o700
    assert {m for m in modes.values()} <= {0o600, 0o700}, modes
    zone = (out / "digitalocean/domains/example.net.zone").read_text()
    assert "erp\t300\tIN\tA\t203.0.113.10" in zone and "@\t3600\tIN\tMX\t10 mail.example.net." in zone
    assert '@\t3600\tIN\tCAA\t0 issue "letsencrypt.org"' in zone and "_sip._tcp\t3600\tIN\tSRV\t10 5 5060 sip.example.net." in zone
    secret_text = "\n".join(p.read_text(errors="replace") for p in out.rglob("*") if p.is_file())
    assert sampleaccount.DB_PASSWORD not in secret_text and "legacy-grafana-password" not in secret_text
    assert "EV[1:abc:def]" in (out / "digitalocean/apps/superset.spec.json").read_text()  # DO's own encryption stays
    # the same archive opens with the standard tools
    if all(_which(t) for t in ("age", "zstd")):
        std = tmp_path / "std"
        std.mkdir()
        cmd = f"age -d -i {ident} | zstd -d | tar -x -C {std}"
        data = s3_client.get_object(Bucket=bucket, Key=result["key"])["Body"].read()
        subprocess.run(["sh", "-c", cmd], input=data, check=True)
        assert (std / "tfstate/terraform.tfstate").read_bytes() == TFSTATE
    # list and show read well
    code, text = _cli(account.env, "config", "list", capsys=capsys)
    assert code == 0 and result["backup_id"] in text
    code, text = _cli(account.env, "config", "show", "latest", "--files", "5", capsys=capsys)
    assert code == 0 and "infra" in text and "age -d -i key.txt" in text
    code, text = _cli(account.env, "config", "show", "--backup", result["backup_id"], "--json", capsys=capsys)
    assert code == 0 and json.JSONDecoder().raw_decode(text)[0]["id"] == result["backup_id"]
    # no secret in results or logs
    blob = json.dumps(result) + capsys.readouterr().err
    for secret in (account.web.github_token, account.web.grafana_token, account.fake.token, sampleaccount.DB_PASSWORD):
        assert secret not in blob


def _which(tool: str) -> bool:
    import shutil

    return shutil.which(tool) is not None


def test_failing_sources_are_reported_and_the_rest_is_kept(account: Account, s3_client: Any, bucket: str) -> None:
    account.web.grafana_token = "glsa_rotated_elsewhere"  # our token is now rejected
    items = sampleaccount.sources(account.web, account.tf_bucket)
    items[-1]["url"] = "http://127.0.0.1:9/rules.yml"  # nothing listens: the source is down
    items.insert(1, {"type": "github", "name": "addons", "repo": "acme/missing", "api_url": account.web.url})
    account.with_sources(items)
    result = account.run()
    assert result["status"] == "partial" and result["ok"] is False
    units = {u["name"]: u for u in result["sources"]}
    assert units["grafana"]["status"] == "failed" and "rejected (HTTP 401)" in units["grafana"]["error"]
    assert "DRKIT_GRAFANA_TOKEN" in units["grafana"]["error"]
    assert units["prometheus"]["status"] == "failed" and "cannot reach 127.0.0.1:9" in units["prometheus"]["error"]
    assert units["addons"]["status"] == "failed" and "not found" in units["addons"]["error"]
    assert units["infra"]["status"] == "ok" and units["digitalocean/domains"]["status"] == "ok"
    assert "grafana failed" in result["decision"] and "prometheus failed" in result["decision"]
    m = _manifest(s3_client, bucket, result)
    assert m["status"] == "partial" and not [f for f in m["files"] if f["source"] in ("grafana", "prometheus")]


def test_a_token_without_one_scope_fails_only_that_kind(account: Account) -> None:
    account.fake.fail("GET", r"^/v2/databases$", 403, times=None)
    result = account.run()
    units = {u["name"]: u for u in result["sources"]}
    assert units["digitalocean/databases"]["status"] == "failed" and "HTTP 403" in units["digitalocean/databases"]["error"]
    assert all(u["status"] == "ok" for n, u in units.items() if n != "digitalocean/databases")
    assert result["status"] == "partial"


def test_nothing_stored_when_every_source_fails(account: Account, s3_client: Any, bucket: str) -> None:
    account.env["DRKIT_GRAFANA_TOKEN"] = "glsa_wrong_token_000000"
    account.with_sources([{"type": "grafana", "name": "grafana", "url": account.web.url},
                          {"type": "http", "name": "rules", "url": "http://127.0.0.1:9/x.yml"}])
    result = account.run()
    assert result["status"] == "failed" and not result["ok"]
    assert "every source failed" in result["decision"]
    assert keys(s3_client, bucket, "config/") == [] and open_uploads(s3_client, bucket) == []
    state = content(s3_client, bucket, "state/config.json")
    assert state["consecutive_failures"] == 1 and state["last_success"] is None


def test_bad_configuration_is_refused_before_any_request(account: Account, s3_client: Any, bucket: str) -> None:
    account.with_sources([{"type": "github", "name": "infra", "repo": "not-a-repo"},
                          {"type": "http", "name": "x", "url": "http://example.com/plain"},
                          {"type": "ftp", "name": "y"},
                          {"type": "grafana", "name": "infra", "url": "https://g", "token_env": "UNSET_TOKEN_VAR"}])
    result = account.run()
    assert result["status"] == "invalid_config"
    text = " ".join(result["problems"])
    for expected in ("repo must be \"owner/name\"", "url must be an https:// URL", "type 'ftp'", "used twice",
                     "UNSET_TOKEN_VAR is not set"):
        assert expected in text, text
    assert keys(s3_client, bucket) == [] and account.fake.requests == [] and account.web.requests == []


def test_drift_between_runs_names_dns_firewall_and_file_changes(account: Account, s3_client: Any, bucket: str,
                                                                 webhook: Any) -> None:
    url, received = webhook
    account.env["DRKIT_NOTIFY_WEBHOOK_URL"] = f"{url}/hook"
    first = account.run()
    assert first["ok"] and first["notifications"] == []  # a first run has nothing to compare
    erp = next(r for r in account.fake.records["example.net"] if r["name"] == "erp")
    erp["data"] = "198.51.100.20"
    account.fake.add_record("example.net", "TXT", "_acme-challenge", "token-1", 60)
    account.fake.records["example-status.com"] = [r for r in account.fake.records["example-status.com"]
                                                  if r["name"] != "node03"]
    account.fake.inventory["firewalls"][0]["inbound_rules"].append(
        {"protocol": "tcp", "ports": "5432", "sources": {"addresses": ["0.0.0.0/0"]}})
    account.web.repos["acme/infra"].files["terraform/main.tf"] = b'resource "digitalocean_droplet" "erp2" {}\n'
    account.web.repos["acme/infra"].files["terraform/dns.tf"] = b"# new\n"
    second = account.run()
    assert second["ok"], second
    drift = second["drift"]
    assert "A erp.example.net 203.0.113.10 → 198.51.100.20" in drift["dns"]
    assert "+ TXT _acme-challenge.example.net token-1" in drift["dns"]
    assert "- A node03.example-status.com 198.51.100.4" in drift["dns"]
    assert drift["firewalls"] == ["firewall web: + inbound tcp 5432 from addresses 0.0.0.0/0"]
    assert drift["files"]["infra"] == {"added": ["infra/terraform/dns.tf"], "removed": [],
                                       "changed": ["infra/terraform/main.tf"]}
    assert "A erp.example.net 203.0.113.10 → 198.51.100.20" in second["decision"]
    assert set(drift["files"]) == {"infra", "digitalocean/domains", "digitalocean/firewalls"}  # nothing else moved
    m = _manifest(s3_client, bucket, second)
    assert m["drift"]["since"]["infra"] == first["backup_id"]
    # the notification carries the DNS and firewall lines
    assert second["notifications"] and second["notifications"][0]["ok"]
    assert len(received) == 1
    sent = json.loads(received[0][2])
    assert sent["event"] == "config-backup.drift"
    assert "firewall web: + inbound tcp 5432 from addresses 0.0.0.0/0" in sent["failed_checks"]

    # a source that failed in between is compared with its last success, not reported as all-new
    account.web.grafana_token = "glsa_rotated"
    third = account.run()
    assert third["drift"]["not_compared"] == {"grafana": "failed in this run"}
    account.web.grafana_token = account.env["DRKIT_GRAFANA_TOKEN"]
    fourth = account.run()
    m4 = _manifest(s3_client, bucket, fourth)
    assert m4["drift"]["since"]["grafana"] == second["backup_id"] and not fourth["drift"]["new_units"]
    assert fourth["drift"]["summary"].startswith("no changes since")


def test_dns_restore_plans_then_recreates_missing_and_changed_records(account: Account, age_keys: tuple[str, str],
                                                                      tmp_path: Path,
                                                                      capsys: pytest.CaptureFixture[str]) -> None:
    assert account.run(source="digitalocean")["ok"]
    recs = account.fake.records["example.net"]
    erp = next(r for r in recs if r["name"] == "erp")
    erp["data"], erp["ttl"] = "192.0.2.66", 60  # hijacked
    account.fake.records["example.net"] = [r for r in recs if r["type"] not in ("MX", "SRV")]  # deleted
    account.fake.add_record("example.net", "A", "rogue", "192.0.2.99", 60)  # not in the backup
    ident = tmp_path / "id.txt"
    ident.write_text(age_keys[0])
    args = ["dns", "restore", "--domain", "example.net", "--from", "latest", "--identity", str(ident)]
    before = len(account.fake.writes())
    code, text = _cli(account.env, *args, "--dry-run", capsys=capsys)
    assert code == 0, text
    assert "update A erp.example.net: 192.0.2.66 (ttl 60) → 203.0.113.10 (ttl 300)" in text
    assert "create MX example.net 10 mail.example.net" in text and "create SRV _sip._tcp.example.net" in text
    assert "skip   A rogue.example.net 192.0.2.99" in text and "dry run: nothing was changed" in text
    assert len(account.fake.writes()) == before
    # not a terminal and no --yes: refused, nothing changed
    code, text = _cli(account.env, *args, capsys=capsys)
    assert code == 2 and "--yes" in text and len(account.fake.writes()) == before
    code, text = _cli(account.env, *args, "--yes", capsys=capsys)
    assert code == 0, text
    live = {(r["type"], r["name"], r["data"], r["ttl"]) for r in account.fake.records["example.net"]}
    assert ("A", "erp", "203.0.113.10", 300) in live and ("A", "rogue", "192.0.2.99", 60) in live
    mx = next(r for r in account.fake.records["example.net"] if r["type"] == "MX")
    assert mx["priority"] == 10 and mx["data"] == "mail.example.net"
    srv = next(r for r in account.fake.records["example.net"] if r["type"] == "SRV")
    assert (srv["priority"], srv["weight"], srv["port"]) == (10, 5, 5060)
    # running it again finds nothing to do
    code, text = _cli(account.env, *args, "--yes", capsys=capsys)
    assert code == 0 and "nothing to do" in text
    # the whole domain deleted: it is created, DO adds its SOA/NS, drkit the rest; --delete-extra not needed
    del account.fake.records["example.net"]
    code, text = _cli(account.env, *args, "--yes", capsys=capsys)
    assert code == 0 and "create domain example.net" in text, text
    assert len([r for r in account.fake.records["example.net"] if r["type"] == "NS"]) == 3
    assert ("A", "erp", "203.0.113.10", 300) in {(r["type"], r["name"], r["data"], r["ttl"])
                                                 for r in account.fake.records["example.net"]}


def test_tampered_archive_is_refused_and_nothing_is_extracted(account: Account, s3_client: Any, bucket: str,
                                                              age_keys: tuple[str, str], tmp_path: Path,
                                                              capsys: pytest.CaptureFixture[str]) -> None:
    result = account.run(source="infra")
    ident = tmp_path / "id.txt"
    ident.write_text(age_keys[0])
    data = bytearray(s3_client.get_object(Bucket=bucket, Key=result["key"])["Body"].read())
    data[len(data) // 2] ^= 0x01
    s3_client.put_object(Bucket=bucket, Key=result["key"], Body=bytes(data))
    out = tmp_path / "restored"
    code, text = _cli(account.env, "config", "extract", "--to", str(out), "--identity", str(ident), capsys=capsys)
    assert code == 1 and "SHA-256 does not match" in text, text
    assert not out.exists() and not list(tmp_path.glob(".restored*"))
    # DNS restore reads the same archive: refused too, nothing sent to DO
    code, text = _cli(account.env, "dns", "restore", "--domain", "example.net", "--identity", str(ident), "--yes",
                      capsys=capsys)
    assert code in (1, 2) and account.fake.writes() == []
    # a manifest altered in the bucket is refused: its signature no longer matches
    fresh = account.run(source="infra")
    key = fresh["key"].replace(layout.CONFIG_DATA_SUFFIX, layout.MANIFEST_SUFFIX)
    manifest = json.loads(s3_client.get_object(Bucket=bucket, Key=key)["Body"].read())
    manifest["files"][0]["sha256"] = "0" * 64
    s3_client.put_object(Bucket=bucket, Key=key, Body=json.dumps(manifest).encode())
    code, text = _cli(account.env, "config", "extract", "--backup", fresh["backup_id"], "--to", str(out),
                      "--identity", str(ident), capsys=capsys)
    assert code == 1 and "not signed by a trusted key" in text and not out.exists()
    # and one that lies about a file although signed (a writer's bug) is still caught file by file
    from drkit.storage import signed
    from drkit_dev.keys import store_of

    signed.put_json(store_of(account.env, "config-backup"), key, manifest)
    code, text = _cli(account.env, "config", "extract", "--backup", fresh["backup_id"], "--to", str(out),
                      "--identity", str(ident), capsys=capsys)
    assert code == 1 and "does not match the manifest" in text and not out.exists()


def test_a_broken_repository_stream_keeps_the_tar_valid(account: Account, s3_client: Any, bucket: str,
                                                         age_keys: tuple[str, str], tmp_path: Path,
                                                         capsys: pytest.CaptureFixture[str]) -> None:
    noise = random.Random(7).randbytes(65536)  # repeats beyond gzip's 32 KiB window: incompressible
    account.web.repos["acme/infra"].files["zz-large.bin"] = Generated(3 << 20, noise)
    account.web.break_after = 100_000  # codeload drops the connection inside the large file
    result = account.run(source="infra,tfstate")
    units = {u["name"]: u for u in result["sources"]}
    assert units["infra"]["status"] == "failed" and "broke" in units["infra"]["error"]
    assert units["infra"]["incomplete_files"] == ["infra/zz-large.bin"]
    assert units["tfstate"]["status"] == "ok" and result["status"] == "partial"
    ident = tmp_path / "id.txt"
    ident.write_text(age_keys[0])
    out = tmp_path / "restored"
    code, text = _cli(account.env, "config", "extract", "--to", str(out), "--identity", str(ident), capsys=capsys)
    assert code == 0, text
    assert "skipped 1 file" in text and "partial" in text
    assert (out / "tfstate/terraform.tfstate").read_bytes() == TFSTATE
    assert (out / "infra/README.md").exists() and not (out / "infra/zz-large.bin").exists()


# Peak RSS from VmHWM: getrusage's ru_maxrss survives exec and would report pytest's own size.
HUGE_RUNNER = r"""
import json, sys
sys.path.insert(0, sys.argv[1])
from drkit.functions import config_backup
from drkit.platform.runtime import handle
result = handle("config-backup", config_backup.run, {}, None, json.loads(sys.argv[2]))
hwm = [int(x.split()[1]) for x in open("/proc/self/status") if x.startswith("VmHWM:")][0]
print("RESULT " + json.dumps({"result": result, "maxrss_kb": hwm}))
"""


def test_a_huge_repository_streams_through_in_bounded_memory(account: Account, s3_client: Any, bucket: str) -> None:
    size = 1 << 30  # 1 GiB in one file, chunked from the server without a Content-Length
    account.web.repos["acme/infra"].files["releases/odoo-addons.bin"] = Generated(size, b"\0")
    account.with_sources([{"type": "github", "name": "infra", "repo": "acme/infra", "api_url": account.web.url}])
    env = {k: v for k, v in account.env.items()} | {"PATH": os.environ.get("PATH", "")}
    proc = subprocess.run([sys.executable, "-c", HUGE_RUNNER, str(ROOT / "lib"), json.dumps(env)],
                          capture_output=True, text=True, timeout=300, env=env)
    line = [x for x in proc.stdout.splitlines() if x.startswith("RESULT ")]
    assert line, proc.stdout[-2000:] + proc.stderr[-2000:]
    out = json.loads(line[0][7:])
    assert out["result"]["ok"], out["result"]
    m = _manifest(s3_client, bucket, out["result"])
    big = next(f for f in m["files"] if f["path"] == "infra/releases/odoo-addons.bin")
    assert big["size"] == size and big["sha256"] == hashlib.sha256(bytes(size)).hexdigest()
    assert m["bytes_in"] > size
    peak_mb = out["maxrss_kb"] / 1024
    print(f"peak RSS {peak_mb:.0f} MB while streaming a {size >> 20} MiB file")
    assert peak_mb < 200, f"peak RSS {peak_mb:.0f} MB for a {size >> 20} MiB file: something buffered it"


def test_retention_keeps_90_days_and_the_last_success_of_every_source(account: Account, s3_client: Any,
                                                                       bucket: str) -> None:
    now = dt.datetime.now(dt.UTC)
    account.with_sources([{"type": "http", "name": "rules", "url": f"{account.web.url}/files/rules.yml"},
                          {"type": "grafana", "name": "grafana", "url": account.web.url}])

    def run_at(days_ago: int) -> dict[str, Any]:
        return config_backup.run({}, account.env, Deadline(None),
                                 clock=lambda: now - dt.timedelta(days=days_ago))

    old_ok = run_at(200)  # the last time grafana worked
    assert old_ok["status"] == "ok"
    account.web.grafana_token = "glsa_rotated"
    mid = run_at(150)
    assert mid["status"] == "partial"
    recent = run_at(1)
    assert recent["status"] == "partial"
    ids = {e for e in keys(s3_client, bucket, "config/")}
    assert any(old_ok["backup_id"] in k for k in ids), "the newest archive with grafana must stay"
    assert not any(mid["backup_id"] in k for k in ids), "older than 90 days and nothing needs it"
    assert recent["retention"]["deleted"] == [mid["backup_id"]]
    assert recent["retention"]["kept"] == 2
    assert ids == {k for k in ids if old_ok["backup_id"] in k or recent["backup_id"] in k}


def test_dry_run_changes_nothing(account: Account, s3_client: Any, bucket: str) -> None:
    result = account.run(dry_run="true")
    assert result["status"] == "dry_run" and "would collect 14 unit(s)" in result["decision"]
    assert keys(s3_client, bucket) == [] and account.fake.requests == [] and account.web.requests == []


def test_unknown_parameter_or_source_is_refused(account: Account, s3_client: Any, bucket: str) -> None:
    assert account.run(source="nope")["status"] == "invalid_config"
    assert account.run(prnue="false")["status"] == "invalid_config"
    assert keys(s3_client, bucket) == []


def test_tar_members_are_in_the_manifest_in_order(account: Account, s3_client: Any, bucket: str,
                                                  age_keys: tuple[str, str]) -> None:
    """The archive holds exactly the manifest's files (standard tar listing through age)."""
    import io

    import pyrage
    import zstandard
    from pyrage import x25519

    result = account.run(source="infra,prometheus")
    data = s3_client.get_object(Bucket=bucket, Key=result["key"])["Body"].read()
    plain = pyrage.decrypt(data, [x25519.Identity.from_str(age_keys[0])])
    tar_bytes = zstandard.ZstdDecompressor().decompressobj().decompress(plain)
    with tarfile.open(fileobj=io.BytesIO(tar_bytes)) as tar:
        names = tar.getnames()
    m = _manifest(s3_client, bucket, result)
    assert names == [f["path"] for f in m["files"]]
    assert m["bytes_in"] == len(tar_bytes)


def test_config_check_shows_the_sources_and_refuses_bad_ones(account: Account, age_keys: tuple[str, str],
                                                             capsys: pytest.CaptureFixture[str]) -> None:
    env = dict(account.env, DRKIT_DATABASES="odoo", DRKIT_DB_ODOO_URL="postgresql://u@db.example.net/odoo",
               DRKIT_STAGING_URL="postgresql://u@db.example.net/postgres", DRKIT_AGE_IDENTITY=age_keys[0],
               DRKIT_FUNCTIONS_KEY="dof_v1_key:secret-0123456789abcdef")
    code, text = _cli(env, "config", "check", capsys=capsys)
    assert code == 0, text
    assert "dr/config-backup: ok" in text
    assert "acme/infra@main" in text and "DRKIT_GITHUB_TOKEN" in text and "s3://" in text
    assert account.web.github_token not in text
    env["DRKIT_CONFIG_SOURCES"] = json.dumps([{"type": "grafana", "name": "g", "url": "http://grafana.example.net"}])
    code, text = _cli(env, "config", "check", capsys=capsys)
    assert code == 2 and "dr/config-backup: " in text and "url must be the https:// base URL of Grafana" in text


def test_health_probe_watches_config_backup_freshness_and_failures(account: Account) -> None:
    from drkit.functions import health_probe

    env = dict(account.env, DRKIT_CONFIG_MAX_AGE="26h", DRKIT_PROBES="[]")
    first = handle("health-probe", health_probe.run, {}, None, env)
    found = {t["name"]: t for t in first["targets"]}
    assert not found["config-age"]["ok"] and "no complete config backup" in found["config-age"]["detail"]
    account.run(source="infra")
    found = {t["name"]: t for t in handle("health-probe", health_probe.run, {}, None, env)["targets"]}
    assert found["config-age"]["ok"] and found["config-failures"]["ok"]
    account.web.github_token = "ghp_rotated"  # the next run fails: nothing stored, and health-probe says so
    account.run(source="infra")
    found = {t["name"]: t for t in handle("health-probe", health_probe.run, {}, None, env)["targets"]}
    assert found["config-age"]["ok"] and not found["config-failures"]["ok"]
    assert "last config backup failed: every source failed" in found["config-failures"]["detail"]


def test_a_planted_baseline_hides_no_drift_and_a_deleted_newest_backup_is_seen(account: Account, s3_client: Any,
                                                                              bucket: str, age_keys: tuple[str, str],
                                                                              tmp_path: Path,
                                                                              capsys: pytest.CaptureFixture[str]) -> None:
    """An attacker with the bucket key hijacks a DNS record and plants a config manifest that already shows the
    hijacked value, newer than the genuine one: drift is still computed against config-backup's own manifest."""
    from drkit.functions import health_probe

    first = account.run(source="digitalocean")
    assert first["ok"]
    genuine = _manifest(s3_client, bucket, first)
    erp = next(r for r in account.fake.records["example.net"] if r["name"] == "erp")
    erp["data"] = "192.0.2.66"  # the hijack
    planted_id = layout.new_id(dt.datetime.now(dt.UTC))
    base = layout.config_base(planted_id)
    forged = json.loads(json.dumps(genuine).replace("203.0.113.10", "192.0.2.66")) | {
        "id": planted_id, "key": base + layout.CONFIG_DATA_SUFFIX}
    s3_client.put_object(Bucket=bucket, Key=base + layout.CONFIG_DATA_SUFFIX, Body=b"x")
    s3_client.put_object(Bucket=bucket, Key=base + layout.MANIFEST_SUFFIX, Body=json.dumps(forged).encode())
    time.sleep(1.1)
    second = account.run(source="digitalocean")
    assert "A erp.example.net 203.0.113.10 → 192.0.2.66" in second["drift"]["dns"], second["drift"]
    assert "1 UNTRUSTED" in second["decision"]
    # deleting the newest genuine config backup: seen, and `latest` will not quietly use the one before
    for k in keys(s3_client, bucket, "config/"):
        if second["backup_id"] in k:
            s3_client.delete_object(Bucket=bucket, Key=k)
    env = dict(account.env, DRKIT_PROBES="[]", DRKIT_CONFIG_MAX_AGE="26h")
    found = {t["name"]: t for t in handle("health-probe", health_probe.run, {}, None, env)["targets"]}
    assert not found["catalog:config"]["ok"] and second["backup_id"] in found["catalog:config"]["detail"]
    ident = tmp_path / "id.txt"
    ident.write_text(age_keys[0] + "\n")
    code, text = _cli(account.env, "config", "extract", "--backup", "latest", "--to", str(tmp_path / "out"),
                      "--identity", str(ident), capsys=capsys)
    assert code == 1 and second["backup_id"] in text and "missing" in text
