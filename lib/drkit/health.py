"""health-probe: what users see (HTTP/TLS/DNS/TCP) and whether the data is protected right now.

Every run (every minute):
1. probes every configured target concurrently (drkit.probe);
2. adds the data-protection probes per database, from Spaces: newest complete
   backup against its RPO, newest passed restore verification against its
   maximum age, the last verified restore's duration against the RTO, and
   failed backup runs since the last success (the dead-man's switch);
3. applies hysteresis per target (pure `advance`): unhealthy after
   `failure_threshold` failures in a row (default 3), healthy after
   `success_threshold` successes (default 2), alerts on transitions only,
   with a reminder while a target stays down;
4. writes `state/health.json` (the counters), `status/health.json` and
   `status/health.prom` (Prometheus text format), notifies, and records a
   failover request for down targets marked `failover: true`.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from drkit import audit, catalog, layout, log, probe
from drkit.config import database_names, env_name, spaces_from_env
from drkit.deadline import Clock, Deadline, utcnow
from drkit.errors import ConfigError, DrkitError, StoreError
from drkit.notify import Notifier
from drkit.runtime import Params
from drkit.store import Store

FUNCTION = "health-probe"
STATE_KEY = "state/health.json"
STATUS_KEY = "status/health.json"
PROM_KEY = "status/health.prom"
_INTERVAL = re.compile(r"^(\d+)(s|m|h|d)$")

def parse_interval(text: str, where: str) -> dt.timedelta:
    """`90s`, `75m`, `4h`, `8d` (m = minutes here)."""
    m = _INTERVAL.match(text.strip())
    if not m or int(m.group(1)) == 0:
        raise ConfigError(f"{where} must be a duration like 90s, 75m, 4h or 8d, not {text!r}")
    return dt.timedelta(**{{"s": "seconds", "m": "minutes", "h": "hours", "d": "days"}[m.group(2)]: int(m.group(1))})


@dataclass(frozen=True)
class Protection:
    database: str
    rpo: dt.timedelta  # newest complete backup no older than this (RPO + grace)
    verify_max_age: dt.timedelta  # newest passed verification no older than this
    rto: dt.timedelta  # the last verified restore took at most this


@dataclass(frozen=True)
class Settings:
    targets: list[probe.Target]
    protections: list[Protection]
    reminder: dt.timedelta
    notifier: Notifier = field(default_factory=Notifier)
    config_max_age: dt.timedelta | None = None  # config-backup freshness (opt-in: it has no trigger of its own)

    @classmethod
    def from_env(cls, environ: Mapping[str, str]) -> Settings:
        problems: list[str] = []
        targets: list[probe.Target] = []
        try:
            targets = probe.parse_targets(environ.get("DRKIT_PROBES", ""))
        except ConfigError as exc:
            problems.extend(exc.problems)
        protections = []
        try:
            names = database_names(environ)
        except ConfigError as exc:
            problems.extend(exc.problems)
            names = []

        def interval(var: str, default: str) -> dt.timedelta:
            try:
                return parse_interval(environ.get(var, "").strip() or default, var)
            except ConfigError as exc:
                problems.extend(exc.problems)
                return parse_interval(default, var)

        # global defaults (RPO 1 h + 15 min grace; weekly verification + 1 day; RTO 4 h), per-database overrides
        defaults = {suffix: environ.get(f"DRKIT_{suffix}", "").strip() or text
                    for suffix, text in (("RPO", "75m"), ("VERIFY_MAX_AGE", "8d"), ("RTO", "4h"))}
        for suffix, text in defaults.items():
            interval(f"DRKIT_{suffix}", text)  # report a bad global value under its own name
        for name in names:
            protections.append(Protection(name, *(interval(env_name(name, suffix), text)
                                                  for suffix, text in defaults.items())))
        reminder = interval("DRKIT_ALERT_REMINDER", "1h")
        config_max_age = interval("DRKIT_CONFIG_MAX_AGE", "1d") if environ.get("DRKIT_CONFIG_MAX_AGE", "").strip() \
            else None
        notifier = Notifier.collect(environ, problems)
        if not targets and not protections and config_max_age is None and not problems:
            problems.append("nothing to probe: set DRKIT_PROBES (JSON list of targets) and/or DRKIT_DATABASES")
        if problems:
            raise ConfigError(problems)
        return cls(targets, protections, reminder, notifier, config_max_age)


# -- data protection ----------------------------------------------------------------------

def data_protection(store: Store, p: Protection, now: dt.datetime) -> list[probe.Result]:
    db = p.database
    out = []
    entries = [e for e in catalog.list_backups(store, db) if e.complete]
    if entries:
        age = now - entries[0].time
        ok = age <= p.rpo
        out.append(probe.Result(f"backup-age:{db}", "backup", ok,
                                f"newest backup {entries[0].id} is {_human(age)} old (RPO limit {_human(p.rpo)})",
                                0.0, metrics={"backup_age_seconds": age.total_seconds(),
                                              "backup_rpo_seconds": p.rpo.total_seconds()}))
    else:
        out.append(probe.Result(f"backup-age:{db}", "backup", False, "no complete backup in the bucket", 0.0,
                                metrics={"backup_rpo_seconds": p.rpo.total_seconds()}))
    state = store.get_json_or_none(layout.state_key(db)) or {}
    failures = int(state.get("consecutive_failures", 0))
    last = state.get("last_run") or {}
    out.append(probe.Result(f"backup-failures:{db}", "backup", failures == 0,
                            "last backup run succeeded" if failures == 0 else
                            f"{failures} failed backup run(s) since the last success; last error: {last.get('error')}",
                            0.0, metrics={"backup_consecutive_failures": float(failures)}))
    verify = store.get_json_or_none(layout.verify_state_key(db)) or {}
    passed = verify.get("last_success") or {}
    if passed.get("at"):
        vage = now - dt.datetime.fromisoformat(passed["at"])
        out.append(probe.Result(f"verify-age:{db}", "verify", vage <= p.verify_max_age,
                                f"last verified restore {_human(vage)} ago (limit {_human(p.verify_max_age)})", 0.0,
                                metrics={"verify_age_seconds": vage.total_seconds()}))
        duration = float(passed.get("duration_s") or 0.0)
        out.append(probe.Result(f"restore-duration:{db}", "verify", duration <= p.rto.total_seconds(),
                                f"last verified restore took {_human(dt.timedelta(seconds=duration))} "
                                f"(RTO {_human(p.rto)})", 0.0,
                                metrics={"restore_duration_seconds": duration, "rto_seconds": p.rto.total_seconds()}))
    else:
        out.append(probe.Result(f"verify-age:{db}", "verify", False, "no passed restore verification yet", 0.0))
    return out


def config_protection(store: Store, max_age: dt.timedelta, now: dt.datetime) -> list[probe.Result]:
    """config-backup: the newest complete archive is young enough, and the last run stored one."""
    from drkit import config_catalog

    entries = [e for e in config_catalog.list_entries(store) if e.complete]
    if entries:
        age = now - entries[0].time
        out = [probe.Result("config-age", "backup", age <= max_age,
                            f"newest config backup {entries[0].id} is {_human(age)} old (limit {_human(max_age)})", 0.0,
                            metrics={"config_backup_age_seconds": age.total_seconds()})]
    else:
        out = [probe.Result("config-age", "backup", False, "no complete config backup in the bucket", 0.0)]
    state = store.get_json_or_none(layout.CONFIG_STATE_KEY) or {}
    last = state.get("last_run") or {}
    failed_units = list(last.get("failed_units") or [])
    ok = int(state.get("consecutive_failures", 0)) == 0 and not failed_units
    detail = "last config backup run stored every source" if ok else (
        f"last config backup failed: {last.get('error')}" if last.get("status") == "failed"
        else f"last config backup was partial: {', '.join(failed_units)} failed")
    out.append(probe.Result("config-failures", "backup", ok, detail, 0.0))
    return out


def _human(d: dt.timedelta) -> str:
    s = d.total_seconds()
    if s < 120:
        return f"{s:.0f} s"
    if s < 7200:
        return f"{s / 60:.0f} min"
    if s < 172800:
        return f"{s / 3600:.1f} h"
    return f"{s / 86400:.1f} d"


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


def request_failover(store: Store, targets: list[str], now: dt.datetime, environ: Mapping[str, str],
                     deadline: Deadline) -> dict[str, Any]:
    """Called once when targets marked `failover: true` turn unhealthy (docs/health-probe.md).

    With DRKIT_AUTO_FAILOVER=true it runs dns-failover's logic in-process, as an
    automatic move with all its safety rules (flap guard, DR health check, one
    transition, no automatic failback). Otherwise it records the request only.
    """
    from drkit.runtime import TRUE

    audit.record(store, FUNCTION, "failover.requested", {"targets": targets, "at": now.isoformat()})
    if environ.get("DRKIT_AUTO_FAILOVER", "").strip().lower() not in TRUE:
        return {"requested_for": targets, "performed": False,
                "reason": "automatic failover is off (DRKIT_AUTO_FAILOVER); alerting or an operator moves traffic"}
    from drkit import dns_failover

    try:
        settings = dns_failover.Settings.from_env(environ, store)
        result = dns_failover.execute(store, settings, settings.api(deadline), "failover", settings.plan.dr,
                                      reason=f"health-probe: {', '.join(targets)} unhealthy", who=f"{FUNCTION}",
                                      automatic=True, force=False, dry_run=False, now=now)
    except DrkitError as exc:
        log.error("automatic failover could not run", error=str(exc))
        return {"requested_for": targets, "performed": False, "reason": f"dns-failover could not run: {exc}"}
    return {"requested_for": targets, "performed": result["outcome"] == "applied", "outcome": result["outcome"],
            "decision": result["sentence"]}


# -- the function ----------------------------------------------------------------------------

def run(params: Mapping[str, Any], environ: Mapping[str, str], deadline: Deadline, *,
        store: Store | None = None, clock: Clock = utcnow) -> dict[str, Any]:
    p = Params(params, known=("format",))
    fmt = p.string("format", "json")
    if fmt not in ("json", "prometheus"):
        p.problems.append(f"parameter 'format' must be json or prometheus, not {fmt!r}")
    p.finish()
    spaces = spaces_from_env(environ)
    settings = Settings.from_env(environ)
    store = store or Store(spaces)
    now = clock()
    results = probe.run_all(settings.targets)
    for prot in settings.protections:
        try:
            results += data_protection(store, prot, now)
        except StoreError as exc:
            results.append(probe.Result(f"backup-age:{prot.database}", "backup", False, f"cannot read Spaces: {exc}", 0.0))
    if settings.config_max_age is not None:
        try:
            results += config_protection(store, settings.config_max_age, now)
        except StoreError as exc:
            results.append(probe.Result("config-age", "backup", False, f"cannot read Spaces: {exc}", 0.0))
    try:
        saved = store.get_json_or_none(STATE_KEY) or {}
    except StoreError:
        saved = {}
    old_states = saved.get("targets", {}) if isinstance(saved, dict) else {}
    spec = {t.name: t for t in settings.targets}
    states: dict[str, dict[str, Any]] = {}
    events: list[dict[str, Any]] = []
    for r in results:
        t = spec.get(r.name)
        state, event = advance(old_states.get(r.name), r.ok, r.warning, t.failure_threshold if t else 3,
                               t.success_threshold if t else 2, now, settings.reminder)
        state["last"] = {"ok": r.ok, "detail": r.detail, "at": now.isoformat()}
        states[r.name] = state
        if event:
            events.append({"target": r.name, "type": r.type, "event": event, "detail": r.warning or r.detail})
    store.put_json(STATE_KEY, {"updated_at": now.isoformat(), "targets": states})
    down = sorted(n for n, s in states.items() if s["status"] == "unhealthy")
    up = sorted(n for n, s in states.items() if s["status"] == "healthy")
    prom = prometheus_text(results, states, now)
    status_doc = {"updated_at": now.isoformat(), "healthy": up, "unhealthy": down,
                  "targets": [r.to_dict() | {"status": states[r.name]["status"], "since": states[r.name]["since"]}
                              for r in results]}
    store.put_json(STATUS_KEY, status_doc)
    store.put_bytes(PROM_KEY, prom.encode(), "text/plain; version=0.0.4")
    # ok: the probe run did its job (finding targets down is part of the job); `healthy` is the verdict
    out: dict[str, Any] = {"ok": True, "healthy": not down, "status": "ok" if not down else "degraded",
                           "up": up, "down": down,
                           "changed": events,
                           "decision": _decision(up, down, events, states)}
    if events and settings.notifier.configured:
        worst = "failed" if any(e["event"] in ("down", "reminder") for e in events) else "passed"
        out["notifications"] = settings.notifier.send({
            "event": "health.changed", "function": FUNCTION, "status": worst, "decision": out["decision"],
            "changes": events, "failed_checks": [f"{e['target']} {e['event'].upper()}: {e['detail']}" for e in events]})
    failing_over = [e["target"] for e in events if e["event"] == "down" and spec.get(e["target"]) is not None
                    and spec[e["target"]].failover]
    if failing_over:
        out["failover"] = request_failover(store, failing_over, now, environ, deadline)
    if fmt == "prometheus":
        out["prometheus"] = prom
    else:
        out["targets"] = status_doc["targets"]
    log.info("health summary", up=len(up), down=len(down), changed=len(events))
    return out


def _decision(up: list[str], down: list[str], events: list[dict[str, Any]], states: Mapping[str, Any]) -> str:
    text = f"{len(up)} healthy, {len(down)} unhealthy"
    if down:
        text += " (" + ", ".join(f"{n} since {states[n]['since'][11:16]}" for n in down[:5]) + ")"
    if events:
        text += "; changed: " + ", ".join(f"{e['target']} {e['event'].upper()}" for e in events[:10])
    return text
