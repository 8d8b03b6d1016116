"""Probe state over time (pure): consecutive failures and successes against thresholds, and the Prometheus text."""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from typing import Any

from drkit.health import probe

# -- hysteresis (pure) ----------------------------------------------------------------------

def advance(prev: Mapping[str, Any] | None, ok: bool, warning: str | None, failure_threshold: int,
            success_threshold: int, now: dt.datetime, reminder: dt.timedelta) -> tuple[dict[str, Any], str | None]:
    """Next state of one target, and the alert to send (down, recovered, reminder, warning) or None.

    A target starts healthy (no alert at deployment), turns unhealthy after
    `failure_threshold` failures in a row and healthy after `success_threshold`
    successes in a row.
    """
    s = dict(prev or {"status": "healthy", "failures": 0, "successes": 0, "since": now.isoformat(),
                      "alerted_at": None, "warning": None})
    if ok:
        s["successes"], s["failures"] = int(s["successes"]) + 1, 0
    else:
        s["failures"], s["successes"] = int(s["failures"]) + 1, 0
    event = None
    if s["status"] == "healthy" and s["failures"] >= failure_threshold:
        s["status"], s["since"], event = "unhealthy", now.isoformat(), "down"
    elif s["status"] == "unhealthy" and s["successes"] >= success_threshold:
        s["status"], s["since"], event = "healthy", now.isoformat(), "recovered"
    elif s["status"] == "unhealthy" and s.get("alerted_at") and \
            now - dt.datetime.fromisoformat(s["alerted_at"]) >= reminder:
        event = "reminder"
    if event is None and warning and not s.get("warning"):
        event = "warning"
    s["warning"] = warning
    if event:
        s["alerted_at"] = now.isoformat()
    return s, event


# -- outputs ---------------------------------------------------------------------------------

# Every metric health-probe exports, with its help text (a test holds the alert rules and the Grafana
# dashboard in deploy/ to these names; `promtool check metrics` lints the text).
HELP = {
    "probe_success": "1 if the target's last probe succeeded.",
    "probe_healthy": "1 if the target is healthy after the failure and success thresholds.",
    "probe_duration_seconds": "Time the last probe of the target took.",
    "backup_age_seconds": "Age of the newest complete backup of the database.",
    "backup_rpo_seconds": "The database's recovery point objective, grace included.",
    "backup_consecutive_failures": "Failed backup runs of the database since its last success.",
    "verify_age_seconds": "Time since the database's newest passed restore verification.",
    "verify_max_age_seconds": "How old the newest passed restore verification may be.",
    "restore_duration_seconds": "Duration of the database's last verified restore.",
    "rto_seconds": "The database's recovery time objective.",
    "config_backup_age_seconds": "Age of the newest complete config backup.",
    "config_backup_consecutive_failures": "Failed config backup runs since the last success.",
    "config_backup_failed_sources": "Sources that failed in the last config backup run.",
    "config_drift_changes": "Changes the last config backup found against the one before (DNS, firewalls, files).",
    "scheduler_last_tick_age_seconds": "Time since the scheduler's last tick.",
    "schedule_failures_in_a_row": "Failed runs of the scheduled job since its last success.",
    "schedule_overdue": "1 if the scheduled job has not succeeded within its window.",
    "health_last_run_timestamp_seconds": "Unix time of health-probe's last run.",
    "http_status_code": "HTTP status code of the target's last answer.",
    "http_response_seconds": "Time to the target's HTTP answer.",
    "tcp_connect_seconds": "Time to open a TCP connection to the target.",
    "tls_cert_not_after_timestamp_seconds": "Unix time the target's TLS certificate expires.",
}
# probe results carry operator units (ms, days); Prometheus gets base units (seconds, timestamps)
PROMETHEUS_NAME: dict[str, tuple[str, float] | None] = {
    "response_ms": ("http_response_seconds", 0.001), "connect_ms": ("tcp_connect_seconds", 0.001),
    "tls_not_after": ("tls_cert_not_after_timestamp_seconds", 1.0), "tls_days_left": None,  # = not_after - time()
}
SUBJECT_LABEL = {"backup": "database", "verify": "database", "schedule": "job"}


def _label(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _labels(r: probe.Result) -> str:
    """target and type, and the database or job a data-protection result is about (for alert rules)."""
    pairs = [("target", r.name), ("type", r.type)]
    kind, _, subject = r.name.partition(":")
    if subject and r.type in SUBJECT_LABEL:
        pairs.append((SUBJECT_LABEL[r.type], subject))
    return ",".join(f'{k}="{_label(v)}"' for k, v in pairs)


def _family(name: str) -> list[str]:
    return [f"# HELP drkit_{name} {HELP.get(name) or name.replace('_', ' ') + '.'}", f"# TYPE drkit_{name} gauge"]


def prometheus_text(results: list[probe.Result], states: Mapping[str, Mapping[str, Any]], now: dt.datetime) -> str:
    lines = _family("probe_success")
    lines += [f"drkit_probe_success{{{_labels(r)}}} {int(r.ok)}" for r in results]
    lines += _family("probe_healthy")
    for r in results:
        healthy = states.get(r.name, {}).get("status", "healthy") == "healthy"
        lines.append(f"drkit_probe_healthy{{{_labels(r)}}} {int(healthy)}")
    lines += _family("probe_duration_seconds")
    lines += [f"drkit_probe_duration_seconds{{{_labels(r)}}} {r.duration_s:.4f}" for r in results
              if r.type not in ("backup", "verify", "schedule")]
    families: dict[str, list[str]] = {}
    for r in results:
        for key, value in r.metrics.items():
            name, scale = PROMETHEUS_NAME.get(key, (key, 1.0)) or ("", 0.0)
            if name:
                families.setdefault(name, []).append(f"drkit_{name}{{{_labels(r)}}} {value * scale:g}")
    for name in sorted(families):
        lines += _family(name) + families[name]
    lines += _family("health_last_run_timestamp_seconds")
    lines.append(f"drkit_health_last_run_timestamp_seconds {now.timestamp():.0f}")
    return "\n".join(lines) + "\n"
