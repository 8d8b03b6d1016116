"""The DigitalOcean account as files: one JSON document per resource, a BIND zone per domain.

Each kind is collected on its own (a token without the `database:read` scope
fails `databases`, not the others). Documents are written with sorted keys and
without fields that change on their own (deployment progress, snapshot id
lists, status timestamps), so that a drift report shows changes people made.
Passwords and connection URIs of database clusters are removed: a restore
creates new credentials, and the archive should not widen who can read them.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from typing import Any, Protocol

from drkit.digitalocean.api import DoApi
from drkit.policy import dns_records

REDACTED = "<removed by drkit>"
SECRET_KEYS = ("password", "uri", "private_uri", "access_key", "secret_key", "ca_certificate")
VOLATILE = {
    "apps": ("active_deployment", "in_progress_deployment", "pending_deployment", "last_deployment_created_at",
             "last_deployment_active_at", "updated_at", "pinned_deployment", "dedicated_ips"),
    "droplets": ("snapshot_ids", "backup_ids", "next_backup_window", "locked"),
    "firewalls": ("pending_changes", "status"),
    "load_balancers": ("status",),
    "databases": ("status",),
}


class Sink(Protocol):
    def add_bytes(self, path: str, data: bytes) -> Any: ...


def doc(obj: Any) -> bytes:
    return (json.dumps(obj, indent=2, sort_keys=True, ensure_ascii=False, default=str) + "\n").encode()


def file_name(name: Any, ident: Any, taken: set[str]) -> str:
    """A stable file name from a resource's name; its id is added only when two share a name."""
    base = re.sub(r"[^A-Za-z0-9._-]+", "_", str(name or "")).strip("._") or "unnamed"
    if base in taken:
        base = f"{base}-{ident}"
    taken.add(base)
    return base


def strip(obj: dict[str, Any], kind: str) -> dict[str, Any]:
    return {k: v for k, v in obj.items() if k not in VOLATILE.get(kind, ())}


def redact_secrets(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {k: (REDACTED if k in SECRET_KEYS and v not in (None, "") else redact_secrets(v)) for k, v in obj.items()}
    if isinstance(obj, list):
        return [redact_secrets(v) for v in obj]
    return obj


def firewall_rules(fw: dict[str, Any]) -> list[str]:
    """One readable line per rule: `inbound tcp 22 from addresses 0.0.0.0/0`."""
    out = []
    for direction, key, word in (("inbound", "inbound_rules", "sources"), ("outbound", "outbound_rules", "destinations")):
        for rule in fw.get(key) or []:
            ends = rule.get(word) or {}
            parts = [f"{k} {','.join(map(str, sorted(v)))}" for k, v in sorted(ends.items()) if v]
            preposition = "from" if direction == "inbound" else "to"
            out.append(f"{direction} {rule.get('protocol')} {rule.get('ports') or 'all'} {preposition} "
                       f"{'; '.join(parts) or 'nowhere'}")
    return sorted(out)


def collect(api: DoApi, kind: str, sink: Sink) -> dict[str, Any]:
    """Write one kind's documents; return its details for the manifest (counts, dns, firewall rules)."""
    return COLLECTORS[kind](api, sink)


def _each(api: DoApi, kind: str, sink: Sink, name_of: Callable[[dict[str, Any]], Any]) -> dict[str, Any]:
    items = api.list_all(kind)
    taken: set[str] = set()
    for item in sorted(items, key=lambda x: (str(name_of(x)), str(x.get("id")))):
        sink.add_bytes(f"{file_name(name_of(item), item.get('id'), taken)}.json", doc(strip(item, kind)))
    return {"count": len(items)}


def _apps(api: DoApi, sink: Sink) -> dict[str, Any]:
    apps = api.list_all("apps")
    taken: set[str] = set()
    for app in sorted(apps, key=lambda a: (str((a.get("spec") or {}).get("name")), str(a.get("id")))):
        base = file_name((app.get("spec") or {}).get("name"), app.get("id"), taken)
        sink.add_bytes(f"{base}.spec.json", doc(app.get("spec") or {}))
        meta = {k: v for k, v in strip(app, "apps").items() if k != "spec"}
        sink.add_bytes(f"{base}.json", doc(meta))
    return {"count": len(apps)}


def _domains(api: DoApi, sink: Sink) -> dict[str, Any]:
    domains = sorted(api.list_domains(), key=lambda d: str(d.get("name")))
    dns: dict[str, list[dict[str, Any]]] = {}
    records_total = 0
    for d in domains:
        name = str(d["name"])
        records = api.list_records(name)
        records_total += len(records)
        ordered = sorted(records, key=lambda r: (str(r.get("type")), str(r.get("name")), str(r.get("data")), str(r.get("id"))))
        sink.add_bytes(f"{name}.records.json", doc(ordered))
        sink.add_bytes(f"{name}.zone", dns_records.zone_file(name, records, d.get("ttl")).encode())
        dns[name] = [dns_records.normalize(r) for r in ordered]
    sink.add_bytes("index.json", doc([{k: v for k, v in d.items() if k != "zone_file"} for d in domains]))
    return {"count": len(domains), "records": records_total, "dns": dns}


def _firewalls(api: DoApi, sink: Sink) -> dict[str, Any]:
    firewalls = api.list_all("firewalls")
    taken: set[str] = set()
    rules: dict[str, list[str]] = {}
    for fw in sorted(firewalls, key=lambda f: (str(f.get("name")), str(f.get("id")))):
        base = file_name(fw.get("name"), fw.get("id"), taken)
        sink.add_bytes(f"{base}.json", doc(strip(fw, "firewalls")))
        rules[base] = firewall_rules(fw)
    return {"count": len(firewalls), "firewall_rules": rules}


def _reserved_ips(api: DoApi, sink: Sink) -> dict[str, Any]:
    ips = api.list_all("reserved_ips")
    slim = []
    for ip in sorted(ips, key=lambda i: str(i.get("ip"))):
        droplet = ip.get("droplet") or None
        slim.append({**ip, "droplet": {"id": droplet.get("id"), "name": droplet.get("name")} if droplet else None})
    sink.add_bytes("reserved_ips.json", doc(slim))
    return {"count": len(ips)}


def _databases(api: DoApi, sink: Sink) -> dict[str, Any]:
    clusters = api.database_clusters()
    taken: set[str] = set()
    for c in sorted(clusters, key=lambda c: (str(c.get("name")), str(c.get("id")))):
        base = file_name(c.get("name"), c.get("id"), taken)
        sink.add_bytes(f"{base}.json", doc(redact_secrets(strip(c, "databases"))))
        sink.add_bytes(f"{base}.config.json", doc(api.database_config(str(c["id"]))))
        sink.add_bytes(f"{base}.trusted_sources.json", doc(api.database_firewall(str(c["id"]))))
    return {"count": len(clusters)}


def _projects(api: DoApi, sink: Sink) -> dict[str, Any]:
    projects = api.list_all("projects")
    taken: set[str] = set()
    for p in sorted(projects, key=lambda p: (str(p.get("name")), str(p.get("id")))):
        resources = sorted(str(r.get("urn")) for r in api.project_resources(str(p["id"])))
        sink.add_bytes(f"{file_name(p.get('name'), p.get('id'), taken)}.json",
                       doc({**{k: v for k, v in p.items() if k != "updated_at"}, "resources": resources}))
    return {"count": len(projects)}


COLLECTORS: dict[str, Callable[[DoApi, Sink], dict[str, Any]]] = {
    "apps": _apps,
    "domains": _domains,
    "firewalls": _firewalls,
    "load_balancers": lambda api, sink: _each(api, "load_balancers", sink, lambda x: x.get("name")),
    "droplets": lambda api, sink: _each(api, "droplets", sink, lambda x: x.get("name")),
    "volumes": lambda api, sink: _each(api, "volumes", sink, lambda x: x.get("name")),
    "reserved_ips": _reserved_ips,
    "vpcs": lambda api, sink: _each(api, "vpcs", sink, lambda x: x.get("name")),
    "databases": _databases,
    "projects": _projects,
}
