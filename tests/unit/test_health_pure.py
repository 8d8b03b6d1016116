"""health-probe's pure parts: target parsing, hysteresis, Prometheus text."""

from __future__ import annotations

import datetime as dt
import json

import pytest

from drkit.core.errors import ConfigError
from drkit.health import probe
from drkit.health.status import advance, prometheus_text
from drkit.policy.durations import parse_interval

T0 = dt.datetime(2026, 11, 26, 3, 0, tzinfo=dt.UTC)
H = dt.timedelta(hours=1)


def run_sequence(outcomes: list[bool], fail: int = 3, succeed: int = 2) -> list[str | None]:
    state = None
    events = []
    for i, ok in enumerate(outcomes):
        state, event = advance(state, ok, None, fail, succeed, T0 + dt.timedelta(minutes=i), H)
        events.append(event)
    return events


def test_thresholds_and_transitions() -> None:
    assert run_sequence([True, False, False, True, False, False]) == [None] * 6  # never 3 failures in a row
    assert run_sequence([False, False, False, False]) == [None, None, "down", None]
    assert run_sequence([False] * 3 + [True, False, True, True]) == [None, None, "down", None, None, None, "recovered"]
    assert run_sequence([False], fail=1) == ["down"]


def test_reminder_while_down() -> None:
    state, event = advance(None, False, None, 1, 2, T0, H)
    assert event == "down"
    state, event = advance(state, False, None, 1, 2, T0 + dt.timedelta(minutes=30), H)
    assert event is None
    state, event = advance(state, False, None, 1, 2, T0 + dt.timedelta(minutes=61), H)
    assert event == "reminder" and state["alerted_at"] == (T0 + dt.timedelta(minutes=61)).isoformat()


def test_warning_alerts_once() -> None:
    state, event = advance(None, True, "expires in 10 days", 3, 2, T0, H)
    assert event == "warning"
    state, event = advance(state, True, "expires in 9 days", 3, 2, T0 + H, H)
    assert event is None
    state, event = advance(state, True, None, 3, 2, T0 + 2 * H, H)
    state, event = advance(state, True, "expires in 8 days", 3, 2, T0 + 3 * H, H)
    assert event == "warning"


@pytest.mark.parametrize("targets, message", [
    ([{"name": "a", "type": "http", "url": "https://x.example", "status_code": 200}], "unknown key 'status_code'"),
    ([{"name": "a", "type": "http", "url": "ftp://x.example"}], "http:// or https://"),
    ([{"name": "a", "type": "http", "url": "https://"}], "with a host"),
    ([{"name": "a", "type": "tcp", "host": "db", "port": 5432, "timeout_s": -1}], "timeout_s must be a number"),
    # health-probe itself runs at most 55 s: a probe may not wait 60 (every run would be killed)
    ([{"name": "a", "type": "tcp", "host": "db", "port": 5432, "timeout_s": 60}], "timeout_s must be a number .* 20"),
    ([{"name": "a", "type": "tcp", "host": "db"}], "needs a port"),
    ([{"name": "a", "type": "icmp", "host": "db"}], "type must be one of"),
    ([{"name": "a b", "type": "tcp", "host": "db", "port": 1}], "name must be"),
    ([{"name": "a", "type": "tls", "host": "x", "warn_days": 5, "fail_days": 10}], "fail_days must not exceed"),
    ([{"name": "a", "type": "http", "url": "https://x", "json_path": "status"}], "go together"),
    ([{"name": "a", "type": "http", "url": "https://x", "status": [200, 999]}], "codes 100-599"),
    ([{"name": "a", "type": "tcp", "host": "x", "port": 1}, {"name": "a", "type": "tcp", "host": "y", "port": 2}],
     "used twice"),
])
def test_hostile_targets_are_refused(targets: list[dict[str, object]], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        probe.parse_targets(json.dumps(targets))


def test_all_problems_at_once_and_defaults() -> None:
    with pytest.raises(ConfigError) as info:
        probe.parse_targets(json.dumps([{"name": "a", "type": "tcp", "host": "x"},
                                        {"name": "b", "type": "http", "url": "nope"}]))
    assert len(info.value.problems) == 2
    (t,) = probe.parse_targets('[{"name": "web", "type": "http", "url": "https://erp.example.com/health"}]')
    assert (t.timeout_s, t.failure_threshold, t.success_threshold, t.status) == (5.0, 3, 2, (200,))


def test_prometheus_text_escapes_and_types() -> None:
    results = [probe.Result('odd"name', "http", True, "ok", 0.05,
                            metrics={"http_status_code": 200.0, "response_ms": 250.0}),
               probe.Result("tls", "tls", True, "ok", 0.05, metrics={"tls_days_left": 30.0, "tls_not_after": 1.8e9}),
               probe.Result("backup-age:odoo", "backup", False, "old", 0.0, metrics={"backup_age_seconds": 9000.0}),
               probe.Result("schedule:db-backup/odoo", "schedule", True, "ok", 0.0,
                            metrics={"schedule_failures_in_a_row": 0.0})]
    text = prometheus_text(results, {"backup-age:odoo": {"status": "unhealthy"}}, T0)
    assert 'drkit_probe_success{target="odd\\"name",type="http"} 1' in text
    # what a data-protection result is about is a label of its own: alert rules group by it
    assert 'drkit_probe_healthy{target="backup-age:odoo",type="backup",database="odoo"} 0' in text
    assert 'drkit_backup_age_seconds{target="backup-age:odoo",type="backup",database="odoo"} 9000' in text
    assert 'drkit_schedule_failures_in_a_row{target="schedule:db-backup/odoo",type="schedule",job="db-backup/odoo"} 0' \
        in text
    # base units for Prometheus: seconds and timestamps, not milliseconds or days
    assert 'drkit_http_response_seconds{target="odd\\"name",type="http"} 0.25' in text
    assert 'drkit_tls_cert_not_after_timestamp_seconds{target="tls",type="tls"} 1.8e+09' in text
    assert "days_left" not in text and "_ms" not in text
    assert "# TYPE drkit_http_status_code gauge" in text and text.endswith("\n")
    assert all(f"# HELP {n} " in text for n in {ln.split(" ")[2] for ln in text.splitlines()
                                                   if ln.startswith("# TYPE")}), "every family has help"
    assert "drkit_probe_duration_seconds{target=\"backup-age" not in text


def test_parse_interval() -> None:
    assert parse_interval("75m", "X") == dt.timedelta(minutes=75)
    assert parse_interval("8d", "X") == dt.timedelta(days=8)
    for bad in ("", "0m", "1w", "soon"):
        with pytest.raises(ConfigError, match="X must be a duration"):
            parse_interval(bad, "X")


def test_plain_http_targets_must_be_asked_for() -> None:
    import pytest

    from drkit.core.errors import ConfigError
    from drkit.health import probe

    with pytest.raises((ConfigError, ValueError), match="plain http://"):
        probe.parse_targets('[{"name": "erp", "type": "http", "url": "http://erp.example.com/"}]')
    (t,) = probe.parse_targets('[{"name": "erp", "type": "http", "url": "http://erp.example.com/", "plain_http": true}]')
    assert t.url == "http://erp.example.com/"
    (t,) = probe.parse_targets('[{"name": "local", "type": "http", "url": "http://127.0.0.1:8080/"}]')  # this machine


def test_the_probes_together_must_fit_the_runs_budget() -> None:
    many = [{"name": f"t{i}", "type": "tcp", "host": "db", "port": 1, "timeout_s": 20} for i in range(200)]
    assert "may take 40 s" in " ".join(probe.check_budget(probe.parse_targets(json.dumps(many))))
    assert probe.check_budget(probe.parse_targets(json.dumps(many[:128]))) == []


def test_a_probe_that_trickles_past_the_budget_fails_only_itself() -> None:
    import socket
    import threading
    import time

    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(5)
    port = server.getsockname()[1]

    def trickle() -> None:
        conn, _ = server.accept()
        conn.recv(1024)
        for _ in range(40):  # a byte every 0.2 s: each read is inside the timeout, the answer never ends
            conn.send(b"H")
            time.sleep(0.2)
        conn.close()

    threading.Thread(target=trickle, daemon=True).start()
    (t,) = probe.parse_targets(json.dumps([{"name": "slow", "type": "http", "url": f"http://127.0.0.1:{port}/",
                                            "timeout_s": 1}]))
    t0 = time.monotonic()
    (r,) = probe.run_all([t], budget_s=1.5)
    assert time.monotonic() - t0 < 3 and not r.ok and "probe budget" in r.detail
    server.close()
