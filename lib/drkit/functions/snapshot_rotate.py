"""snapshot-rotate: droplet and volume snapshots by tag, on schedule, with safe retention.

Policies (DRKIT_SNAPSHOT_POLICIES, JSON; docs/snapshot-rotate.md):

    [{"tag": "dr:snapshot", "resources": ["droplet", "volume"], "schedule": "0 3 * * 0",
      "retention": "keep_last=4"}]

Per run: reconcile pending snapshot actions recorded in Spaces (completed ->
recorded, errored -> alert, stuck -> alert); then for every tagged resource,
take the snapshot of the current schedule slot unless it exists (slot claimed
with a conditional create, existing snapshots and in-progress snapshot actions
checked first: a POST that failed may still have started one); then apply
retention to that resource's own snapshots. Only snapshots named
`drkit-<resource name>-<slot>` of that resource are ever deleted, never a
person's; nothing is deleted while the resource's newest snapshot is pending,
and the newest completed one always stays (drkit.retention's safety rules).
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Mapping
from typing import Any

from drkit.core import log
from drkit.core.deadline import Clock, Deadline, utcnow
from drkit.core.errors import ConfigError, DoApiError
from drkit.digitalocean.api import DoApi
from drkit.digitalocean.snapshot_policy import SnapshotPolicy, parse_policies
from drkit.failover import rebuild
from drkit.platform import identity
from drkit.platform.notify import Notifier
from drkit.platform.runtime import Params
from drkit.policy.retention import Item, Verdict, plan
from drkit.storage import audit, records
from drkit.storage.records import RecordError
from drkit.storage.snapshots import STATUS_KEY, Pending, SlotClaim, SnapshotStatus
from drkit.storage.store import Store

FUNCTION = "snapshot-rotate"
PREFIX = "drkit-"
PENDING_KEY = "state/snapshots/pending.json"
STUCK = dt.timedelta(hours=6)


def snapshot_name(resource_name: str, slot: dt.datetime) -> str:
    return f"{PREFIX}{resource_name}-{slot:%Y%m%dT%H%MZ}"


def own(snapshots: list[dict[str, Any]], resource: Mapping[str, Any]) -> list[dict[str, Any]]:
    """drkit's snapshots of this resource: our prefix + its name + a slot stamp, and its id."""
    pattern = re.compile(rf"^{re.escape(PREFIX + str(resource['name']))}-\d{{8}}T\d{{4}}Z$")
    return [s for s in snapshots if str(s.get("resource_id")) == str(resource["id"]) and pattern.match(s["name"])]


def check(environ: Mapping[str, str]) -> str:
    """The configuration a rotation needs, validated as run() validates it (drkit config check); every problem at once."""
    from drkit.platform.config import collect_spaces

    problems: list[str] = []
    policies: list[SnapshotPolicy] = []
    try:
        policies = parse_policies(environ.get("DRKIT_SNAPSHOT_POLICIES", ""))
    except ConfigError as exc:
        problems += exc.problems
    Notifier.collect(environ, problems)
    try:
        DoApi.from_env(environ, Deadline(None))
    except ConfigError as exc:
        problems += exc.problems
    collect_spaces(environ, problems)
    identity.collect(environ, FUNCTION, problems)
    if problems:
        raise ConfigError(problems)
    return f"{len(policies)} snapshot polic(ies): {', '.join(p.tag for p in policies)}"


def _list(text: str) -> list[str]:
    return [x.strip() for x in text.split(",") if x.strip()]


def run(params: Mapping[str, Any], environ: Mapping[str, str], deadline: Deadline, *,
        clock: Clock = utcnow) -> dict[str, Any]:
    p = Params(params, known=("action", "dry_run", "tag", "droplet", "name", "region", "size", "reserved_ip", "wait",
                              "snapshot", "rebuild_id", "record", "domain", "old_ip"))
    action = p.string("action", "rotate")
    dry_run, only_tag = p.boolean("dry_run", False), p.string("tag", "")
    if action not in ("rotate", "rebuild"):
        p.problems.append(f"parameter 'action' must be rotate or rebuild, not {action!r}")
    if action == "rebuild" and not p.string("droplet", ""):
        p.problems.append("action rebuild needs droplet:<name of the droplet to rebuild>")
    p.finish()
    from drkit.platform.config import spaces_from_env

    store = Store(spaces_from_env(environ), identity=identity.from_env(environ, FUNCTION))
    if action == "rebuild":
        api = DoApi.from_env(environ, deadline)
        raw_policies = environ.get("DRKIT_SNAPSHOT_POLICIES", "").strip()
        result = rebuild.rebuild(
            api, store, p.string("droplet", ""), new_name=p.string("name", "") or None,
            region=p.string("region", "") or None, size=p.string("size", "") or None,
            reserved_ip=p.string("reserved_ip", "") or None, wait=p.boolean("wait", True), dry_run=dry_run,
            deadline=deadline, now=clock(), snapshot=p.string("snapshot", "latest") or "latest",
            rebuild_id=p.string("rebuild_id", "") or None, records=_list(p.string("record", "")),
            domains=_list(p.string("domain", "")), old_ip=p.string("old_ip", "") or None,
            policies=parse_policies(raw_policies) if raw_policies else ())
        return {"ok": result["outcome"] in ("applied", "dry_run", "pending"), "status": result["outcome"],
                "decision": result.pop("sentence"), **result}

    policies = parse_policies(environ.get("DRKIT_SNAPSHOT_POLICIES", ""))
    if only_tag and only_tag not in {x.tag for x in policies}:
        raise ConfigError(f"unknown tag policy {only_tag!r}; configured: {', '.join(x.tag for x in policies)}")
    notifier = Notifier.from_env(environ)
    api = DoApi.from_env(environ, deadline)
    now = clock()
    events: list[dict[str, Any]] = []
    try:
        got = records.read(store, PENDING_KEY, Pending, now)
    except RecordError as exc:  # planted: its actions are not ours; the snapshots themselves say what exists
        events.append({"event": "errored", "detail": f"pending snapshot record not believed ({exc.reason}); "
                                                     "started afresh"})
        got = None
    pending: dict[str, Any] = dict(got.value.actions) if got else {}
    events += reconcile_pending(api, store, pending, now, dry_run)
    summary: dict[str, Any] = {"created": [], "skipped": [], "deleted": [], "errors": [], "pending": []}
    snapshots = {rt: api.snapshots(rt) for rt in ("droplet", "volume")}
    listed: list[tuple[SnapshotPolicy, str, list[dict[str, Any]]]] = []  # what this run looked at, listed once
    for policy in policies:
        if only_tag and policy.tag != only_tag:
            continue
        slot = policy.slot(now)
        for rtype in policy.resources:
            resources = api.droplets_by_tag(policy.tag) if rtype == "droplet" else api.volumes_by_tag(policy.tag)
            listed.append((policy, rtype, resources))
            for res in resources:
                if deadline.remaining() < 20:
                    summary["errors"].append(f"{rtype} {res['name']}: not reached before the deadline; next run")
                    continue
                _one(api, store, policy, rtype, res, slot, snapshots[rtype], pending, now, dry_run, summary)
    summary["transfers"] = []
    status = _dr_and_status(api, store, listed, snapshots["droplet"], snapshots["volume"], now, dry_run, summary)
    if not dry_run:
        records.write(store, PENDING_KEY, Pending(pending), now)
        if not only_tag:  # the whole picture, or nothing: a partial status would hide the other tags' resources
            records.write(store, STATUS_KEY, SnapshotStatus(now, tuple(status)), now)
    summary["pending"] = [f"{v['resource_type']} {v['resource_name']}: {v['name']}" for v in pending.values()]
    failures = [e for e in events if e["event"] in ("errored", "stuck")] + \
        [{"event": "error", "detail": x} for x in summary["errors"]]
    decision = (f"{'dry run: would create' if dry_run else 'created'} {len(summary['created'])}, "
                f"{'would delete' if dry_run else 'deleted'} {len(summary['deleted'])}, "
                f"{len(summary['skipped'])} already done this slot, {len(pending)} pending"
                + (f"; DR-region copies: {'; '.join(summary['transfers'])}" if summary["transfers"] else "")
                + (f"; {len(failures)} problem(s)" if failures else ""))
    if failures and notifier.configured and not dry_run:
        summary["notifications"] = notifier.send({
            "event": "snapshots.problem", "function": FUNCTION, "status": "failed", "decision": decision,
            "failed_checks": [str(f.get("detail")) for f in failures]})
    return {"ok": not failures, "status": "dry_run" if dry_run else ("ok" if not failures else "partial"),
            "decision": decision, "actions": events, **summary}


def _dr_and_status(api: DoApi, store: Store, listed: list[tuple[SnapshotPolicy, str, list[dict[str, Any]]]],
                   droplet_snaps: list[dict[str, Any]], volume_snaps: list[dict[str, Any]], now: dt.datetime,
                   dry_run: bool, summary: dict[str, Any]) -> list[dict[str, Any]]:
    """Each policy's newest droplet snapshot copied to its DR region (once: a transfer under way is not started
    again), and every resource's newest snapshot here and there, for health-probe."""
    status = []
    for policy, rtype, resources in listed:
        for res in resources:
            mine = sorted(own(droplet_snaps if rtype == "droplet" else volume_snaps, res),
                          key=lambda s: str(s["created_at"]))
            newest = mine[-1] if mine else None
            dr = policy.dr_region if rtype == "droplet" else None
            in_dr = [s for s in mine if dr in (s.get("regions") or [])]
            status.append({"resource": f"{rtype} {res['name']}", "newest": newest["name"] if newest else None,
                           "newest_at": _iso(newest), "max_age_s": int(policy.max_age(now).total_seconds()),
                           "dr_region": dr, "dr_newest_at": _iso(in_dr[-1]) if in_dr else None})
            if not dr or newest is None or newest in in_dr:
                continue
            image = int(newest["id"])
            try:
                # a transfer under way, or one that finished since this run listed the snapshots: not again
                moving = [a for a in api.image_actions(image)
                          if a.get("type") == "transfer" and a.get("status") in ("in-progress", "completed")]
                if moving:
                    summary["transfers"].append(f"{newest['name']} -> {dr}: "
                                                + ("under way" if any(a.get("status") == "in-progress"
                                                                      for a in moving) else "done"))
                elif dry_run:
                    summary["transfers"].append(f"{newest['name']} -> {dr}: would start")
                else:
                    action = api.transfer_image(image, dr)
                    summary["transfers"].append(f"{newest['name']} -> {dr}: started")
                    audit.record(store, FUNCTION, "snapshot.transfer.started",
                                 {"snapshot": newest["name"], "id": newest["id"], "region": dr,
                                  "action_id": action.get("id")})
            except DoApiError as exc:
                summary["errors"].append(f"{rtype} {res['name']}: transfer of {newest['name']} to {dr}: {exc}")
    return status


def _iso(snap: dict[str, Any] | None) -> str | None:
    return str(snap["created_at"]).replace("Z", "+00:00") if snap else None


def reconcile_pending(api: DoApi, store: Store, pending: dict[str, Any], now: dt.datetime,
                      dry_run: bool) -> list[dict[str, Any]]:
    events = []
    for action_id, info in list(pending.items()):
        try:
            action = api.get_action(int(action_id))
        except DoApiError as exc:
            events.append({"event": "unknown", "detail": f"{info['name']}: {exc}"})
            continue
        status = action.get("status")
        if status in ("completed", "errored"):
            detail = f"{info['name']} completed" if status == "completed" else \
                f"snapshot {info['name']} of {info['resource_name']} FAILED"
            events.append({"event": status, "detail": detail})
            if not dry_run:
                pending.pop(action_id)
                audit.record(store, FUNCTION, f"snapshot.{status}", {"action_id": action_id, **info})
        elif now - dt.datetime.fromisoformat(info["started"]) > STUCK:
            events.append({"event": "stuck", "detail": f"{info['name']} still in progress after {STUCK}"})
    return events


def _one(api: DoApi, store: Store, policy: SnapshotPolicy, rtype: str, res: dict[str, Any], slot: dt.datetime,
         snapshots: list[dict[str, Any]], pending: dict[str, Any], now: dt.datetime, dry_run: bool,
         summary: dict[str, Any]) -> None:
    name = snapshot_name(str(res["name"]), slot)
    mine = own(snapshots, res)
    waiting = [v for v in pending.values() if str(v["resource_id"]) == str(res["id"])]
    label = f"{rtype} {res['name']}"
    if any(s["name"] == name for s in mine) or any(v["name"] == name for v in waiting):
        summary["skipped"].append(f"{label}: {name} exists")
    elif dry_run:
        summary["created"].append(f"{label}: {name}")
    else:
        claim = f"state/snapshots/slots/{rtype}-{res['id']}-{slot:%Y%m%dT%H%MZ}.json"
        got = records.claim(store, claim, SlotClaim(name, now), now)
        if got.forged:
            summary["errors"].append(f"{label}: a slot claim not signed by snapshot-rotate was in the way "
                                     f"({got.forged}); removed")
            audit.record(store, FUNCTION, "snapshot.claim.forged", {"key": claim, "reason": got.forged})
        if not got.ours:
            summary["skipped"].append(f"{label}: {name} claimed by another run")
        else:
            _create(api, store, rtype, res, name, slot, pending, now, summary, claim)
    waiting = [v for v in pending.values() if str(v["resource_id"]) == str(res["id"])]
    if waiting:
        return  # never prune while the newest snapshot is not complete
    items = [Item(s["id"], dt.datetime.fromisoformat(s["created_at"].replace("Z", "+00:00"))) for s in mine]
    for d in plan(items, policy.retention, now):
        if d.verdict is not Verdict.DELETE:
            continue
        snap = next(s for s in mine if s["id"] == d.id)
        if not dry_run:
            try:
                api.delete_snapshot(str(snap["id"]))
            except DoApiError as exc:
                summary["errors"].append(f"{label}: delete {snap['name']}: {exc}")
                continue
            audit.record(store, FUNCTION, "snapshot.deleted", {"resource": label, "snapshot": snap["name"],
                                                               "id": snap["id"], "policy": str(policy.retention)})
        summary["deleted"].append(f"{label}: {snap['name']}")


def _create(api: DoApi, store: Store, rtype: str, res: dict[str, Any], name: str, slot: dt.datetime,
            pending: dict[str, Any], now: dt.datetime, summary: dict[str, Any], claim: str) -> None:
    label = f"{rtype} {res['name']}"
    try:
        if rtype == "droplet":
            # A snapshot action of this slot may already run (an earlier POST answered 5xx, or a
            # person started one): adopt it instead of starting a second snapshot.
            for act in api.droplet_actions(int(res["id"])):
                started = dt.datetime.fromisoformat(str(act.get("started_at")).replace("Z", "+00:00"))
                if act.get("type") == "snapshot" and act.get("status") == "in-progress" and started >= slot:
                    pending[str(act["id"])] = {"resource_type": rtype, "resource_id": res["id"],
                                               "resource_name": res["name"], "name": name, "slot": slot.isoformat(),
                                               "started": started.isoformat()}
                    summary["skipped"].append(f"{label}: snapshot action {act['id']} already running")
                    return
        if rtype == "volume":
            snap = api.snapshot_volume(str(res["id"]), name, ["drkit"])
            audit.record(store, FUNCTION, "snapshot.created", {"resource": label, "snapshot": name, "id": snap["id"]})
        else:
            action = api.snapshot_droplet(int(res["id"]), name)
            pending[str(action["id"])] = {"resource_type": rtype, "resource_id": res["id"], "resource_name": res["name"],
                                          "name": name, "slot": slot.isoformat(), "started": now.isoformat()}
            audit.record(store, FUNCTION, "snapshot.started", {"resource": label, "snapshot": name,
                                                               "action_id": action["id"]})
        summary["created"].append(f"{label}: {name}")
    except DoApiError as exc:
        # The POST may have reached DigitalOcean anyway: release the claim so the next run
        # looks again (it finds the snapshot by name, or creates it).
        store.delete(claim)
        summary["errors"].append(f"{label}: {name} not started: {exc}")
        log.error("snapshot not started", resource=label, error=str(exc))


