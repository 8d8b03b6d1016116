"""Issue 16: both pages, rendered from real evidence, opened in headless Chromium.

Screenshots go to build/artifacts/screenshots/ (CI keeps them). Checks: the charts and key numbers
are in the DOM, nothing is requested from anywhere but the page's own origin, the console is
clean, and the public page holds none of the configured private strings.
"""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Any

import pytest

from conftest import ROOT
from drkit.health.publish import PUBLIC_HTML, PUBLIC_JSON
from drkit.reporting import generate
from drkit_dev import browser
from drkit_dev.keys import store_of
from drkit_dev.pgserver import PgServer
from support import evidence

SHOTS = ROOT / "build" / "artifacts" / "screenshots"
pytestmark = pytest.mark.skipif(not browser.available(), reason="chromium not installed (Debian package chromium; "
                                                                  "./scripts/test installs it when run as root)")


def save(folder: Path, name: str, data: bytes) -> None:
    (folder / name).write_bytes(data)


def test_the_harness_catches_outside_loads_and_console_errors(tmp_path: Path) -> None:
    """A page that loads from elsewhere, and breaks its own CSP, must be caught (else the checks below prove nothing)."""
    (tmp_path / "bad.html").write_text(
        "<!doctype html><meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'\">"
        '<img src="http://203.0.113.9/pixel.png"><link rel="stylesheet" href="https://cdn.example.org/x.css">'
        "<p>bad</p>")
    v = browser.visit(tmp_path, "bad.html", tmp_path / "bad.png", (400, 300))
    assert any("violates" in c and "cdn.example.org" in c for c in v.console), v.console
    (tmp_path / "worse.html").write_text('<!doctype html><img src="http://203.0.113.9/pixel.png"><p>worse</p>')
    v = browser.visit(tmp_path, "worse.html", tmp_path / "worse.png", (400, 300))
    origin = next(u for u in v.requests if "worse.html" in u).rsplit("/", 1)[0]
    assert v.foreign(origin) == ["http://203.0.113.9/pixel.png"], v.requests


def test_status_page_and_report_in_chromium(account: evidence.Account, pg: PgServer, dbname: str, s3_client: Any,
                                            bucket: str, tmp_path: Path) -> None:
    now = dt.datetime.now(dt.UTC)
    evidence.backups_and_verification(account, pg, dbname, now)
    evidence.failover(account, "drill")
    evidence.probes(account, 1)
    account.behaviour.health_status = 503
    evidence.probes(account, 3)  # Shop down, Back office degraded
    evidence.failover(account, "failover")  # posts the public notice
    evidence.probes(account, 1)
    now = dt.datetime.now(dt.UTC)  # the report is made after the evidence
    site = tmp_path / "site"
    site.mkdir()
    for key, name in ((PUBLIC_HTML, "index.html"), (PUBLIC_JSON, "status.json")):
        save(site, name, s3_client.get_object(Bucket=bucket, Key=key)["Body"].read())
    store = store_of(account.env)
    problems: list[str] = []
    made = generate.make(store, generate.limits_from_env(account.env, problems), now, keep=False, function="test")
    (site / "report.html").write_text(made.html)

    phone = browser.visit(site, "index.html", SHOTS / "status-page-phone.png", (390, 844))
    origin = next(u for u in phone.requests if u.endswith("/index.html")).rsplit("/", 1)[0]
    assert phone.foreign(origin) == [] and phone.console == [], (phone.requests, phone.console)
    assert "Some systems are down" in phone.dom and "Service moved to our disaster-recovery site" in phone.dom
    assert "Shop" in phone.dom and "Back office" in phone.dom and "Degraded" in phone.dom
    public_text = phone.dom + (site / "status.json").read_text()
    for secret in (*evidence.PRIVATE, "shop-http", "erp-http", "erp-tcp", "203.0.113.10", "198.51.100.20", "app"):
        assert f'"{secret}"' not in public_text and f">{secret}<" not in public_text, secret
    assert not any(s in public_text for s in evidence.PRIVATE)

    desk = browser.visit(site, "report.html", SHOTS / "dr-report.png", (1280, 3600))
    origin = next(u for u in desk.requests if u.endswith("/report.html")).rsplit("/", 1)[0]
    assert desk.foreign(origin) == [] and desk.console == [], (desk.requests, desk.console)
    dom = desk.dom
    assert dom.count("<svg") >= 6 and 'id="age-app"' in dom and 'id="restore-app"' in dom and 'class="limit"' in dom
    assert "Disaster-recovery report" in dom and "DR testing schedule" in dom and "Restore proof: app" in dom
    assert "Failover rehearsal" in dom and "RPO" in dom and "RTO" in dom and "overdue" in dom
    # the move is the newest rehearsal on record; the history lists the drill before it
    assert "failover.applied by " in dom
    history = dom[dom.index('id="failovers"'):]
    assert history.index("<td>applied</td>") < history.index("<td>drill</td>")
    facts = made.evidence["databases"][0]
    assert len(facts["backups"]) == 7 and f">{len(facts['backups'])}<" in dom
    for shot in (phone.screenshot, desk.screenshot):
        assert shot.stat().st_size > 10_000, shot  # a real rendering, not a blank page
    json.dumps(made.evidence)  # the evidence kept beside the report is plain JSON
