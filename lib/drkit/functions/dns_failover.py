"""dns-failover: move traffic to the DR site once, safely, from an authenticated alert or an operator.

Operator (doctl invoke): action status|failover|failback|drill, site, dry_run, reason, force.
Web (`web: raw`): an authenticated Alertmanager/Grafana alert batch or a signed command (drkit.webhook).

A web call is deduplicated with an idempotency record in Spaces
(`state/idempotency/dns-failover/<key>.json`, created with a conditional
write): the first delivery runs, concurrent copies get 202 "in progress",
later copies get the stored answer. A run that could not finish deletes its
record and answers 500, so the sender's retry completes the job (the state
already says where to be; reconciling is idempotent). Resolved alerts never
fail back. Every decision is an audit event and, when configured, a notification.
"""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Mapping
from typing import Any

from drkit.core import log
from drkit.core.deadline import Clock, Deadline, utcnow
from drkit.core.errors import ConfigError
from drkit.digitalocean.api import DoApi
from drkit.failover.deliveries import Delivery
from drkit.failover.service import FUNCTION, Settings, execute
from drkit.failover.webhook import AuthConfig, Trigger, authenticate, parse_payload
from drkit.platform import identity
from drkit.platform.config import collect_spaces, spaces_from_env
from drkit.platform.notify import Notifier
from drkit.platform.runtime import Params
from drkit.platform.web import HttpRequest
from drkit.storage import audit, records
from drkit.storage.records import RecordError
from drkit.storage.store import Store

IDEM_PREFIX = "state/idempotency/dns-failover/"
IN_PROGRESS_S = 120


def _store(environ: Mapping[str, str]) -> Store:
    return Store(spaces_from_env(environ), identity=identity.from_env(environ, FUNCTION))


def _context(environ: Mapping[str, str], deadline: Deadline) -> tuple[Store, Settings, DoApi]:
    store = _store(environ)
    settings = Settings.from_env(environ, store)
    return store, settings, settings.api(deadline)


def check(environ: Mapping[str, str], store: Store | None = None) -> str:
    """The configuration run() and run_web() need, validated as they validate it (drkit config check); every
    problem at once. A plan kept in the bucket is read and verified only when `store` is given (--connect)."""
    problems: list[str] = []
    try:
        if not AuthConfig.from_env(environ).configured:
            problems.append("no webhook credentials configured (DRKIT_WEBHOOK_BEARER/BASIC/HMAC, DRKIT_GRAFANA_HMAC): "
                            "alerts cannot reach this function (operator invokes still work)")
    except ConfigError as exc:
        problems += exc.problems
    collect_spaces(environ, problems)
    identity.collect(environ, FUNCTION, problems)
    key = environ.get("DRKIT_FAILOVER_PLAN_KEY", "").strip()
    summary = ""
    if key and not environ.get("DRKIT_FAILOVER_PLAN", "").strip() and store is None:
        if not environ.get("DRKIT_DO_TOKEN", "").strip():
            problems.append("DRKIT_DO_TOKEN is not set (a DigitalOcean API token with domain, reserved_ip and app scopes)")
        Notifier.collect(environ, problems)
        summary = f"plan in the bucket at {key} (read and verified at run time; --connect reads it now)"
    else:
        try:
            settings = Settings.from_env(environ, store)
            summary = f"plan: sites {', '.join(settings.plan.sites)}, {len(settings.plan.records)} record(s)"
        except ConfigError as exc:
            problems += exc.problems
    if problems:
        raise ConfigError(problems)
    return summary


def run(params: Mapping[str, Any], environ: Mapping[str, str], deadline: Deadline, *,
        clock: Clock = utcnow) -> dict[str, Any]:
    """Operator invocation (`doctl serverless functions invoke dr/dns-failover -p action:...`)."""
    p = Params(params, known=("action", "site", "dry_run", "reason", "force"))
    action = p.string("action", "status")
    if action not in ("status", "failover", "failback", "drill"):
        p.problems.append(f"parameter 'action' must be status, failover, failback or drill, not {action!r}")
    site, reason = p.string("site", ""), p.string("reason", "")
    dry_run, force = p.boolean("dry_run", False), p.boolean("force", False)
    p.finish()
    store, settings, api = _context(environ, deadline)
    if site and site not in settings.plan.sites:
        raise ConfigError(f"site {site!r} is not in the plan; sites: {', '.join(settings.plan.sites)}")
    result = execute(store, settings, api, action, site, reason=reason, who=audit.actor(), automatic=False,
                     force=force, dry_run=dry_run, now=clock())
    return {"ok": result["outcome"] in ("applied", "noop", "dry_run", "status"), "status": result["outcome"],
            "decision": result["sentence"], **{k: v for k, v in result.items() if k not in ("sentence", "outcome")}}


def run_web(req: HttpRequest, environ: Mapping[str, str], deadline: Deadline, *,
            clock: Clock = utcnow) -> tuple[int, dict[str, Any]]:
    """An alert webhook or signed command: (HTTP status, body).

    Cheap before expensive: authenticate and parse (no I/O), then claim the delivery's idempotency
    record; a replay or a concurrent copy is answered from that record alone, before the plan is
    read or the DigitalOcean client is built."""
    auth = AuthConfig.from_env(environ)
    if not auth.configured:
        raise ConfigError("no webhook credentials configured (DRKIT_WEBHOOK_BEARER/BASIC/HMAC, DRKIT_GRAFANA_HMAC)")
    scheme = authenticate(req, auth, time.time())
    trigger = parse_payload(req, scheme)
    store = _store(environ)
    now = clock()
    key = f"{IDEM_PREFIX}{trigger.idempotency_key}.json"
    record = Delivery("in_progress", now, now + dt.timedelta(seconds=IN_PROGRESS_S))
    if not records.create(store, key, record, now):
        try:
            got = records.read(store, key, Delivery, now)
        except RecordError as exc:  # planted: it must never answer a real alert as a duplicate
            log.error("webhook delivery record not believed; processing the delivery", error=exc.reason)
            audit.record(store, FUNCTION, "webhook.record.forged", {"key": key, "reason": exc.reason})
            got = None
        seen = got.value if got else None
        if seen is not None and seen.status == "completed":
            return 200, {"ok": True, "duplicate": True, "decision": f"duplicate delivery: {seen.sentence}"}
        if seen is not None and seen.expires is not None and seen.expires > now:
            return 202, {"ok": True, "duplicate": True, "decision": "the same delivery is being processed"}
        records.write(store, key, record, now)  # an abandoned in-progress record: take over
    try:
        settings = Settings.from_env(environ, store)
        result = _act(store, settings, settings.api(deadline), trigger, scheme, now)
    except BaseException:
        store.delete(key)  # let the sender's retry run again
        raise
    if result["outcome"] == "partial":
        store.delete(key)
        return 500, {"ok": False, "decision": result["sentence"], "changes": result.get("changes", [])}
    records.write(store, key, Delivery("completed", now, None, result["sentence"]), now)
    return 200, {"ok": True, "decision": result["sentence"], "outcome": result["outcome"],
                 "changes": result.get("changes", [])}


def _act(store: Store, settings: Settings, api: DoApi, trigger: Trigger, scheme: str, now: dt.datetime) -> dict[str, Any]:
    who = f"webhook:{trigger.source}:{scheme}"
    if trigger.kind == "command":
        return execute(store, settings, api, trigger.action, trigger.site, reason=trigger.reason, who=who,
                       automatic=False, force=trigger.force, dry_run=trigger.dry_run, now=now)
    wanted = settings.plan.trigger_labels
    matching = [a for a in trigger.alerts if a.status == "firing" and all(a.labels.get(k) == v for k, v in wanted.items())]
    if trigger.status == "resolved" or not matching:
        why = ("resolved alerts never fail back; an operator does (action failback)" if trigger.status == "resolved"
               else f"no firing alert matches the plan's trigger labels {dict(wanted)}")
        audit.record(store, FUNCTION, "failover.noop", {"who": who, "reason": why, **trigger.details})
        log.info("alert ignored", reason=why)
        return {"outcome": "noop", "sentence": f"no action: {why}"}
    names = ", ".join(sorted({a.labels.get("alertname", "?") for a in matching}))
    return execute(store, settings, api, "failover", settings.plan.dr, reason=f"alert {names}", who=who,
                   automatic=True, force=False, dry_run=False, now=now)
