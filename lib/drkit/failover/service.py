"""One failover action, as dns-failover and health-probe's automatic hook both run it: plan, move, audit, notify."""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from drkit.core import log
from drkit.core.deadline import Deadline
from drkit.core.errors import ConfigError
from drkit.digitalocean.api import DoApi
from drkit.failover import plans, reconcile
from drkit.platform.notify import Notifier
from drkit.storage import audit, signed
from drkit.storage.store import Store

FUNCTION = "dns-failover"

@dataclass(frozen=True)
class Settings:
    plan: plans.Plan
    environ: Mapping[str, str]
    notifier: Notifier = field(default_factory=Notifier)

    @classmethod
    def from_env(cls, environ: Mapping[str, str], store: Store | None) -> Settings:
        """The plan inline (DRKIT_FAILOVER_PLAN) needs no store; a plan kept in the bucket is read from `store`."""
        problems: list[str] = []
        plan = None
        try:
            plan = plan_from_env(environ, store)
        except ConfigError as exc:
            problems += exc.problems
        if not environ.get("DRKIT_DO_TOKEN", "").strip():
            problems.append("DRKIT_DO_TOKEN is not set (a DigitalOcean API token with domain, reserved_ip and app scopes)")
        notifier = Notifier.collect(environ, problems)
        if problems or plan is None:
            raise ConfigError(problems)
        return cls(plan, environ, notifier)

    def api(self, deadline: Deadline) -> DoApi:
        return DoApi.from_env(self.environ, deadline)


def plan_from_env(environ: Mapping[str, str], store: Store | None) -> plans.Plan:
    """DRKIT_FAILOVER_PLAN (inline), or the plan at DRKIT_FAILOVER_PLAN_KEY, believed only with the operator's
    signature (the bucket is writable by every function's key)."""
    text = environ.get("DRKIT_FAILOVER_PLAN", "").strip()
    key = environ.get("DRKIT_FAILOVER_PLAN_KEY", "").strip()
    if text:
        return plans.parse_plan(text)
    if not key:
        raise ConfigError("set DRKIT_FAILOVER_PLAN (JSON) or DRKIT_FAILOVER_PLAN_KEY (an object in the bucket)")
    if store is None:
        raise ConfigError(f"the failover plan {key} is in the bucket: reading it needs the store")
    return plans.parse_plan(signed.get_bytes(store, key, plans.WRITERS, f"the failover plan {key}").decode(), key)


def execute(store: Store, settings: Settings, api: DoApi, action: str, site: str, *, reason: str, who: str,
            automatic: bool, force: bool, dry_run: bool, now: dt.datetime, notify: bool = True) -> dict[str, Any]:
    plan = settings.plan
    if action == "status":
        return reconcile.live_status(store, api, plan)
    target = site or (plan.primary if action == "failback" else plan.dr)
    drill = action == "drill"
    result = reconcile.move(store, api, plan, target, reason=reason or action, who=who, automatic=automatic,
                           force=force, dry_run=dry_run or drill, now=now)
    event = f"failover.{'drill' if drill else result['outcome']}"
    audit.record(store, FUNCTION, event, {"action": action, "target": target, "who": who, "reason": reason,
                                          "outcome": result["outcome"], "sentence": result["sentence"],
                                          "changes": result.get("changes", [])})
    if result["outcome"] == "applied" and not drill:
        _tell_the_status_page(store, action, target, settings.plan, who, now)
    if settings.notifier.configured and notify:
        status = {"applied": "passed", "noop": "passed", "dry_run": "passed"}.get(result["outcome"], "failed")
        result["notifications"] = settings.notifier.send({
            "event": event, "function": FUNCTION, "status": status, "decision": result["sentence"],
            "failed_checks": [f"{c['target']}: {c['error']}" for c in result.get("changes", []) if c.get("error")]})
    return result


@dataclass(frozen=True)
class Finishing:
    """Where traffic should be, and whether DigitalOcean is there yet (what health-probe checks every run)."""

    site: str
    generation: int
    pending: list[dict[str, Any]]  # items that still point elsewhere (or could not be read)
    attempted: bool = False  # this run tried to finish the move
    sentence: str = ""

    @property
    def done(self) -> bool:
        return not self.pending


def finish(store: Store, settings: Settings, api: DoApi, now: dt.datetime, *, attempt: bool, who: str) -> Finishing:
    """The desired state, reconciled until true: when DNS, reserved IPs or apps still differ from the site the
    state names (a move that failed half-way), and `attempt`, finish it, after that site's own health check.
    Nothing is written when everything already matches; the caller backs off between attempts."""
    plan = settings.plan
    where = reconcile.read_where(store, plan, now)
    state = where.state
    if state.generation == 0:  # never moved: nothing to finish (a hand-made DNS change is not drkit's to undo)
        return Finishing(state.site, 0, [], sentence="no move on record")
    pending = [c.to_dict() for c in reconcile.reconcile(api, plan, state.site, dry_run=True)]
    if not pending or not attempt:
        return Finishing(state.site, state.generation, pending,
                         sentence="DNS and IPs match the state" if not pending else "waiting to retry")
    action = "failback" if state.site == plan.primary else "failover"
    result = execute(store, settings, api, action, state.site, reason=f"finishing generation {state.generation}",
                     who=who, automatic=False, force=False, dry_run=False, now=now, notify=False)
    left = [c for c in result.get("changes", []) if c.get("error") or not c.get("applied")]
    if result["outcome"] == "refused":
        left = pending
    return Finishing(state.site, state.generation, left, True, result["sentence"])


def _tell_the_status_page(store: Store, action: str, target: str, plan: plans.Plan, who: str, now: dt.datetime) -> None:
    """A move posts a public notice (and a failback resolves it): users learn of it within one probe cycle.
    It never fails the move, which has happened."""
    from drkit.core.errors import StoreError
    from drkit.health import notices

    at = f"{now.astimezone(dt.UTC):%H:%M} UTC"
    try:
        if target == plan.primary:
            notices.resolve_from(store, notices.AUTOMATIC_FAILOVER, f"Back on the primary site at {at}.", who=who,
                                 now=now, function=FUNCTION)
        else:
            notices.resolve_from(store, notices.AUTOMATIC_FAILOVER, f"Moved on to another site at {at}.", who=who,
                                 now=now, function=FUNCTION)
            notices.post(store, "Service moved to our disaster-recovery site",
                         f"We moved our services to the disaster-recovery site at {at} on "
                         f"{now.astimezone(dt.UTC):%Y-%m-%d}. Some requests may have failed during the move.",
                         "major", who=who, now=now, source=notices.AUTOMATIC_FAILOVER, function=FUNCTION)
    except StoreError as exc:
        log.error("status page notice not written", error=str(exc), action=action)
