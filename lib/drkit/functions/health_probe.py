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
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from functools import partial
from typing import Any

from drkit.core import log
from drkit.core.deadline import Clock, Deadline, utcnow
from drkit.core.errors import ConfigError, StoreError
from drkit.crypto.trust import Identity
from drkit.failover import watch
from drkit.health import notices, probe
from drkit.health.memory import HealthMetrics, HealthState, HealthStatus
from drkit.health.protection import (
    Protection,
    config_protection,
    copy_protection,
    data_protection,
    protections_from_env,
    schedule_protection,
    snapshot_protection,
)
from drkit.health.publish import publish
from drkit.health.status import advance, prometheus_text
from drkit.health.statuspage import PageConfig
from drkit.platform import identity
from drkit.platform.config import SpacesConfig, collect_spaces
from drkit.platform.notify import Notifier
from drkit.platform.runtime import TRUE, Params
from drkit.policy import layout
from drkit.policy.durations import interval_or_default
from drkit.storage import audit, records
from drkit.storage.records import RecordError
from drkit.storage.store import Store

FUNCTION = "health-probe"
STATE_KEY = layout.HEALTH_STATE_KEY
STATUS_KEY = "status/health.json"
PROM_KEY = "status/health.prom"
MAX_DETAIL = 4000


@dataclass(frozen=True)
class Settings:
    targets: list[probe.Target]
    protections: list[Protection]
    reminder: dt.timedelta
    notifier: Notifier = field(default_factory=Notifier)
    config_max_age: dt.timedelta | None = None  # config-backup freshness (opt-in: it has no trigger of its own)
    page: PageConfig | None = None  # the public status page (DRKIT_STATUS_PAGE; none when unset)
    copy_max_lag: dt.timedelta = dt.timedelta(hours=3)  # the off-site copy's lag (DRKIT_OFFSITE_MAX_LAG)
    copy_expected: bool = False  # DRKIT_OFFSITE_MAX_LAG set: a missing copy status is an alert from the start

    @classmethod
    def from_env(cls, environ: Mapping[str, str]) -> Settings:
        problems: list[str] = []
        targets: list[probe.Target] = []
        try:
            targets = probe.parse_targets(environ.get("DRKIT_PROBES", ""))
            problems.extend(probe.check_budget(targets))
        except ConfigError as exc:
            problems.extend(exc.problems)
        protections = protections_from_env(environ, problems)

        def interval(var: str, default: str) -> dt.timedelta:
            return interval_or_default(environ, var, default, problems)

        reminder = interval("DRKIT_ALERT_REMINDER", "1h")
        config_max_age = interval("DRKIT_CONFIG_MAX_AGE", "1d") if environ.get("DRKIT_CONFIG_MAX_AGE", "").strip() \
            else None
        copy_max_lag = interval("DRKIT_OFFSITE_MAX_LAG", "3h")
        copy_expected = bool(environ.get("DRKIT_OFFSITE_MAX_LAG", "").strip())
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
        return cls(targets, protections, reminder, notifier, config_max_age, page, copy_max_lag, copy_expected)


# -- the function ----------------------------------------------------------------------------

def _startup(environ: Mapping[str, str]) -> tuple[SpacesConfig, Settings, Identity]:
    problems: list[str] = []
    spaces = collect_spaces(environ, problems)
    me = identity.collect(environ, FUNCTION, problems)
    try:
        settings = Settings.from_env(environ)
    except ConfigError as exc:
        problems += exc.problems
    if problems or spaces is None:
        raise ConfigError(problems)
    return spaces, settings, me


def check(environ: Mapping[str, str]) -> str:
    """The configuration run() needs, validated as it validates it (drkit config check); every problem at once."""
    _, settings, _ = _startup(environ)
    return f"{len(settings.targets)} probe target(s), {len(settings.protections)} database(s) watched"


def run(params: Mapping[str, Any], environ: Mapping[str, str], deadline: Deadline, *,
        store: Store | None = None, clock: Clock = utcnow) -> dict[str, Any]:
    p = Params(params, known=("format",))
    fmt = p.string("format", "json")
    if fmt not in ("json", "prometheus"):
        p.problems.append(f"parameter 'format' must be json or prometheus, not {fmt!r}")
    p.finish()
    spaces, settings, me = _startup(environ)
    store = (store or Store(spaces)).with_identity(me)
    now = clock()
    memory, memory_problem = _memory(store, now)
    seen = dict(memory.catalog) if memory else {}
    results = probe.run_all(settings.targets, budget_s=min(probe.PROBE_BUDGET_S, max(1.0, deadline.remaining() - 20)))
    views: dict[str, Any] = {}
    for prot in settings.protections:
        results += _guarded(f"backup-age:{prot.database}", "backup",
                            partial(data_protection, store, prot, now, seen, views))
    results += _guarded("copy", "backup", lambda: copy_protection(store, views, settings.copy_max_lag,
                                                                  settings.copy_expected, now, seen))
    results += _guarded("config-age", "backup", lambda: config_protection(store, settings.config_max_age, now, seen))
    results += _guarded("scheduler", "schedule", lambda: schedule_protection(store, now, seen))
    results += _guarded("snapshots", "snapshot", lambda: snapshot_protection(store, now, seen))
    page_notices: list[dict[str, Any]] = []  # read once: checked here, shown on the page below
    if settings.page is not None:
        results += _guarded(f"record:{notices.KEY}", "integrity", lambda: _notices_believed(store, now, page_notices))
    if memory_problem:
        results.append(probe.Result(f"record:{STATE_KEY}", "integrity", False, memory_problem, 0.0, threshold=1))
    old_states = memory.targets if memory else {}
    # failover: asked for while a target marked `failover` is down, finished until DNS matches the state
    failover_down = [t.name for t in settings.targets if t.failover and _down(t, results, old_states)]
    watched = watch.run(store, environ, deadline, now, failover_down, memory.failover if memory else {},
                        automatic=environ.get("DRKIT_AUTO_FAILOVER", "").strip().lower() in TRUE, who=FUNCTION)
    results += _failover_results(watched)
    spec = {t.name: t for t in settings.targets}
    states: dict[str, dict[str, Any]] = {}
    events: list[dict[str, Any]] = []
    for r in results:
        t = spec.get(r.name)
        state, event = advance(old_states.get(r.name), r.ok, r.warning,
                               t.failure_threshold if t else (r.threshold or 3),
                               t.success_threshold if t else (1 if r.threshold == 1 else 2), now, settings.reminder)
        state["last"] = {"ok": r.ok, "detail": r.detail[:MAX_DETAIL], "at": now.isoformat()}
        states[r.name] = state
        if event:
            events.append({"target": r.name, "type": r.type, "event": event, "detail": r.warning or r.detail})
    records.write(store, STATE_KEY, HealthState(now, states, seen, watched.memory), now)
    down = sorted(n for n, s in states.items() if s["status"] == "unhealthy")
    up = sorted(n for n, s in states.items() if s["status"] == "healthy")
    prom = prometheus_text(results, states, now)
    status_doc = HealthStatus(now, tuple(up), tuple(down),
                              tuple(r.to_dict() | {"status": states[r.name]["status"], "since": states[r.name]["since"]}
                                    for r in results))
    records.write(store, STATUS_KEY, status_doc, now)
    records.write(store, PROM_KEY, HealthMetrics(prom), now)
    # ok: the probe run did its job (finding targets down is part of the job); `healthy` is the verdict
    out: dict[str, Any] = {"ok": True, "healthy": not down, "status": "ok" if not down else "degraded",
                           "up": up, "down": down,
                           "changed": events,
                           "decision": _decision(up, down, events, states)}
    if events:  # a transition is a state change: recorded for the post-incident record (drkit incident record)
        audit.record(store, FUNCTION, "health.changed", {"changes": [
            {k: e.get(k) for k in ("target", "event", "detail")} for e in events[:50]]}, now=now)
    if events and settings.notifier.configured:
        worst = "failed" if any(e["event"] in ("down", "reminder") for e in events) else "passed"
        out["notifications"] = settings.notifier.send({
            "event": "health.changed", "function": FUNCTION, "status": worst, "decision": out["decision"],
            "changes": events, "failed_checks": [f"{e['target']} {e['event'].upper()}: {e['detail']}" for e in events]})
    if watched.request is not None:
        out["failover"] = watched.request
    if settings.page is not None:
        try:
            page = publish(store, settings.page, now, states, now.isoformat(),
                           failover=watched.site if watched.moved else None, items=page_notices)
            out["status_page"] = {"status": page["status"], "summary": page["summary"],
                                  "notices": len([n for n in page["notices"] if not n["resolved_at"]])}
        except StoreError as exc:  # the probes ran and alerted; the page is late by one cycle
            log.error("status page not published", error=str(exc))
            out["status_page"] = {"error": f"not published: {exc}"}
    if fmt == "prometheus":
        out["prometheus"] = prom
    else:
        out["targets"] = list(status_doc.targets)
    log.info("health summary", up=len(up), down=len(down), changed=len(events))
    return out


def _down(t: probe.Target, results: list[probe.Result], old: Mapping[str, Any]) -> bool:
    """A target is down for failover once its own threshold says so (this run's result included)."""
    r = next((r for r in results if r.name == t.name), None)
    prev = old.get(t.name) or {}
    if r is None or r.ok:
        return False
    return prev.get("status") == "unhealthy" or int(prev.get("failures") or 0) + 1 >= t.failure_threshold


def _failover_results(w: watch.Watch) -> list[probe.Result]:
    if w.problem:
        return [probe.Result("failover", "failover", False, f"failover could not be looked at: {w.problem}", 0.0,
                             threshold=1)]
    if not w.configured or w.finishing is None or w.finishing.generation == 0:
        return []
    f = w.finishing
    detail = (f"on {f.site} (generation {f.generation}); DNS and IPs match" if f.done else
              f"traffic should be on {f.site} (generation {f.generation}), but {len(f.pending)} item(s) differ: "
              + ", ".join(f"{c['target']}: {c.get('error') or str(c.get('current')) + ' -> ' + str(c['desired'])}"
                          for c in f.pending[:5]) + "; health-probe retries with backoff")
    return [probe.Result("failover", "failover", f.done, detail, 0.0, threshold=1)]


def _notices_believed(store: Store, now: dt.datetime, into: list[dict[str, Any]]) -> list[probe.Result]:
    """The public page's notices, added to `into`: ones not believed never reach the page, and are an alert."""
    try:
        into.extend(notices.load(store, now))
    except RecordError as exc:
        return [probe.Result(f"record:{notices.KEY}", "integrity", False, f"record not believed: {exc}", 0.0,
                             threshold=1)]
    return []


def _memory(store: Store, now: dt.datetime) -> tuple[HealthState | None, str | None]:
    """The last run's signed memory, or None and why it is not believed (the run starts afresh and alerts)."""
    try:
        got = records.read(store, STATE_KEY, HealthState, now)
    except RecordError as exc:
        log.error("health state not believed; starting from fresh counters", error=exc.reason)
        return None, f"health-probe's own state is not believed ({exc.reason}); counters started afresh"
    except StoreError as exc:
        return None, f"health-probe's own state is unreadable ({exc}); counters started afresh"
    return (got.value if got else None), None


def _guarded(name: str, kind: str, check: Callable[[], list[probe.Result]]) -> list[probe.Result]:
    """A check that cannot run is a failing result, never a crash that stops every other probe."""
    try:
        return check()
    except StoreError as exc:
        return [probe.Result(name, kind, False, f"cannot read Spaces: {exc}", 0.0)]
    except Exception as exc:  # noqa: BLE001 - fail closed: an unexpected record is an alert, not an outage of the monitor
        log.error("data-protection check failed", check=name, error=f"{type(exc).__name__}: {exc}")
        return [probe.Result(name, kind, False, f"the check could not run: {type(exc).__name__}: {str(exc)[:300]}", 0.0,
                             threshold=1)]


def _decision(up: list[str], down: list[str], events: list[dict[str, Any]], states: Mapping[str, Any]) -> str:
    text = f"{len(up)} healthy, {len(down)} unhealthy"
    if down:
        text += " (" + ", ".join(f"{n} since {states[n]['since'][11:16]}" for n in down[:5]) + ")"
    if events:
        text += "; changed: " + ", ".join(f"{e['target']} {e['event'].upper()}" for e in events[:10])
    return text
