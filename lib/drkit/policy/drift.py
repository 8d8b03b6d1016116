"""Drift between config backups (pure): files added, removed, changed; DNS records; firewall rules.

Each unit (a source, or one kind of DigitalOcean resource) is compared with the
newest earlier manifest in which *that unit* succeeded: a source that failed
last night does not make all of its files look added today. A unit with no
successful run before is `new`, not a wall of additions.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from drkit.policy import dns_records

LIST_LIMIT = 200  # per category in the report; counts are always exact


def _files(manifest: Mapping[str, Any], unit: str) -> dict[str, str]:
    return {f["path"]: f["sha256"] for f in manifest.get("files", [])
            if f.get("source") == unit and not f.get("incomplete")}


def _details(manifest: Mapping[str, Any], unit: str) -> dict[str, Any]:
    for s in manifest.get("sources", []):
        if s.get("name") == unit:
            return dict(s.get("details") or {})
    return {}


def firewall_changes(old: Mapping[str, list[str]], new: Mapping[str, list[str]]) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for name in sorted(set(old) | set(new)):
        if name not in old:
            out.append({"firewall": name, "change": "added", "text": f"firewall {name} added ({len(new[name])} rules)"})
            continue
        if name not in new:
            out.append({"firewall": name, "change": "removed", "text": f"firewall {name} removed"})
            continue
        for rule in sorted(set(new[name]) - set(old[name])):
            out.append({"firewall": name, "change": "rule added", "text": f"firewall {name}: + {rule}"})
        for rule in sorted(set(old[name]) - set(new[name])):
            out.append({"firewall": name, "change": "rule removed", "text": f"firewall {name}: - {rule}"})
    return out


def dns_changes(old: Mapping[str, list[dict[str, Any]]], new: Mapping[str, list[dict[str, Any]]]) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for domain in sorted(set(old) | set(new)):
        if domain not in old:
            out.append({"domain": domain, "change": "domain added",
                        "text": f"domain {domain} added ({len(new[domain])} records)"})
        elif domain not in new:
            out.append({"domain": domain, "change": "domain removed", "text": f"domain {domain} removed"})
        else:
            out += dns_records.changes(domain, old[domain], new[domain])
    return out


def compare(current: Mapping[str, Any], baselines: Mapping[str, Mapping[str, Any]]) -> dict[str, Any]:
    """Drift of `current` against `baselines` (unit -> the newest earlier manifest where it succeeded)."""
    files: dict[str, dict[str, list[str]]] = {}
    dns: list[dict[str, Any]] = []
    firewalls: list[dict[str, Any]] = []
    new_units: list[str] = []
    not_compared: dict[str, str] = {}
    since: dict[str, str] = {}
    for unit in current.get("sources", []):
        name = unit["name"]
        if unit.get("status") != "ok":
            not_compared[name] = f"{unit.get('status')} in this run"
            continue
        prev = baselines.get(name)
        if prev is None:
            new_units.append(name)
            continue
        since[name] = str(prev.get("id"))
        now_files, then_files = _files(current, name), _files(prev, name)
        added = sorted(set(now_files) - set(then_files))
        removed = sorted(set(then_files) - set(now_files))
        changed = sorted(p for p in set(now_files) & set(then_files) if now_files[p] != then_files[p])
        if added or removed or changed:
            files[name] = {"added": added, "removed": removed, "changed": changed}
        now_d, then_d = unit.get("details") or {}, _details(prev, name)
        if "dns" in now_d and "dns" in then_d:
            dns += dns_changes(then_d["dns"], now_d["dns"])
        if "firewall_rules" in now_d and "firewall_rules" in then_d:
            firewalls += firewall_changes(then_d["firewall_rules"], now_d["firewall_rules"])
    counts = {k: sum(len(v[k]) for v in files.values()) for k in ("added", "removed", "changed")}
    counts |= {"dns": len(dns), "firewalls": len(firewalls)}
    report: dict[str, Any] = {
        "changed": any(counts.values()),
        "counts": counts,
        "since": since,
        "files": {u: {k: v[:LIST_LIMIT] for k, v in lists.items()} for u, lists in files.items()},
        "dns": [{k: v for k, v in c.items() if k in ("domain", "change", "type", "name", "text")} for c in dns[:LIST_LIMIT]],
        "firewalls": firewalls[:LIST_LIMIT],
        "new_units": new_units,
        "not_compared": not_compared,
    }
    report["summary"] = summary(report)
    return report


def summary(report: Mapping[str, Any]) -> str:
    c = report["counts"]
    parts = []
    if c["added"] or c["removed"] or c["changed"]:
        parts.append(f"files: {c['changed']} changed, {c['added']} added, {c['removed']} removed")
    for key, label in (("dns", "DNS"), ("firewalls", "firewalls")):
        if c[key]:
            shown = "; ".join(x["text"] for x in report[key][:3])
            more = f" (+{c[key] - 3} more)" if c[key] > 3 else ""
            parts.append(f"{label}: {shown}{more}")
    if report["new_units"]:
        parts.append(f"first successful run of {', '.join(report['new_units'])}")
    if report["not_compared"]:
        parts.append(f"not compared: {', '.join(report['not_compared'])}")
    if not parts:
        since = sorted(set(report["since"].values()))
        return f"no changes since {since[-1]}" if since else "no changes"
    return ("drift: " if report["changed"] else "") + "; ".join(parts)
