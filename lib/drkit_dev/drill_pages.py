"""The drill's last step: the public status page and the DR report from the drill's own records, in a browser.

Writes build/drill/status/index.html (+ status.json), build/drill/dr-report.html and, where
Chromium is installed, a screenshot of each (build/drill/*.png).
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import boto3

from drkit.functions import health_probe, report
from drkit.health.publish import PUBLIC_HTML, PUBLIC_JSON
from drkit.platform.runtime import handle

from . import browser

OUT = Path(__file__).resolve().parents[2] / "build" / "drill"
# what the drill's own stand-ins make the DR report say: both buckets on one local S3 server (a real copy is in
# another region), the compressed day's injected failure, no full DR drill on record (this rehearsal is not one)
EXPECTED = ("off-site copy: at the same endpoint as the primary", "config backup: the last run failed", "Full DR drill")


def pages_step(drill: Any, env: dict[str, str], context: Any) -> None:
    t = time.monotonic()
    private = ["127.0.0.1", "erp-web", "erp-db"]
    e = dict(env, DRKIT_STATUS_PAGE=json.dumps({
        "title": "Example Co status", "private": private,
        "services": [{"name": "ERP", "targets": ["erp-web", "erp-db"]}]}))
    probed = handle("health-probe", health_probe.run, {}, context, e)
    made = handle("report", report.run, {}, context, e)
    s3 = boto3.client("s3", endpoint_url=env["DRKIT_SPACES_ENDPOINT"], aws_access_key_id=env["DRKIT_SPACES_KEY"],
                      aws_secret_access_key=env["DRKIT_SPACES_SECRET"], region_name="us-east-1")
    bucket = env["DRKIT_SPACES_BUCKET"]
    (OUT / "status").mkdir(parents=True, exist_ok=True)
    for key, name in ((PUBLIC_HTML, "status/index.html"), (PUBLIC_JSON, "status/status.json"),
                      ("reports/latest.html", "dr-report.html")):
        (OUT / name).write_bytes(s3.get_object(Bucket=bucket, Key=key)["Body"].read())
    public = (OUT / "status/index.html").read_text() + (OUT / "status/status.json").read_text()
    leaked = [p for p in private if p in public]
    report_html = (OUT / "dr-report.html").read_text()
    ok = bool(probed["ok"] and made["ok"]) and not leaked and report_html.count("<svg") >= 4
    shots = ""
    if browser.available():
        page = browser.visit(OUT / "status", "index.html", OUT / "status-page.png", (390, 844))
        desk = browser.visit(OUT, "dr-report.html", OUT / "dr-report.png", (1280, 3200))
        clean = not page.console and not desk.console and not page.foreign(_origin(page)) and \
            not desk.foreign(_origin(desk))
        ok = ok and clean
        shots = f"; screenshots {OUT / 'status-page.png'}, {OUT / 'dr-report.png'}" + ("" if clean else
                                                                                         " (OUTSIDE LOADS/ERRORS)")
    else:
        shots = "; no screenshots (chromium not installed)"
    status = probed.get("status_page") or {}
    findings = [str(f) for f in made.get("findings") or []]
    unexpected = [f for f in findings if not f.startswith(EXPECTED)]
    drill.facts["report findings"] = (
        f"{len(findings) - len(unexpected)} expected from the stand-ins themselves (both buckets on one local S3 "
        "server; the config-backup failure the compressed day injects; no full DR drill on record)"
        + (f"; UNEXPECTED: {'; '.join(unexpected)}" if unexpected else "; no other finding"))
    ok = ok and not unexpected
    drill.facts["status page + DR report"] = (
        f"public page: {status.get('summary')} (no private strings: {not leaked}); report: "
        f"{made.get('decision', made.get('error'))}; files in {OUT}{shots}")
    drill.step("pages", ok, drill.facts["status page + DR report"], time.monotonic() - t)


def _origin(visit: browser.Visit) -> str:
    return next((u.rsplit("/", 1)[0] for u in visit.requests if u.endswith(".html")), "http://127.0.0.1")
