"""DNS records as data (pure): normal form, BIND zone text, record-level changes, restore plans.

A record is what the DigitalOcean API returns for `/v2/domains/{d}/records`;
its normal form keeps the fields that define it (`type name data ttl priority
port weight flags tag`) and drops the id. Records are grouped by (type, name);
within a group, values that are equal on both sides are unchanged and the
rest pair up as changes, so `A erp 1.2.3.4 -> 5.6.7.8` reads as one change,
not a removal and an addition.

DigitalOcean manages the SOA record and the apex NS records itself: they are
shown and diffed but never created, updated or deleted by a restore.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

FIELDS = ("type", "name", "data", "ttl", "priority", "port", "weight", "flags", "tag")
VALUE_FIELDS = FIELDS[2:]
HOST_TYPES = ("CNAME", "MX", "NS", "SRV")


def normalize(record: dict[str, Any]) -> dict[str, Any]:
    return {k: record.get(k) for k in FIELDS}


def fqdn(name: str, domain: str) -> str:
    return domain if name in ("@", "") else f"{name}.{domain}"


def managed_by_do(record: dict[str, Any]) -> bool:
    """SOA and apex NS: created and kept by DigitalOcean, not by drkit."""
    return record.get("type") == "SOA" or (record.get("type") == "NS" and record.get("name") in ("@", ""))


def value_text(record: dict[str, Any]) -> str:
    """The record's value as an operator reads it: `10 mail.example.net`, `0 issue "letsencrypt.org"`."""
    t, data = record.get("type"), str(record.get("data"))
    if t == "MX":
        return f"{record.get('priority')} {data}"
    if t == "SRV":
        return f"{record.get('priority')} {record.get('weight')} {record.get('port')} {data}"
    if t == "CAA":
        return f"{record.get('flags')} {record.get('tag')} \"{data}\""
    return data


def line(record: dict[str, Any], domain: str) -> str:
    return f"{record.get('type')} {fqdn(str(record.get('name')), domain)} {value_text(record)} (ttl {record.get('ttl')})"


def _key(record: dict[str, Any]) -> tuple[str, str]:
    return str(record.get("type")), str(record.get("name"))


def _value(record: dict[str, Any]) -> tuple[Any, ...]:
    return tuple(record.get(k) for k in VALUE_FIELDS)


def _sort_key(record: dict[str, Any]) -> tuple[str, ...]:
    return tuple("" if record.get(k) is None else str(record.get(k)) for k in FIELDS)


def _groups(records: Iterable[dict[str, Any]]) -> dict[tuple[str, str], list[dict[str, Any]]]:
    out: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for r in records:
        out.setdefault(_key(r), []).append(normalize(r))
    for group in out.values():
        group.sort(key=_sort_key)
    return out


Pairs = list[tuple[dict[str, Any], dict[str, Any]]]


def _match(old: list[dict[str, Any]], new: list[dict[str, Any]]) -> tuple[Pairs, Pairs, list[dict[str, Any]],
                                                                           list[dict[str, Any]]]:
    """One (type, name) group: (equal pairs, changed pairs, only-old, only-new).

    Equal values pair first; what is left pairs up in order as changes.
    """
    new_left = list(new)
    equal: Pairs = []
    old_left = []
    for r in old:
        found = next((i for i, n in enumerate(new_left) if _value(n) == _value(r)), None)
        if found is None:
            old_left.append(r)
        else:
            equal.append((r, new_left.pop(found)))
    n = min(len(old_left), len(new_left))
    return equal, list(zip(old_left[:n], new_left[:n], strict=True)), old_left[n:], new_left[n:]


def changes(domain: str, old: Iterable[dict[str, Any]], new: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """Record-level changes from `old` to `new` for one domain, each with a readable `text`."""
    before, after = _groups(old), _groups(new)
    out: list[dict[str, Any]] = []
    for key in sorted(set(before) | set(after)):
        _, pairs, removed, added = _match(before.get(key, []), after.get(key, []))
        name = fqdn(key[1], domain)
        for o, n in pairs:
            if value_text(o) == value_text(n):
                text = f"{key[0]} {name} ttl {o.get('ttl')} → {n.get('ttl')}"
            else:
                text = f"{key[0]} {name} {value_text(o)} → {value_text(n)}"
                if o.get("ttl") != n.get("ttl"):
                    text += f" (ttl {o.get('ttl')} → {n.get('ttl')})"
            out.append({"domain": domain, "change": "changed", "type": key[0], "name": name, "old": o, "new": n,
                        "text": text})
        for o in removed:
            out.append({"domain": domain, "change": "removed", "type": key[0], "name": name, "old": o,
                        "text": f"- {key[0]} {name} {value_text(o)}"})
        for n in added:
            out.append({"domain": domain, "change": "added", "type": key[0], "name": name, "new": n,
                        "text": f"+ {key[0]} {name} {value_text(n)}"})
    return out


# -- BIND zone file ------------------------------------------------------------------------------

def _host(data: str, domain: str) -> str:
    if data in ("@", ""):
        return f"{domain}."
    return data if data.endswith(".") else f"{data}."


def _txt(data: str) -> str:
    raw = data[1:-1] if len(data) >= 2 and data[0] == data[-1] == '"' else data
    escaped = raw.replace("\\", "\\\\").replace('"', '\\"')
    return " ".join(f'"{escaped[i:i + 255]}"' for i in range(0, max(len(escaped), 1), 255))


def zone_file(domain: str, records: Sequence[dict[str, Any]], default_ttl: int | None = None) -> str:
    """RFC 1035 master-file text for one domain (loads into BIND, knot, or another provider's import).

    The SOA that DigitalOcean reports is not a usable SOA record; it is written as a comment.
    """
    lines = [f"; zone {domain} exported by drkit from the DigitalOcean API",
             "; SOA and apex NS are managed by DigitalOcean; restore with `drkit dns restore`",
             f"$ORIGIN {domain}.", f"$TTL {default_ttl or 1800}"]
    for r in sorted((normalize(x) for x in records), key=lambda r: (r["name"] != "@", str(r["name"]), str(r["type"]),
                                                                      _sort_key(r))):
        t, name, data, ttl = str(r["type"]), str(r["name"]), str(r["data"]), r["ttl"]
        owner = "@" if name in ("@", "") else name
        if t == "SOA":
            lines.append(f"; {owner} {ttl} IN SOA (managed by DigitalOcean)")
            continue
        if t in ("CNAME", "NS"):
            value = _host(data, domain)
        elif t == "MX":
            value = f"{r['priority']} {_host(data, domain)}"
        elif t == "SRV":
            value = f"{r['priority']} {r['weight']} {r['port']} {_host(data, domain)}"
        elif t == "CAA":
            value = f'{r["flags"]} {r["tag"]} "{data}"'
        elif t == "TXT":
            value = _txt(data)
        else:
            value = data
        lines.append(f"{owner}\t{ttl}\tIN\t{t}\t{value}")
    return "\n".join(lines) + "\n"


# -- restore plan ---------------------------------------------------------------------------------

@dataclass(frozen=True)
class Step:
    action: str  # create | update | delete | keep | skip
    record: dict[str, Any]  # the backed-up record (create/update/keep/skip) or the current one (delete)
    current_id: int | None = None  # the live record to update/delete
    current: dict[str, Any] | None = None
    why: str = ""

    def text(self, domain: str) -> str:
        if self.action == "update" and self.current is not None:
            return f"update {self.record['type']} {fqdn(str(self.record['name']), domain)}: " \
                   f"{value_text(self.current)} (ttl {self.current.get('ttl')}) → " \
                   f"{value_text(self.record)} (ttl {self.record.get('ttl')})"
        verb = {"create": "create", "delete": "delete", "keep": "ok    ", "skip": "skip  "}[self.action]
        out = f"{verb} {line(self.record, domain)}"
        return f"{out}  [{self.why}]" if self.why else out


def restore_plan(backup: Sequence[dict[str, Any]], current: Sequence[dict[str, Any]], *,
                 delete_extra: bool = False) -> list[Step]:
    """What makes `current` hold every backed-up record again (pure).

    Equal records are kept; within a (type, name) group, differing live records
    are updated to backed-up values pairwise; backed-up values left over are
    created; live values left over are deleted only with `delete_extra`
    (otherwise reported as `skip`). DO-managed records are never touched.
    """
    live_by_key: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for r in current:
        live_by_key.setdefault(_key(r), []).append(dict(r))
    steps: list[Step] = []
    for key, wanted in sorted(_groups(backup).items()):
        live = sorted(live_by_key.pop(key, []), key=_sort_key)
        if wanted and managed_by_do(wanted[0]):
            steps += [Step("skip", w, why="managed by DigitalOcean") for w in wanted]
            continue
        equal, changed, extra, missing = _match(live, wanted)
        steps += [Step("keep", w, c.get("id"), c) for c, w in equal]
        steps += [Step("update", w, c.get("id"), c) for c, w in changed]
        steps += [Step("create", w) for w in missing]
        steps += [_extra(c, delete_extra) for c in extra]
    for key in sorted(live_by_key):
        for c in live_by_key[key]:
            if managed_by_do(c):
                continue
            steps.append(_extra(c, delete_extra))
    return steps


def _extra(record: dict[str, Any], delete: bool) -> Step:
    if delete:
        return Step("delete", normalize(record), record.get("id"), record, "not in the backup")
    return Step("skip", normalize(record), record.get("id"), record, "not in the backup; kept (--delete-extra removes)")


def api_body(record: dict[str, Any]) -> dict[str, Any]:
    """The request body for create (POST) or update (PATCH/PUT): every field, null where unset.

    DO's spec requires per type fields that are meaningless for it (SRV: flags and tag), all
    nullable: sending the full record, as the spec's own example does, satisfies every type.
    """
    return {k: record.get(k) for k in FIELDS}
