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
   `status/health.prom` (Prometheus text format, served by dr/report's
   /metrics), notifies, and records a failover request for down targets
   marked `failover: true`;
5. publishes the public status page when DRKIT_STATUS_PAGE is set
   (health/publish.py): within one probe cycle of any change.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from drkit.core import log
from drkit.core.deadline import Clock, Deadline, utcnow
from drkit.core.errors import ConfigError, DrkitError, StoreError
from drkit.health import probe
from drkit.health.protection import (
    Protection,
    config_protection,
    data_protection,
    protections_from_env,
    schedule_protection,
)
from drkit.health.publish import publish
from drkit.health.status import advance, prometheus_text
from drkit.health.statuspage import PageConfig
from drkit.platform.config import SpacesConfig, collect_spaces
from drkit.platform.notify import Notifier
from drkit.platform.runtime import Params
from drkit.policy import layout
from drkit.policy.durations import interval_or_default
from drkit.storage import audit
from drkit.storage.store import Store

FUNCTION = "health-probe"
STATE_KEY = layout.HEALTH_STATE_KEY
STATUS_KEY = "status/health.json"
PROM_KEY = "status/health.prom"


@dataclass(frozen=True)
class Settings:
    targets: list[probe.Target]
    protections: list[Protection]
    reminder: dt.timedelta
    notifier: Notifier = field(default_factory=Notifier)
    config_max_age: dt.timedelta | None = None  # config-backup freshness (opt-in: it has no trigger of its own)
    page: PageConfig | None = None  # the public status page (DRKIT_STATUS_PAGE; none when unset)

    @classmethod
    def from_env(cls, environ: Mapping[str, str]) -> Settings:
        problems: list[str] = []
        targets: list[probe.Target] = []
        try:
            targets = probe.parse_targets(environ.get("DRKIT_PROBES", ""))
        except ConfigError as exc:
            problems.extend(exc.problems)
        protections = protections_from_env(environ, problems)

        def interval(var: str, default: str) -> dt.timedelta:
            return interval_or_default(environ, var, default, problems)

        reminder = interval("DRKIT_ALERT_REMINDER", "1h")
        config_max_age = interval("DRKIT_CONFIG_MAX_AGE", "1d") if environ.get("DRKIT_CONFIG_MAX_AGE", "").strip() \
            else None
        notifier = Notifier.collect(environ, problems)
        page = None
        try:
            page = PageConfig.parse(environ.get("DRKIT_STATUS_PAGE", ""))
        except ConfigError as exc:
            problems.extend(exc.problems)
        if page is not None:
            known = {t.name for t in targets}
            problems.extend(f"DRKIT_STATUS_PAGE service {s.name!r} names target {t!r}, which DRKIT_PROBES does not "
                            f"define (known: {', '.join(sorted(known)) or 'none'})"
                            for s in page.services for t in s.targets if t not in known)
        if not targets and not protections and config_max_age is None and not problems:
            problems.append("nothing to probe: set DRKIT_PROBES (JSON list of targets) and/or DRKIT_DATABASES")
        if problems:
            raise ConfigError(problems)
        return cls(targets, protections, reminder, notifier, config_max_age, page)


def request_failover(store: Store, targets: list[str], now: dt.datetime, environ: Mapping[str, str],
                     deadline: Deadline) -> dict[str, Any]:
    """Called once when targets marked `failover: true` turn unhealthy (docs/health-probe.md).

    With DRKIT_AUTO_FAILOVER=true it runs dns-failover's logic in-process, as an
    automatic move with all its safety rules (flap guard, DR health check, one
    transition, no automatic failback). Otherwise it records the request only.
    """
    from drkit.platform.runtime import TRUE

    audit.record(store, FUNCTION, "failover.requested", {"targets": targets, "at": now.isoformat()})
    if environ.get("DRKIT_AUTO_FAILOVER", "").strip().lower() not in TRUE:
        return {"requested_for": targets, "performed": False,
                "reason": "automatic failover is off (DRKIT_AUTO_FAILOVER); alerting or an operator moves traffic"}
    from drkit.failover import service

    try:
        settings = service.Settings.from_env(environ, store)
        result = service.execute(store, settings, settings.api(deadline), "failover", settings.plan.dr,
                                      reason=f"health-probe: {', '.join(targets)} unhealthy", who=f"{FUNCTION}",
                                      automatic=True, force=False, dry_run=False, now=now)
    except DrkitError as exc:
        log.error("automatic failover could not run", error=str(exc))
        return {"requested_for": targets, "performed": False, "reason": f"dns-failover could not run: {exc}"}
    return {"requested_for": targets, "performed": result["outcome"] == "applied", "outcome": result["outcome"],
            "decision": result["sentence"]}


# -- the function ----------------------------------------------------------------------------

def _startup(environ: Mapping[str, str]) -> tuple[SpacesConfig, Settings]:
    problems: list[str] = []
    spaces = collect_spaces(environ, problems)
    try:
        settings = Settings.from_env(environ)
    except ConfigError as exc:
        problems += exc.problems
    if problems or spaces is None:
        raise ConfigError(problems)
    return spaces, settings


def check(environ: Mapping[str, str]) -> str:
    """The configuration run() needs, validated as it validates it (drkit config check); every problem at once."""
    _, settings = _startup(environ)
    return f"{len(settings.targets)} probe target(s), {len(settings.protections)} database(s) watched"


def run(params: Mapping[str, Any], environ: Mapping[str, str], deadline: Deadline, *,
        store: Store | None = None, clock: Clock = utcnow) -> dict[str, Any]:
    p = Params(params, known=("format",))
    fmt = p.string("format", "json")
    if fmt not in ("json", "prometheus"):
        p.problems.append(f"parameter 'format' must be json or prometheus, not {fmt!r}")
    p.finish()
    spaces, settings = _startup(environ)
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
        results += schedule_protection(store, now)
    except StoreError as exc:
        results.append(probe.Result("scheduler", "schedule", False, f"cannot read Spaces: {exc}", 0.0))
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
    if settings.page is not None:
        try:
            page = publish(store, settings.page, now, states, now.isoformat())
            out["status_page"] = {"status": page["status"], "summary": page["summary"],
                                  "notices": len([n for n in page["notices"] if not n["resolved_at"]])}
        except StoreError as exc:  # the probes ran and alerted; the page is late by one cycle
            log.error("status page not published", error=str(exc))
            out["status_page"] = {"error": f"not published: {exc}"}
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
