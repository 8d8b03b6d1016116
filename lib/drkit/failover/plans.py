"""The failover plan (JSON): sites, DNS records, reserved IPs, apps, health URLs, trigger, hold time (pure parsing).

Plan (JSON, DRKIT_FAILOVER_PLAN or the signed Spaces object DRKIT_FAILOVER_PLAN_KEY):

    {"sites": ["primary", "dr"],
     "records": [{"domain": "example.net", "name": "erp", "type": "A", "ttl": 60,
                  "values": {"primary": "203.0.113.10", "dr": "198.51.100.20"}}],
     "reserved_ips": [{"ip": "203.0.113.50", "droplets": {"primary": 1111, "dr": 2222}}],
     "apps": [{"id": "<app uuid>", "redeploy_on": ["dr"]}],
     "health": {"primary": "https://primary.example.net/health", "dr": "https://dr.example.net/health"},
     "trigger": {"labels": {"alertname": "PrimarySiteDown"}},
     "min_hold": "30m", "auto_failback": false, "version": 3}

`version` (a whole number, default 0) only ever grows: dns-failover remembers the highest version it
acted on (in its signed state) and refuses an older signed plan replayed over the current one;
`drkit failover plan push` sets it to one more than the plan in the bucket when the file has none."""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass, field

from drkit.core.errors import ConfigError
from drkit.policy.durations import parse_interval

WRITERS = ("operator",)  # whose key signs a failover plan kept in the bucket
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
    version: int = 0

    @property
    def primary(self) -> str:
        return self.sites[0]

    @property
    def dr(self) -> str:
        return self.sites[1]


def parse_plan(text: str, where: str = "DRKIT_FAILOVER_PLAN") -> Plan:
    from drkit.platform.strictjson import StrictJSONError, loads

    try:
        p: object = loads(text.encode())  # a key given twice is refused, never "the last one wins"
    except StrictJSONError as exc:
        raise ConfigError(f"{where} is not acceptable JSON ({str(exc).replace('body', 'the plan')})") from None
    if not isinstance(p, dict):
        raise ConfigError(f"{where} must be a JSON object")
    problems: list[str] = []
    unknown = sorted(set(p) - {"sites", "records", "reserved_ips", "apps", "health", "trigger", "min_hold", "auto_failback",
                               "version"})
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
    version = p.get("version", 0)
    if isinstance(version, bool) or not isinstance(version, int) or not 0 <= version < 2**53:
        problems.append(f"{where}: version must be a whole number (it only ever grows)")
        version = 0
    if problems:
        raise ConfigError(problems)
    return Plan(tuple(sites), tuple(records), tuple(ips), tuple(apps), health, trigger, hold,
                bool(p.get("auto_failback", False)), version)
