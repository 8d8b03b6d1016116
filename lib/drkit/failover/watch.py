"""What health-probe does about failover each run: ask for the move, finish a half-done one, say where traffic is.

* **Requested while the trigger holds.** With `DRKIT_AUTO_FAILOVER=true`, while a target marked
  `failover: true` is unhealthy and traffic is not on the DR site, each run asks dns-failover's logic for
  the move (flap guard, the DR site's own health check, one transition): a move refused because the DR
  site was briefly unhealthy happens on the first run after it recovers. It is told once when first
  refused and once when it happens, not every minute.
* **Finished until true.** Every run compares DNS, reserved IPs and apps with the site the signed state
  names; what still differs (a DO API 500 in the middle of a move) is applied, after that site's health
  check, with backoff (1, 2, 4 … 15 minutes). health-probe alerts while it is not done and once when it is.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from drkit.core import log
from drkit.core.deadline import Deadline
from drkit.core.errors import ConfigError, DrkitError
from drkit.failover import reconcile, service
from drkit.storage import audit
from drkit.storage.store import Store

MAX_BACKOFF = dt.timedelta(minutes=15)


@dataclass
class Watch:
    """This run's view of failover (`configured` False: health-probe has no plan or no DO token)."""

    configured: bool = False
    site: str | None = None  # where traffic should be
    primary: str | None = None
    finishing: service.Finishing | None = None
    request: dict[str, Any] | None = None
    memory: dict[str, Any] = field(default_factory=dict)
    problem: str | None = None  # failover is configured but could not be looked at

    @property
    def moved(self) -> bool:
        """Traffic is (or is being moved) off the primary site."""
        return self.site is not None and self.site != self.primary


def configured(environ: Mapping[str, str]) -> bool:
    return bool((environ.get("DRKIT_FAILOVER_PLAN", "").strip() or environ.get("DRKIT_FAILOVER_PLAN_KEY", "").strip())
                and environ.get("DRKIT_DO_TOKEN", "").strip())


def run(store: Store, environ: Mapping[str, str], deadline: Deadline, now: dt.datetime, down: list[str],
        memory: Mapping[str, Any], *, automatic: bool, who: str) -> Watch:
    mem = dict(memory)
    out = Watch(memory=mem)
    if not configured(environ):
        if down and not mem.get("requested_at"):
            audit.record(store, who, "failover.requested", {"targets": down, "at": now.isoformat(),
                                                            "performed": False, "why": "no failover plan"})
            mem["requested_at"] = now.isoformat()
        elif not down:
            mem.pop("requested_at", None)
        if down:
            out.request = {"requested_for": down, "performed": False,
                           "reason": "no failover plan and DO token here (DRKIT_FAILOVER_PLAN[_KEY], DRKIT_DO_TOKEN); "
                                     "alerting or an operator moves traffic"}
        return out
    try:
        settings = service.Settings.from_env(environ, store)
        api = settings.api(deadline)
        out.configured, out.primary = True, settings.plan.primary
        if down:
            out.request = _request(store, settings, api, down, now, mem, automatic=automatic, who=who)
        else:
            mem.pop("requested_at", None)
            mem.pop("outcome", None)
        due = not mem.get("next_at") or dt.datetime.fromisoformat(str(mem["next_at"])) <= now
        out.finishing = service.finish(store, settings, api, now, attempt=due, who=who)
        out.site = out.finishing.site
    except (ConfigError, DrkitError) as exc:
        log.error("failover could not be looked at", error=str(exc))
        out.configured, out.problem = True, str(exc)
        return out
    f = out.finishing
    if f.attempted and not f.done:
        n = int(mem.get("attempts") or 0) + 1
        mem["attempts"] = n
        mem["next_at"] = (now + min(MAX_BACKOFF, dt.timedelta(minutes=2 ** (n - 1)))).isoformat()
    elif f.done:
        mem.pop("attempts", None)
        mem.pop("next_at", None)
    return out


def _request(store: Store, settings: service.Settings, api: Any, down: list[str], now: dt.datetime,
             mem: dict[str, Any], *, automatic: bool, who: str) -> dict[str, Any]:
    """Ask for the move while the trigger holds; tell only a first refusal and the move itself."""
    first = not mem.get("requested_at")
    if first:
        mem["requested_at"] = now.isoformat()
    if not automatic:
        if first:
            audit.record(store, who, "failover.requested", {"targets": down, "at": now.isoformat(), "performed": False})
        return {"requested_for": down, "performed": False,
                "reason": "automatic failover is off (DRKIT_AUTO_FAILOVER); alerting or an operator moves traffic"}
    where = reconcile.read_where(store, settings.plan, now)
    if where.state.site == settings.plan.dr:
        return {"requested_for": down, "performed": False, "reason": f"already on {settings.plan.dr}"}
    result = service.execute(store, settings, api, "failover", settings.plan.dr,
                             reason=f"health-probe: {', '.join(down)} unhealthy", who=who, automatic=True,
                             force=False, dry_run=False, now=now, notify=False)
    changed = result["outcome"] != mem.get("outcome")
    mem["outcome"] = result["outcome"]
    if changed and settings.notifier.configured:
        status = "passed" if result["outcome"] == "applied" else "failed"
        result["notifications"] = settings.notifier.send({
            "event": f"failover.{result['outcome']}", "function": who, "status": status,
            "decision": result["sentence"] + ("" if result["outcome"] == "applied" else
                                              "; health-probe asks again every run while the trigger holds")})
    return {"requested_for": down, "performed": result["outcome"] == "applied", "outcome": result["outcome"],
            "decision": result["sentence"]}


def moved_to(store: Store, environ: Mapping[str, str], now: dt.datetime) -> str | None:
    """The site traffic was moved to, when it is not the primary (no DigitalOcean call: the signed state only)."""
    if not (environ.get("DRKIT_FAILOVER_PLAN", "").strip() or environ.get("DRKIT_FAILOVER_PLAN_KEY", "").strip()):
        return None
    try:
        plan = service.plan_from_env(environ, store)
    except DrkitError:
        return None
    site = reconcile.read_where(store, plan, now).state.site
    return site if site != plan.primary else None
