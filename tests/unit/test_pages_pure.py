"""The status page, the DR testing schedule and the charts, without servers."""

from __future__ import annotations

import datetime as dt
import json

import pytest

from drkit.core.errors import ConfigError
from drkit.health.statuspage import PageConfig, build, render_html, service_status
from drkit.policy.durations import human
from drkit.reporting import charts, testing

T = dt.datetime(2026, 11, 30, 12, tzinfo=dt.UTC)
CONFIG = json.dumps({"title": "Acme status", "private": ["erp.internal", "10.0.0.5"],
                     "services": [{"name": "Shop", "targets": ["shop"]},
                                  {"name": "ERP", "targets": ["erp-http", "erp-tls"], "show_detail": True}]})


def state(status: str = "healthy", failures: int = 0, since: str = "2026-11-30T10:00:00+00:00",
          detail: str = "ok") -> dict[str, object]:
    return {"status": status, "failures": failures, "successes": 0, "since": since, "warning": None,
            "last": {"ok": failures == 0, "detail": detail}}


def test_config_is_strict_and_says_every_problem() -> None:
    assert PageConfig.parse("") is None and PageConfig.parse("unset") is None
    with pytest.raises(ConfigError) as bad:
        PageConfig.parse(json.dumps({"titel": "x", "services": [{"name": "", "targets": []}, "x"], "private": ["ab"]}))
    text = " ".join(bad.value.problems)
    assert "unknown key(s) titel" in text and "name must be a non-empty" in text and "must be an object" in text
    assert "private must be a list of strings (3+" in text
    with pytest.raises(ConfigError, match="not JSON"):
        PageConfig.parse("{")


def test_service_status_from_target_states() -> None:
    page = PageConfig.parse(CONFIG)
    assert page is not None
    shop, erp = page.services
    assert service_status(shop, {}) == ("unknown", None, None)
    assert service_status(shop, {"shop": state()})[0] == "operational"
    assert service_status(shop, {"shop": state(failures=1)})[0] == "degraded"  # one failure: shaky, not down yet
    assert service_status(shop, {"shop": state("unhealthy", 3, "2026-11-30T11:00:00+00:00")})[:2] == \
        ("down", "2026-11-30T11:00:00+00:00")
    both = {"erp-http": state("unhealthy", 3), "erp-tls": state()}
    assert service_status(erp, both)[0] == "degraded"  # one of two targets down
    assert service_status(erp, {k: state("unhealthy", 3) for k in ("erp-http", "erp-tls")})[0] == "down"


def test_the_public_document_hides_internals_and_escapes() -> None:
    page = PageConfig.parse(CONFIG)
    assert page is not None
    states = {"shop": state("unhealthy", 3, detail="connect to 10.0.0.5:443 refused"),
              "erp-http": state("unhealthy", 3, detail="GET https://erp.internal/health: 502"), "erp-tls": state()}
    notices = [{"id": "n1", "title": "<b>Orders</b> delayed", "message": "we are on it", "severity": "minor",
                "posted_at": "2026-11-30T11:00:00+00:00", "resolved_at": None},
               {"id": "n0", "title": "old", "message": "", "severity": "info", "posted_at": "2026-11-01T11:00:00+00:00",
                "resolved_at": "2026-11-02T11:00:00+00:00"}]
    doc = build(page, states, notices, T, None)
    assert doc["status"] == "down" and [n["id"] for n in doc["notices"]] == ["n1"]  # resolved 4 weeks ago: gone
    assert "detail" not in doc["services"][0]  # Shop does not show details
    assert doc["services"][1]["detail"] == "GET https://[private]/health: 502"  # ERP does, redacted
    html = render_html(doc)
    assert "&lt;b&gt;Orders&lt;/b&gt;" in html and "<b>Orders" not in html
    assert "10.0.0.5" not in html and "erp.internal" not in html and "<script" not in html
    with pytest.raises(ConfigError, match="private"):
        page.check_notice("The ERP at ERP.INTERNAL is slow")


def test_dr_testing_schedule_from_evidence() -> None:
    dbs = [{"name": "app", "verify_state": {"last_run": {"at": "2026-11-20T03:17:00+00:00", "status": "passed",
                                                         "backup_id": "b1", "duration_s": 640.0}}},
           {"name": "crm", "verify_state": {}}]

    def ev(action: str, at: str, **details: object) -> dict[str, object]:
        return {"action": action, "at": at, "function": "cli", "details": details}

    rows = {r["test"]: r for r in testing.schedule(dbs, [], T)}
    assert rows["Restore proof: app"]["overdue"] and rows["Restore proof: app"]["result"] == "passed"  # 10 days
    assert rows["Restore proof: crm"]["result"] == "never" and rows["Restore proof: crm"]["overdue"]
    assert "restore 11 min" in rows["Restore proof: app"]["evidence"]
    assert rows["Failover rehearsal"]["result"] == "never" and rows["Full DR drill"]["overdue"]
    events = [ev("restore.completed", "2026-06-01T10:00:00+00:00", database="app"),
              ev("failover.drill", "2026-06-03T10:00:00+00:00", outcome="dry_run", who="ops"),
              ev("failover.drill", "2026-10-01T10:00:00+00:00", outcome="refused", who="ops")]
    rows = {r["test"]: r for r in testing.schedule(dbs, events, T)}
    assert rows["Full DR drill"]["last"] == "2026-06-03T10:00:00+00:00" and not rows["Full DR drill"]["overdue"]
    assert rows["Failover rehearsal"]["failed"] and rows["Failover rehearsal"]["result"] == "refused"
    far = [ev("restore.completed", "2026-06-01T10:00:00+00:00", database="app"),
           ev("failover.drill", "2026-06-20T10:00:00+00:00", outcome="dry_run")]  # 19 days apart: not one drill
    assert {r["test"]: r for r in testing.schedule(dbs, far, T)}["Full DR drill"]["result"] == "never"


def test_age_series_and_the_limit_line() -> None:
    times = [T - dt.timedelta(hours=h) for h in (10, 9, 2)]
    ages = charts.age_series(times, T - dt.timedelta(hours=11), T, dt.timedelta(hours=1))
    assert [round(a / 3600) for _, a in ages] == [0, 0, 1, 2, 3, 4, 5, 6, 0, 1, 2]  # none before the first backup
    svg = charts.line_chart("age", [charts.Series("age", ages)], T - dt.timedelta(hours=11), T, limit=3 * 3600,
                            limit_label="RPO", chart_id="x")
    assert svg.count('class="series over"') == 1 and 'class="limit"' in svg and "RPO 3.0 h" in svg
    assert "<script" not in svg and 'id="x"' in svg
    empty = charts.line_chart("none", [charts.Series("s", [])], T - dt.timedelta(days=1), T)
    assert "no data in this period" in empty
    assert human(0.4) == "0.4 s" and human(4500) == "75 min" and charts.size(10_700_000) == "10.7 MB"


@pytest.mark.parametrize("severity,failover,status,summary", [
    ("major", None, "down", "Major outage"), ("minor", None, "degraded", "Degraded service"),
    ("info", None, "operational", "All systems operational"),
    (None, "dr", "degraded", "Running on our disaster-recovery site"), ("major", "dr", "down", "Major outage")])
def test_the_banner_follows_open_notices_and_a_failover_not_only_the_probes(severity: str | None, failover: str | None,
                                                                           status: str, summary: str) -> None:
    page = PageConfig.parse(CONFIG)
    assert page is not None
    states = {"shop": state(), "erp-http": state(), "erp-tls": state()}  # every probe green
    notices = [{"id": "n1", "title": "Orders delayed", "message": "", "severity": severity,
                "posted_at": "2026-11-30T11:00:00+00:00", "resolved_at": None}] if severity else []
    doc = build(page, states, notices, T, None, failover)
    assert (doc["status"], doc["summary"]) == (status, summary)
    assert all(s["status"] == "operational" for s in doc["services"])  # the services say what the probes saw
    assert ("failover" in doc) == bool(failover) and summary in render_html(doc)
    resolved = [dict(n, resolved_at="2026-11-30T11:30:00+00:00") for n in notices]
    assert build(page, states, resolved, T, None)["summary"] == "All systems operational"
