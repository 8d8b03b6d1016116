"""Scenario 3, a droplet lost: a new droplet from a drkit snapshot, its reserved IP and DNS moved, finished on a rerun.

* **Which snapshot**: the newest completed drkit snapshot of the droplet (`latest`) or a given id; its
  age is shown, and a warning says when it is older than the droplet's snapshot policy allows
  (two periods of the policy's schedule).
* **Once**: the rebuild has an id (the droplet and the snapshot, or the operator's `rebuild_id`), carried
  as a tag on the new droplet. A rerun finds the droplet it created and continues; it never creates a
  second one.
* **Finished**: the new droplet's public IPv4 is printed; the reserved IP is reassigned; the DNS records
  that named the old droplet's IP (in the signed failover plan's domains, or the `records` given) now
  name the new one. A step that fails names itself and what exists now; the same command finishes it.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import re
import time
from collections.abc import Sequence
from typing import Any

from drkit.core.deadline import Deadline
from drkit.core.errors import ConfigError, DoApiError
from drkit.digitalocean.api import DoApi
from drkit.digitalocean.snapshot_policy import SnapshotPolicy
from drkit.storage import audit
from drkit.storage.store import Store

PREFIX = "drkit-"
FUNCTION = "snapshot-rotate"
_SLOT = re.compile(r"-(\d{8}T\d{4}Z)$")


def public_ipv4(droplet: dict[str, Any] | None) -> str | None:
    for net in ((droplet or {}).get("networks") or {}).get("v4") or []:
        if net.get("type") == "public":
            return str(net.get("ip_address"))
    return None


def rebuild_tag(droplet: str, snapshot_id: Any, rebuild_id: str | None) -> str:
    """The tag that marks the droplet one rebuild created (letters, digits, dashes: DO's tag grammar)."""
    key = rebuild_id or hashlib.sha256(f"{droplet}\0{snapshot_id}".encode()).hexdigest()[:12]
    return "drkit-rebuild-" + re.sub(r"[^A-Za-z0-9_-]", "-", key)[:40]


def policy_max_age(policies: Sequence[SnapshotPolicy], tags: Sequence[str], now: dt.datetime) -> dt.timedelta | None:
    """How old the newest snapshot of a droplet with `tags` may be (its policy's limit), or None without one."""
    found = [p for p in policies if p.tag in tags and "droplet" in p.resources]
    return found[0].max_age(now) if found else None


def _age(d: dt.timedelta) -> str:
    h = d.total_seconds() / 3600
    return f"{h:.1f} h" if h < 48 else f"{h / 24:.1f} days"


def rebuild(api: DoApi, store: Store, droplet: str, *, new_name: str | None, region: str | None, size: str | None,
            reserved_ip: str | None, wait: bool, dry_run: bool, deadline: Deadline, now: dt.datetime,
            snapshot: str = "latest", rebuild_id: str | None = None, records: Sequence[str] = (),
            domains: Sequence[str] = (), policies: Sequence[SnapshotPolicy] = (), old_ip: str | None = None
            ) -> dict[str, Any]:
    existing = [d for d in api.droplets_by_tag_or_all(None) if d["name"] == droplet]
    original = existing[0] if existing else None
    pattern = re.compile(rf"^{re.escape(PREFIX + droplet)}-\d{{8}}T\d{{4}}Z$")
    snaps = [s for s in api.snapshots("droplet") if pattern.match(s["name"])
             and (original is None or str(s["resource_id"]) == str(original["id"]))]
    if snapshot == "latest":
        if not snaps:
            raise ConfigError(f"no completed drkit snapshot of droplet {droplet!r} (names {PREFIX}{droplet}-<slot>)")
        chosen = max(snaps, key=lambda s: s["created_at"])
    else:
        given = [s for s in api.snapshots("droplet") if str(s["id"]) == snapshot]
        if not given:
            raise ConfigError(f"no droplet snapshot with id {snapshot}: `drkit droplet rebuild {droplet} --dry-run` "
                              "names the newest, `doctl compute snapshot list --resource droplet` lists them all")
        chosen = given[0]
    age = now - dt.datetime.fromisoformat(str(chosen["created_at"]).replace("Z", "+00:00"))
    tags = list((original or {}).get("tags", []))
    limit = policy_max_age(policies, tags, now)
    warnings = ([f"snapshot {chosen['name']} is {_age(age)} old, older than the policy allows ({_age(limit)}): "
                 "the rebuilt droplet lacks everything since; is snapshot-rotate running?"]
                if limit is not None and age > limit else [])
    region = region or (original or {}).get("region", {}).get("slug")
    size = size or (original or {}).get("size_slug")
    if not region or not size:
        raise ConfigError(f"droplet {droplet!r} no longer exists: give region and size for the rebuild")
    mark = rebuild_tag(droplet, chosen["id"], rebuild_id)
    slot = _SLOT.search(str(chosen["name"]))
    body: dict[str, Any] = {"name": new_name or f"{droplet}-rebuilt-{slot.group(1) if slot else chosen['id']}".lower(),
                            "region": region, "size": size, "image": int(chosen["id"]), "tags": [*tags, mark]}
    if original and original.get("vpc_uuid"):
        body["vpc_uuid"] = original["vpc_uuid"]
    old = old_ip or public_ipv4(original)
    planned = {"snapshot": chosen["name"], "snapshot_id": chosen["id"], "snapshot_age_s": round(age.total_seconds()),
               "create": body, "reserved_ip": reserved_ip, "old_ip": old, "rebuild_tag": mark}
    seen = f"{chosen['name']} ({_age(age)} old)"
    if dry_run:
        return {"outcome": "dry_run", "plan": planned, "warnings": warnings,
                "sentence": f"dry run: would create {body['name']} ({size}, {region}) from {seen}"
                            + (f"; WARNING: {warnings[0]}" if warnings else "")}
    step, created = "create the droplet", None
    try:
        found = api.droplets_by_tag(mark)
        if found:
            created = found[0]  # an earlier run of this rebuild created it: continue with it
        else:
            created = api.create_droplet(body)
            audit.record(store, FUNCTION, "droplet.rebuilt", {"from": droplet, "snapshot": chosen["name"],
                                                               "droplet_id": created["id"], "name": body["name"]})
        step = "wait until the droplet is active"
        status = created.get("status", "new")
        while wait and status != "active" and deadline.remaining() > 25:
            time.sleep(min(5.0, max(0.5, deadline.remaining() - 25)))
            created = api.get_droplet(int(created["id"]))
            status = created.get("status", status)
        ip = public_ipv4(created) or public_ipv4(api.get_droplet(int(created["id"])))
        out: dict[str, Any] = {"outcome": "applied" if status == "active" else "pending", "droplet_id": created["id"],
                               "droplet_status": status, "ip": ip, "plan": planned, "warnings": warnings,
                               "reused": bool(found), "dns_updated": []}
        if status == "active" and reserved_ip:
            step = f"assign reserved IP {reserved_ip}"
            current = api.get_reserved_ip(reserved_ip).get("droplet") or {}
            if str(current.get("id")) != str(created["id"]):
                api.assign_reserved_ip(reserved_ip, int(created["id"]))
                audit.record(store, FUNCTION, "reserved_ip.assigned", {"ip": reserved_ip, "droplet_id": created["id"]})
        if status == "active" and ip and (old or records):
            step = "update the DNS records"
            out["dns_updated"] = _move_records(api, store, old, ip, records, domains)
    except DoApiError as exc:
        exists = (f"droplet {created.get('name')} (id {created['id']}, {public_ipv4(created) or 'no IP yet'}) exists"
                  if created else "nothing was created")
        raise DoApiError(f"step '{step}' failed: {exc}. Now: {exists}; run the same command again to finish "
                         f"(it continues with that droplet)", http_status=exc.http_status) from None
    out["sentence"] = (f"{'found' if found else 'created'} droplet {created.get('name', body['name'])} "
                       f"(id {created['id']}, IP {ip or 'not yet'}) from {seen}: {status}"
                       + (f"; reserved IP {reserved_ip} on it" if reserved_ip and status == "active" else "")
                       + (f"; DNS: {', '.join(out['dns_updated'])} now {ip}" if out["dns_updated"] else "")
                       + ("" if status == "active" else f"; run it again to finish (doctl compute droplet get "
                                                        f"{created['id']})")
                       + (f"; WARNING: {warnings[0]}" if warnings else ""))
    return out


def _move_records(api: DoApi, store: Store, old: str | None, new: str, records: Sequence[str],
                  domains: Sequence[str]) -> list[str]:
    """A records that named `old` (in `domains`), or the named `records` (`domain:name`), now name `new`."""
    moved = []
    wanted = [tuple(r.split(":", 1)) for r in records]
    for domain in sorted({*domains, *(d for d, _ in wanted)}):
        for rec in api.list_records(domain, rtype="A"):
            named = (domain, rec["name"]) in wanted
            if (named or (old and rec["data"] == old)) and rec["data"] != new:
                api.update_record(domain, int(rec["id"]), "A", new, int(rec.get("ttl") or 300))
                moved.append(f"{rec['name']}.{domain}" if rec["name"] != "@" else domain)
                audit.record(store, FUNCTION, "dns.record.updated", {"domain": domain, "name": rec["name"],
                                                                      "from": rec["data"], "to": new})
    return moved
