"""The failover plan, the desired site in Spaces, and reconciling DigitalOcean to it.

Plan (JSON, DRKIT_FAILOVER_PLAN or the Spaces object DRKIT_FAILOVER_PLAN_KEY):

    {"sites": ["primary", "dr"],
     "records": [{"domain": "example.net", "name": "erp", "type": "A", "ttl": 60,
                  "values": {"primary": "203.0.113.10", "dr": "198.51.100.20"}}],
     "reserved_ips": [{"ip": "203.0.113.50", "droplets": {"primary": 1111, "dr": 2222}}],
     "apps": [{"id": "<app uuid>", "redeploy_on": ["dr"]}],
     "health": {"primary": "https://primary.example.net/health", "dr": "https://dr.example.net/health"},
     "trigger": {"labels": {"alertname": "PrimarySiteDown"}},
     "min_hold": "30m", "auto_failback": false}

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
from dataclasses import dataclass, field
from typing import Any

from drkit import audit, log, probe
from drkit.do_api import DoApi
from drkit.errors import ConfigError, DoApiError
from drkit.health import parse_interval
from drkit.store import Store

STATE_KEY = "state/failover.json"
FUNCTION = "dns-failover"
RECORD_TYPES = ("A", "AAAA", "CNAME")
MIN_TTL = 30


@dataclass(frozen=True)
class RecordSpec:
    domain: str
    name: str
    type: str
    ttl: int
    values: Mapping[str, str]

    @property
    def fqdn(self) -> str:
        return self.domain if self.name == "@" else f"{self.name}.{self.domain}"


@dataclass(frozen=True)
class Plan:
    sites: tuple[str, ...]
    records: tuple[RecordSpec, ...]
    reserved_ips: tuple[tuple[str, Mapping[str, int]], ...] = ()
    apps: tuple[tuple[str, tuple[str, ...]], ...] = ()
    health: Mapping[str, str] = field(default_factory=dict)
    trigger_labels: Mapping[str, str] = field(default_factory=dict)
    min_hold: dt.timedelta = dt.timedelta(minutes=30)
    auto_failback: bool = False

    @property
    def primary(self) -> str:
        return self.sites[0]

    @property
    def dr(self) -> str:
        return self.sites[1]


def parse_plan(text: str, where: str = "DRKIT_FAILOVER_PLAN") -> Plan:
    try:
        p = json.loads(text)
    except ValueError as exc:
        raise ConfigError(f"{where} is not valid JSON ({exc})") from None
    if not isinstance(p, dict):
        raise ConfigError(f"{where} must be a JSON object")
    problems: list[str] = []
    unknown = sorted(set(p) - {"sites", "records", "reserved_ips", "apps", "health", "trigger", "min_hold", "auto_failback"})
    if unknown:
        problems.append(f"{where}: unknown keys {', '.join(unknown)}")
    sites = p.get("sites")
    if not isinstance(sites, list) or len(sites) != 2 or not all(isinstance(s, str) and s for s in sites) or \
            len(set(sites)) != 2:
        raise ConfigError(f"{where}: sites must be two names, primary first, e.g. [\"primary\", \"dr\"]")
    records = []
    for n, r in enumerate(p.get("records", []), 1):
        label = f"{where} record {n}"
        if not isinstance(r, dict) or set(r) - {"domain", "name", "type", "ttl", "values"}:
            problems.append(f"{label}: keys are domain, name, type, ttl, values")
            continue
        if r.get("type") not in RECORD_TYPES:
            problems.append(f"{label}: type must be A, AAAA or CNAME")
        ttl = r.get("ttl", 60)
        if not isinstance(ttl, int) or ttl < MIN_TTL:
            problems.append(f"{label}: ttl must be a whole number of seconds, at least {MIN_TTL} (DigitalOcean's minimum)")
        values = r.get("values")
        if not isinstance(values, dict) or set(values) != set(sites) or not all(isinstance(v, str) and v for v in values.values()):
            problems.append(f"{label}: values must give one value for each site ({', '.join(sites)})")
            continue
        if not all(isinstance(r.get(k), str) and r.get(k) for k in ("domain", "name")):
            problems.append(f"{label}: domain and name are required (name @ for the apex)")
            continue
        records.append(RecordSpec(r["domain"], r["name"], r["type"], ttl, values))
    ips = []
    for n, item in enumerate(p.get("reserved_ips", []), 1):
        droplets = item.get("droplets") if isinstance(item, dict) else None
        if not isinstance(droplets, dict) or set(droplets) != set(sites) or \
                not all(isinstance(v, int) for v in droplets.values()) or not isinstance(item.get("ip"), str):
            problems.append(f"{where} reserved_ips {n}: needs ip and droplets with a droplet id for each site")
            continue
        ips.append((item["ip"], droplets))
    apps = []
    for n, item in enumerate(p.get("apps", []), 1):
        on = item.get("redeploy_on", []) if isinstance(item, dict) else None
        if not isinstance(item, dict) or not isinstance(item.get("id"), str) or not isinstance(on, list) or \
                not set(on) <= set(sites):
            problems.append(f"{where} apps {n}: needs id and redeploy_on (a list of sites)")
            continue
        apps.append((item["id"], tuple(on)))
    health = p.get("health", {})
    if not isinstance(health, dict) or not set(health) <= set(sites) or \
            not all(isinstance(u, str) and u.startswith(("http://", "https://")) for u in health.values()):
        problems.append(f"{where}: health maps sites to http(s) URLs")
        health = {}
    trigger = p.get("trigger", {}).get("labels", {}) if isinstance(p.get("trigger", {}), dict) else None
    if not isinstance(trigger, dict) or not all(isinstance(v, str) for v in trigger.values()):
        problems.append(f"{where}: trigger is {{\"labels\": {{\"alertname\": \"...\"}}}}")
        trigger = {}
    try:
        hold = parse_interval(str(p.get("min_hold", "30m")), f"{where} min_hold")
    except ConfigError as exc:
        problems.extend(exc.problems)
        hold = dt.timedelta(minutes=30)
    if not isinstance(p.get("auto_failback", False), bool):
        problems.append(f"{where}: auto_failback must be true or false")
    if not records and not ips:
        problems.append(f"{where}: nothing to move: give records and/or reserved_ips")
    if problems:
        raise ConfigError(problems)
    return Plan(tuple(sites), tuple(records), tuple(ips), tuple(apps), health, trigger, hold,
                bool(p.get("auto_failback", False)))


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
