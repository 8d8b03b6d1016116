"""Issue 16: the public status page, the DR report, the metrics endpoint and the Prometheus rules.

Real parts: drkit's functions on the local stand-ins make every record (tests/support/evidence.py);
promtool (Debian's prometheus package) checks the metrics text and runs the alert rule tests.
"""

from __future__ import annotations

import datetime as dt
import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from conftest import ROOT, keys
from drkit.cli import main as cli
from drkit.functions import report
from drkit.health import status as health_status
from drkit.health.publish import PUBLIC_HTML, PUBLIC_JSON
from drkit.platform.runtime import handle_web
from drkit_dev.pgserver import PgServer
from support import evidence
from support.records import content

PROMTOOL = shutil.which("promtool")
needs_promtool = pytest.mark.skipif(PROMTOOL is None, reason="promtool not installed (Debian package prometheus; "
                                                             "./scripts/test installs it when run as root)")
ALL_USERS = "http://acs.amazonaws.com/groups/global/AllUsers"


def public(s3_client: Any, bucket: str, key: str) -> bool:
    grants = s3_client.get_object_acl(Bucket=bucket, Key=key)["Grants"]
    return any(g["Grantee"].get("URI") == ALL_USERS and g["Permission"] == "READ" for g in grants)


def page(s3_client: Any, bucket: str) -> tuple[dict[str, Any], str]:
    doc = json.loads(s3_client.get_object(Bucket=bucket, Key=PUBLIC_JSON)["Body"].read())
    html = s3_client.get_object(Bucket=bucket, Key=PUBLIC_HTML)["Body"].read().decode()
    return doc, html


def test_status_page_follows_the_probes_within_one_cycle(account: evidence.Account, s3_client: Any,
                                                          bucket: str) -> None:
    evidence.probes(account, 1)
    doc, html = page(s3_client, bucket)
    assert doc["status"] == "operational" and [s["status"] for s in doc["services"]] == ["operational"] * 2
    assert "All systems operational" in html and 'name="viewport"' in html and "<script" not in html
    # the public pair is the only public thing in the bucket
    assert public(s3_client, bucket, PUBLIC_JSON) and public(s3_client, bucket, PUBLIC_HTML)
    private = [k for k in keys(s3_client, bucket) if not k.startswith("public/")]
    assert private and not any(public(s3_client, bucket, k) for k in private)

    account.behaviour.health_status = 503  # shop and the ERP's HTTP check fail; the ERP's TCP port answers
    evidence.probes(account, 1)
    doc, _ = page(s3_client, bucket)
    # the very next run shows it: degraded at the first failure, before the alert threshold
    assert [(s["name"], s["status"]) for s in doc["services"]] == [("Shop", "degraded"), ("Back office", "degraded")]
    evidence.probes(account, 2)  # third failure in a row: unhealthy
    doc, html = page(s3_client, bucket)
    assert [(s["name"], s["status"]) for s in doc["services"]] == [("Shop", "down"), ("Back office", "degraded")]
    assert doc["summary"] == "Some systems are down" and "Down" in html and doc["services"][0]["since"]
    # no internal detail: targets, hosts, addresses, error texts
    for text in (json.dumps(doc), html):
        for secret in (*evidence.PRIVATE, "shop-http", "erp-tcp", "503", "/health"):
            assert secret not in text, secret
    account.behaviour.health_status = 200
    evidence.probes(account, 2)
    assert page(s3_client, bucket)[0]["status"] == "operational"


def test_a_failover_posts_a_notice_and_a_failback_resolves_it(account: evidence.Account, s3_client: Any,
                                                              bucket: str) -> None:
    evidence.failover(account, "drill")  # a rehearsal changes nothing public
    evidence.probes(account, 1)
    assert page(s3_client, bucket)[0]["notices"] == []
    moved = evidence.failover(account, "failover")
    assert moved["status"] == "applied"
    evidence.probes(account, 1)
    doc, html = page(s3_client, bucket)
    (notice,) = doc["notices"]
    assert notice["title"] == "Service moved to our disaster-recovery site" and notice["resolved_at"] is None
    assert "Ongoing" in html and "disaster-recovery site" in html and "198.51.100.20" not in html
    evidence.failover(account, "failback")
    evidence.probes(account, 1)
    (notice,) = page(s3_client, bucket)[0]["notices"]
    assert notice["resolved_at"] and notice["resolution"].startswith("Back on the primary site at ")
    assert any("status.notice.posted" in k for k in keys(s3_client, bucket, "audit/"))


def run_cli(capsys: pytest.CaptureFixture[str], env_path: Path, *argv: str) -> tuple[int, str]:
    code = cli.main(["--env-file", str(env_path), *argv])
    out = capsys.readouterr()
    return code, out.out + out.err


def env_file(tmp_path: Path, env: dict[str, str]) -> Path:
    path = tmp_path / ".env"
    path.write_text("".join(f"{k}='{v}'\n" for k, v in env.items()))
    return path


def test_operators_post_and_resolve_notices(account: evidence.Account, s3_client: Any, bucket: str,
                                            tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = env_file(tmp_path, account.env)
    evidence.probes(account, 1)
    code, out = run_cli(capsys, path, "status", "post", "--title", "Orders are delayed",
                        "--message", "Payments work; confirmations arrive late.", "--severity", "minor")
    # every probe is green, but an open minor notice makes the banner say so (never "All systems operational")
    assert code == 0 and "posted notice" in out and "published: Degraded service" in out
    notice_id = re.search(r"posted notice (\S+);", out).group(1)  # type: ignore[union-attr]
    doc, html = page(s3_client, bucket)  # published at once, not a probe cycle later
    assert doc["notices"][0]["title"] == "Orders are delayed" and "Orders are delayed" in html
    # a notice that names something private is refused, and nothing changes
    code, out = run_cli(capsys, path, "status", "post", "--title", "DB at 10.20.30.40 is slow")
    assert code == 2 and "private" in out and len(page(s3_client, bucket)[0]["notices"]) == 1
    with pytest.raises(SystemExit) as refused:  # argparse: a usage error
        run_cli(capsys, path, "status", "post", "--title", "x", "--severity", "apocalyptic")
    assert refused.value.code == 2 and "invalid choice: 'apocalyptic'" in capsys.readouterr().err
    code, out = run_cli(capsys, path, "status", "resolve", notice_id, "--message", "Confirmations are sent again.")
    assert code == 0 and "resolved" in out and "published: All systems operational" in out
    assert page(s3_client, bucket)[0]["notices"][0]["resolution"] == "Confirmations are sent again."
    code, out = run_cli(capsys, path, "status", "resolve", notice_id)
    assert code == 2 and "already resolved" in out
    code, out = run_cli(capsys, path, "status", "show")
    assert code == 0 and notice_id in out and "Back office" in out and "operational" in out
    code, out = run_cli(capsys, path, "status", "show", "--json")
    assert code == 0 and json.loads(out)["notices"][0]["title"] == "Orders are delayed"


def test_the_dr_report_from_real_evidence(account: evidence.Account, pg: PgServer, dbname: str, s3_client: Any,
                                          bucket: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    now = dt.datetime.now(dt.UTC)
    evidence.backups_and_verification(account, pg, dbname, now)
    evidence.failover(account, "drill")
    now = dt.datetime.now(dt.UTC)  # the scheduled run comes after the evidence
    out_file = tmp_path / "report.html"
    code, out = run_cli(capsys, env_file(tmp_path, account.env), "report", "--out", str(out_file))
    assert code == 0, out
    html = out_file.read_text()
    assert out_file.stat().st_mode & 0o777 == 0o600
    assert html.count("<svg") >= 6 and 'id="age-app"' in html and 'id="restore-app"' in html
    assert "<script" not in html and "http://" not in html.replace("http://www.w3.org/2000/svg", "")
    # the 14-hour gap crosses the RPO: the age chart marks it, the summary does not (the newest backup is fresh)
    assert 'class="limit"' in html and "RPO 75 min" in html
    tests = re.search(r'<section id="dr-tests">(.*?)</section>', html, re.S).group(1)  # type: ignore[union-attr]
    assert "Restore proof: app" in tests and "passed" in tests
    assert "Failover rehearsal" in tests and "failover.drill by" in tests
    assert re.search(r"Full DR drill.*?never.*?overdue", tests, re.S), "no operator restore on record: overdue"
    assert "backups in period" in html and ">7<" in html  # 7 backups in 30 days
    # dr/report's scheduled run keeps it: latest, the month's copy, the evidence beside each
    result = report.run({}, account.env, deadline=None, clock=lambda: now)  # type: ignore[arg-type]
    assert result["ok"] and result["url"].startswith(account.env["DRKIT_SPACES_ENDPOINT"])
    stored = keys(s3_client, bucket, "reports/")
    month = f"reports/monthly/{now:%Y-%m}/dr-report"
    assert {"reports/latest.html", "reports/latest.json", f"{month}.html", f"{month}.json"} <= set(stored)
    assert not public(s3_client, bucket, "reports/latest.html")
    facts = content(s3_client, bucket, "reports/latest.json")
    assert [b["signature"] for b in facts["databases"][0]["backups"]] == ["trusted"] * 7


def test_untrusted_manifests_are_reported_not_believed(account: evidence.Account, pg: PgServer, dbname: str,
                                                       tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    evidence.backups_and_verification(account, pg, dbname, dt.datetime.now(dt.UTC))
    from drkit.crypto import signing

    other = dict(account.env, DRKIT_TRUSTED_KEYS=signing.generate()[1])
    out_file = tmp_path / "r.html"
    code, out = run_cli(capsys, env_file(tmp_path, other), "report", "--out", str(out_file))
    page = out_file.read_text()
    assert code == 0 and "Records not believed" in page and page.count("is not signed by a trusted key") >= 7
    assert "within its RPO" not in page  # none of them counts as a backup


def web_get(env: dict[str, str], headers: dict[str, str], method: str = "get") -> dict[str, Any]:
    event = {"__ow_method": method, "__ow_path": "/metrics", "__ow_headers": headers, "__ow_body": ""}
    return handle_web("report", report.run_web, report.run, event, None, env, methods=("GET", "HEAD"))


def test_metrics_endpoint_needs_its_bearer(account: evidence.Account) -> None:
    token = "prometheus-Scrape-0001"
    env = dict(account.env, DRKIT_METRICS_BEARER=token)
    assert web_get(env, {"authorization": f"Bearer {token}"})["statusCode"] == 503  # before health-probe's first run
    evidence.probes(account, 1)
    ok = web_get(env, {"authorization": f"Bearer {token}"})
    assert ok["statusCode"] == 200 and ok["headers"]["Content-Type"].startswith("text/plain; version=0.0.4")
    assert 'drkit_probe_healthy{target="shop-http",type="http"} 1' in ok["body"]
    for headers in ({}, {"authorization": "Bearer wrong-token-000000000"}, {"authorization": f"Basic {token}"}):
        refused = web_get(env, headers)
        assert refused["statusCode"] == 401 and token not in json.dumps(refused)
    assert web_get(env, {"authorization": f"Bearer {token}"}, "post")["statusCode"] == 405
    off = web_get(account.env, {"authorization": f"Bearer {token}"})
    assert off["statusCode"] == 503 and "DRKIT_METRICS_BEARER" in off["body"]["error"]


def metric_names(text: str) -> set[str]:
    return set(re.findall(r"\b(drkit_[a-z_]+)\b", text))


def test_rules_and_dashboard_use_only_exported_metrics() -> None:
    exported = {f"drkit_{n}" for n in health_status.HELP}
    rules = (ROOT / "deploy/prometheus/drkit-alerts.yml").read_text()
    dashboard = json.loads((ROOT / "deploy/grafana/drkit-dashboard.json").read_text())
    exprs = " ".join(t["expr"] for p in dashboard["panels"] for t in p["targets"])
    assert metric_names(rules) <= exported, metric_names(rules) - exported
    assert metric_names(exprs) <= exported, metric_names(exprs) - exported
    assert dashboard["__inputs"][0]["pluginId"] == "prometheus" and dashboard["uid"] == "drkit-dr"
    wanted = {"DrkitBackupOlderThanRPO", "DrkitVerificationOverdue", "DrkitRestoreSlowerThanRTO",
              "DrkitBackupFailing", "DrkitScheduledJobFailing", "DrkitConfigDrift", "DrkitSchedulerSilent"}
    assert wanted <= set(re.findall(r"alert: (\w+)", rules))


@needs_promtool
def test_promtool_rule_tests_cover_every_alert() -> None:
    rules = ROOT / "deploy/prometheus"
    check = subprocess.run([str(PROMTOOL), "check", "rules", "drkit-alerts.yml"], cwd=rules, capture_output=True,
                           text=True, timeout=60)
    assert check.returncode == 0, check.stdout + check.stderr
    run = subprocess.run([str(PROMTOOL), "test", "rules", "drkit-alerts.test.yml"], cwd=rules, capture_output=True,
                         text=True, timeout=120)
    assert run.returncode == 0 and "SUCCESS" in run.stdout, run.stdout + run.stderr
    tested = set(re.findall(r"alertname: (\w+)", (rules / "drkit-alerts.test.yml").read_text()))
    assert tested == set(re.findall(r"alert: (\w+)", (rules / "drkit-alerts.yml").read_text()))


@needs_promtool
def test_promtool_accepts_the_metrics_health_probe_writes(account: evidence.Account, pg: PgServer, dbname: str,
                                                          s3_client: Any, bucket: str) -> None:
    evidence.backups_and_verification(account, pg, dbname, dt.datetime.now(dt.UTC))
    account.env["DRKIT_CONFIG_MAX_AGE"] = "26h"
    evidence.probes(account, 1)
    text = content(s3_client, bucket, "status/health.prom")["text"].encode()
    lint = subprocess.run([str(PROMTOOL), "check", "metrics"], input=text, capture_output=True, timeout=60)
    assert lint.returncode == 0, (lint.stdout + lint.stderr).decode()
    for family in ("backup_age_seconds", "backup_rpo_seconds", "verify_age_seconds", "restore_duration_seconds",
                   "rto_seconds", "http_response_seconds", "tcp_connect_seconds", "health_last_run_timestamp_seconds"):
        assert f"# TYPE drkit_{family} gauge" in text.decode(), family
