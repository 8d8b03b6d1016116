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

def _label(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def prometheus_text(results: list[probe.Result], states: Mapping[str, Mapping[str, Any]], now: dt.datetime) -> str:
    lines = ["# HELP drkit_probe_success 1 if the target's last probe succeeded.", "# TYPE drkit_probe_success gauge"]
    for r in results:
        lines.append(f'drkit_probe_success{{target="{_label(r.name)}",type="{r.type}"}} {int(r.ok)}')
    lines += ["# HELP drkit_probe_healthy 1 if the target is healthy after thresholds.", "# TYPE drkit_probe_healthy gauge"]
    for r in results:
        healthy = states.get(r.name, {}).get("status", "healthy") == "healthy"
        lines.append(f'drkit_probe_healthy{{target="{_label(r.name)}",type="{r.type}"}} {int(healthy)}')
    lines += ["# HELP drkit_probe_duration_seconds Time the probe took.", "# TYPE drkit_probe_duration_seconds gauge"]
    for r in results:
        if r.type not in ("backup", "verify"):
            lines.append(f'drkit_probe_duration_seconds{{target="{_label(r.name)}",type="{r.type}"}} {r.duration_s:.4f}')
    names = sorted({k for r in results for k in r.metrics})
    for metric in names:
        lines += [f"# TYPE drkit_{metric} gauge"]
        for r in results:
            if metric in r.metrics:
                lines.append(f'drkit_{metric}{{target="{_label(r.name)}",type="{r.type}"}} {r.metrics[metric]:g}')
    lines += ["# TYPE drkit_health_last_run_timestamp_seconds gauge",
              f"drkit_health_last_run_timestamp_seconds {now.timestamp():.0f}"]
    return "\n".join(lines) + "\n"
