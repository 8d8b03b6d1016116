"""Where traffic should be (`state/failover.json`) and reconciling DigitalOcean to it, once per transition.

State `state/failover.json`: site, generation, since, reason, who, and the plan version acted on, a
record signed by dns-failover, health-probe (automatic failover) or the operator. A move to a new site
claims `state/failover/generation-<n>.json` (the same record) with a conditional create, so concurrent
triggers make one transition; then the state is written, then DNS, reserved IPs and apps are reconciled
to it. Where traffic should be is the newer of the state and the highest believed claim (a run that died
between the two, or a deleted state, loses nothing). A claim or state that is not believed moves nothing:
it is reported, and a forged claim in the way of a real move is removed. Reconciling is idempotent
(running it twice changes nothing the second time) and reports what it could not apply, so a
half-applied failover is finished by the next call, never left mixed silently.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar

from drkit.core import log
from drkit.core.errors import DoApiError
from drkit.core.fields import Fields
from drkit.digitalocean.api import DoApi
from drkit.failover.plans import Plan
from drkit.health import probe
from drkit.storage import audit, records
from drkit.storage.records import Record, RecordError
from drkit.storage.store import Store

STATE_KEY = "state/failover.json"
CLAIMS = "state/failover/"
FUNCTION = "dns-failover"
MAX_GENERATION = 10**9


@dataclass(frozen=True)
class FailoverState(Record):
    """Where traffic should be: the site, its generation (one per transition) and the plan version acted on."""

    TYPE: ClassVar[str] = "failover-state"
    WRITERS: ClassVar[tuple[str, ...]] = ("dns-failover", "health-probe", "operator")

    site: str
    generation: int = 0
    since: dt.datetime | None = None
    reason: str = "initial"
    who: str | None = None
    plan_version: int = 0

    def to_json(self) -> dict[str, Any]:
        return {"site": self.site, "generation": self.generation,
                "since": self.since.isoformat() if self.since else None, "reason": self.reason, "who": self.who,
                "plan_version": self.plan_version}

    @classmethod
    def from_fields(cls, f: Fields) -> FailoverState:
        return cls(f.text("site", max_len=60), f.integer("generation", lo=0, hi=MAX_GENERATION),
                   f.time("since", nullable=True), f.text("reason", max_len=500), f.text("who", nullable=True, max_len=200),
                   f.integer("plan_version", 0, lo=0, hi=2**53))

    def view(self) -> dict[str, Any]:
        return self.to_json()


class GenerationClaim(FailoverState):
    TYPE: ClassVar[str] = "failover-generation"


def claim_key(generation: int) -> str:
    return f"{CLAIMS}generation-{generation:06d}.json"


@dataclass
class Where:
    """Where traffic should be, and what was not believed on the way there."""

    state: FailoverState
    problems: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class Decision:
    kind: str  # noop | refuse | move
    target: str
    sentence: str


def read_where(store: Store, plan: Plan, now: dt.datetime) -> Where:
    """The newer of the signed state and the highest believed generation claim; records that are not believed,
    name a site the plan lacks or jump generations are reported and never followed."""
    out = Where(FailoverState(plan.primary))
    candidates: list[FailoverState] = []
    try:
        got = records.read(store, STATE_KEY, FailoverState, now)
        if got is not None:
            candidates.append(got.value)
    except RecordError as exc:
        out.problems.append(f"failover state not believed: {exc.reason}")
    for claim in _claims(store, now, out.problems):
        candidates.append(claim)
    for c in sorted(candidates, key=lambda c: c.generation, reverse=True):
        if c.site not in plan.sites:
            out.problems.append(f"failover record generation {c.generation} names site {c.site!r}, which the plan "
                                f"does not have ({', '.join(plan.sites)}); ignored")
            continue
        out.state = c
        break
    return out


def _claims(store: Store, now: dt.datetime, problems: list[str]) -> list[FailoverState]:
    found: list[FailoverState] = []
    for obj in store.list_objects(CLAIMS):
        if not obj.key.startswith(f"{CLAIMS}generation-"):
            continue
        try:
            got = records.read(store, obj.key, GenerationClaim, now)
        except RecordError as exc:
            problems.append(f"failover claim not believed: {exc.reason}")
            continue
        if got is not None and claim_key(got.value.generation) == obj.key:
            found.append(got.value)
    return found


def read_state(store: Store, plan: Plan, now: dt.datetime | None = None) -> dict[str, Any]:
    return read_where(store, plan, now or dt.datetime.now(dt.UTC)).state.view()


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
    """Decide, check, claim, record, reconcile. Returns the outcome (never raises for refusals).

    Nothing is written to DigitalOcean before the target site's health check passed (unless `force`), also
    when the state already says `target` and only DNS or IPs lag behind it."""
    where = read_where(store, plan, now)
    state = where.state
    out: dict[str, Any] = {"from": state.site, "to": target, "generation": state.generation, "dry_run": dry_run}
    if where.problems:
        out["problems"] = where.problems
    if plan.version < state.plan_version:
        return out | {"kind": "refuse", "outcome": "refused",
                      "sentence": f"refused: the failover plan is version {plan.version}, older than version "
                                  f"{state.plan_version} that generation {state.generation} acted on (a replayed "
                                  "plan?); push the current plan again (drkit failover plan push)"}
    decision = decide(state.view(), target, plan, automatic=automatic, now=now)
    out["kind"] = decision.kind
    if decision.kind == "refuse":
        return out | {"outcome": "refused", "sentence": f"refused: {decision.sentence}"}
    if decision.kind == "noop":
        pending = reconcile(api, plan, target, dry_run=True)
        if dry_run or not [c for c in pending if not c.error]:
            return out | _applied(pending if dry_run else reconcile(api, plan, target, dry_run=False),
                                  f"no transition: {decision.sentence}")
        healthy, detail = site_healthy(plan, target)
        out["target_health"] = detail
        if not healthy and not force:
            return out | {"outcome": "refused", "changes": [c.to_dict() for c in pending],
                          "sentence": f"refused: {decision.sentence}, but {len(pending)} item(s) still point "
                                      f"elsewhere and {target} is not healthy ({detail}); nothing changed"}
        return out | _applied(reconcile(api, plan, target, dry_run=False), f"no transition: {decision.sentence}")
    healthy, detail = site_healthy(plan, target)
    out["target_health"] = detail
    if not healthy and not force:
        return out | {"outcome": "refused", "sentence": f"refused: {target} is not healthy ({detail}); force to override"}
    if dry_run:
        changes = reconcile(api, plan, target, dry_run=True)
        return out | {"outcome": "dry_run", "changes": [c.to_dict() for c in changes],
                      "sentence": f"dry run: would move {state.site} -> {target}: "
                                  + (", ".join(f"{c.target} {c.current} -> {c.desired}" for c in changes) or "no changes")}
    generation = state.generation + 1
    claim = GenerationClaim(target, generation, now, reason, who, plan.version)
    taken = _claim(store, claim, now)
    if taken is not None:
        return out | {"outcome": "noop", "sentence": f"no transition: {taken}"}
    records.write(store, STATE_KEY, FailoverState(target, generation, now, reason, who, plan.version), now)
    out["generation"] = generation
    audit.record(store, FUNCTION, "failover.transition", claim.to_json() | {"from": state.site})
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
    return out | _applied(changes, f"moved {state.site} -> {target} (generation {generation})", moved=True)


def _claim(store: Store, claim: GenerationClaim, now: dt.datetime) -> str | None:
    """Create the generation's claim; None when this run holds it, else why not. A claim that is there but not
    believed (planted) is recorded, removed and claimed again: it never blocks a real transition."""
    key = claim_key(claim.generation)
    got = records.claim(store, key, claim, now, is_ours=lambda c: c == claim)
    if got.forged:
        log.error("failover claim not believed; removed it", key=key, error=got.forged)
        audit.record(store, FUNCTION, "failover.claim.forged", {"key": key, "reason": got.forged})
    if got.ours:
        return None
    holder = got.holder.value if got.holder else None
    return f"another run claimed generation {claim.generation}" + (f" ({holder.site})" if holder else "")


def _applied(changes: list[Change], head: str, *, moved: bool = False) -> dict[str, Any]:
    failed = [c for c in changes if c.error]
    done = [c for c in changes if c.applied]
    parts = [head]
    if done:
        parts.append("applied " + ", ".join(f"{c.target} {c.current} -> {c.desired}" for c in done))
    if failed:
        parts.append("NOT applied (next call retries): " + ", ".join(f"{c.target}: {c.error}" for c in failed))
    if not done and not failed:
        parts.append("DNS and IPs already match")
    outcome = "partial" if failed else ("applied" if done or moved else "noop")
    return {"outcome": outcome, "changes": [c.to_dict() for c in changes], "sentence": "; ".join(parts)}


def live_status(store: Store, api: DoApi, plan: Plan, now: dt.datetime | None = None) -> dict[str, Any]:
    where = read_where(store, plan, now or dt.datetime.now(dt.UTC))
    state = where.state.view()
    pending = reconcile(api, plan, state["site"], dry_run=True)
    mixed = [c.to_dict() for c in pending]
    sentence = (f"on {state['site']} since {state.get('since') or 'the start'} (generation {state['generation']}); "
                + ("DNS and IPs match" if not mixed else f"MIXED: {len(mixed)} item(s) differ from {state['site']}"))
    if where.problems:
        sentence += f"; NOT BELIEVED: {'; '.join(where.problems[:3])}"
    log.info("failover status", site=state["site"], mixed=len(mixed))
    return {"outcome": "status", "state": state, "pending": mixed, "sentence": sentence, "problems": where.problems}
