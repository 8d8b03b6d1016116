"""Where traffic should be (`state/failover.json`) and reconciling DigitalOcean to it, once per transition.

State `state/failover.json`: site, generation, since, reason, who. A move to a
new site claims `state/failover/generation-<n>.json` with a conditional create,
so concurrent triggers make one transition; then the state is written, then DNS,
reserved IPs and apps are reconciled to it. Reconciling is idempotent (running it
twice changes nothing the second time) and reports what it could not apply, so a
half-applied failover is finished by the next call, never left mixed silently.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from drkit.core import log
from drkit.core.errors import DoApiError
from drkit.digitalocean.api import DoApi
from drkit.failover.plans import Plan
from drkit.health import probe
from drkit.storage import audit
from drkit.storage.store import Store

STATE_KEY = "state/failover.json"
FUNCTION = "dns-failover"


@dataclass(frozen=True)
class Decision:
    kind: str  # noop | refuse | move
    target: str
    sentence: str


def read_state(store: Store, plan: Plan) -> dict[str, Any]:
    state = store.get_json_or_none(STATE_KEY)
    if not isinstance(state, dict) or state.get("site") not in plan.sites:
        return {"site": plan.primary, "generation": 0, "since": None, "reason": "initial", "who": None}
    return state


def decide(state: Mapping[str, Any], target: str, plan: Plan, *, automatic: bool, now: dt.datetime) -> Decision:
    """Pure: what to do about a request to be on `target`."""
    if target not in plan.sites:
        return Decision("refuse", target, f"unknown site {target!r}; sites: {', '.join(plan.sites)}")
    if state["site"] == target:
        return Decision("noop", target, f"already on {target} (generation {state['generation']})")
    if automatic and target == plan.primary and not plan.auto_failback:
        return Decision("refuse", target, "automatic failback is off: an operator fails back (action failback)")
    if automatic and state.get("since"):
        held = now - dt.datetime.fromisoformat(state["since"])
        if held < plan.min_hold:
            return Decision("refuse", target, f"flap guard: on {state['site']} for {int(held.total_seconds())}s, "
                                              f"automatic moves wait {int(plan.min_hold.total_seconds())}s")
    return Decision("move", target, f"move from {state['site']} to {target}")


@dataclass
class Change:
    kind: str  # dns | reserved_ip | app
    target: str
    current: str | None
    desired: str
    applied: bool = False
    error: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "target": self.target, "current": self.current, "desired": self.desired,
                "applied": self.applied, "error": self.error}


def reconcile(api: DoApi, plan: Plan, site: str, *, dry_run: bool) -> list[Change]:
    """Make DNS and reserved IPs match `site`; only what differs is written. Errors are collected, not raised."""
    changes: list[Change] = []
    for r in plan.records:
        desired = r.values[site]
        try:
            found = api.list_records(r.domain, name=r.fqdn, rtype=r.type)
        except DoApiError as exc:
            changes.append(Change("dns", f"{r.type} {r.fqdn}", None, desired, error=str(exc)))
            continue
        if len(found) > 1:
            changes.append(Change("dns", f"{r.type} {r.fqdn}", ", ".join(x["data"] for x in found), desired,
                                  error="several records with this name and type: fix by hand, then retry"))
            continue
        current = found[0] if found else None
        if current is not None and current["data"] == desired and int(current.get("ttl") or 0) == r.ttl:
            continue
        change = Change("dns", f"{r.type} {r.fqdn}", current["data"] if current else None, f"{desired} (ttl {r.ttl})")
        changes.append(change)
        if dry_run:
            continue
        try:
            if current is None:
                api.create_record(r.domain, r.type, r.name, desired, r.ttl)
            else:
                api.update_record(r.domain, int(current["id"]), r.type, desired, r.ttl)
            change.applied = True
        except DoApiError as exc:
            change.error = str(exc)
    for ip, droplets in plan.reserved_ips:
        want = droplets[site]
        try:
            have = (api.get_reserved_ip(ip).get("droplet") or {}).get("id")
        except DoApiError as exc:
            changes.append(Change("reserved_ip", ip, None, f"droplet {want}", error=str(exc)))
            continue
        if have == want:
            continue
        change = Change("reserved_ip", ip, f"droplet {have}" if have else "unassigned", f"droplet {want}")
        changes.append(change)
        if not dry_run:
            try:
                api.assign_reserved_ip(ip, want)
                change.applied = True
            except DoApiError as exc:
                change.error = str(exc)
    return changes


def site_healthy(plan: Plan, site: str) -> tuple[bool, str]:
    url = plan.health.get(site)
    if not url:
        return True, f"no health URL for {site}"
    (target,) = probe.parse_targets(json.dumps([{"name": f"site-{site}", "type": "http", "url": url,
                                                 "timeout_s": 5}]))
    result = probe.run_all([target])[0]
    return result.ok, f"{site} health {url}: {result.detail}"


def move(store: Store, api: DoApi, plan: Plan, target: str, *, reason: str, who: str, automatic: bool, force: bool,
         dry_run: bool, now: dt.datetime) -> dict[str, Any]:
    """Decide, check, claim, record, reconcile. Returns the outcome (never raises for refusals)."""
    state = read_state(store, plan)
    decision = decide(state, target, plan, automatic=automatic, now=now)
    out: dict[str, Any] = {"from": state["site"], "to": target, "generation": state["generation"],
                           "kind": decision.kind, "dry_run": dry_run}
    if decision.kind == "refuse":
        return out | {"outcome": "refused", "sentence": f"refused: {decision.sentence}"}
    if decision.kind == "noop":
        changes = reconcile(api, plan, target, dry_run=dry_run)
        return out | _applied(changes, f"no transition: {decision.sentence}")
    healthy, detail = site_healthy(plan, target)
    out["target_health"] = detail
    if not healthy and not force:
        return out | {"outcome": "refused", "sentence": f"refused: {target} is not healthy ({detail}); force to override"}
    if dry_run:
        changes = reconcile(api, plan, target, dry_run=True)
        return out | {"outcome": "dry_run", "changes": [c.to_dict() for c in changes],
                      "sentence": f"dry run: would move {state['site']} -> {target}: "
                                  + (", ".join(f"{c.target} {c.current} -> {c.desired}" for c in changes) or "no changes")}
    generation = int(state["generation"]) + 1
    claim = {"site": target, "generation": generation, "since": now.isoformat(), "reason": reason, "who": who}
    if not store.put_if_absent(f"state/failover/generation-{generation:06d}.json", claim):
        return out | {"outcome": "noop", "sentence": f"no transition: another run claimed generation {generation}"}
    store.put_json(STATE_KEY, claim)
    out["generation"] = generation
    audit.record(store, FUNCTION, "failover.transition", claim | {"from": state["site"]})
    changes = reconcile(api, plan, target, dry_run=False)
    for app_id, sites in plan.apps:
        if target in sites:
            change = Change("app", app_id, None, "redeploy")
            try:
                api.redeploy_app(app_id)
                change.applied = True
            except DoApiError as exc:
                change.error = str(exc)
            changes.append(change)
    return out | _applied(changes, f"moved {state['site']} -> {target} (generation {generation})")


def _applied(changes: list[Change], head: str) -> dict[str, Any]:
    failed = [c for c in changes if c.error]
    done = [c for c in changes if c.applied]
    parts = [head]
    if done:
        parts.append("applied " + ", ".join(f"{c.target} {c.current} -> {c.desired}" for c in done))
    if failed:
        parts.append("NOT applied (next call retries): " + ", ".join(f"{c.target}: {c.error}" for c in failed))
    if not done and not failed:
        parts.append("DNS and IPs already match")
    outcome = "partial" if failed else ("applied" if done or head.startswith("moved") else "noop")
    return {"outcome": outcome, "changes": [c.to_dict() for c in changes], "sentence": "; ".join(parts)}


def live_status(store: Store, api: DoApi, plan: Plan) -> dict[str, Any]:
    state = read_state(store, plan)
    pending = reconcile(api, plan, state["site"], dry_run=True)
    mixed = [c.to_dict() for c in pending]
    sentence = (f"on {state['site']} since {state.get('since') or 'the start'} (generation {state['generation']}); "
                + ("DNS and IPs match" if not mixed else f"MIXED: {len(mixed)} item(s) differ from {state['site']}"))
    log.info("failover status", site=state["site"], mixed=len(mixed))
    return {"outcome": "status", "state": state, "pending": mixed, "sentence": sentence}
