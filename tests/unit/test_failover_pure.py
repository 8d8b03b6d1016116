"""dns-failover's pure parts, and the fake DO API's strictness (a misspelt field must fail)."""

from __future__ import annotations

import datetime as dt
import json

import pytest

from drkit.core.errors import ConfigError
from drkit.failover import plans, reconcile
from drkit_dev.fakedo import load_spec, unknown_keys

T0 = dt.datetime(2026, 11, 26, 3, 0, tzinfo=dt.UTC)
PLAN = plans.parse_plan(json.dumps({
    "sites": ["primary", "dr"], "min_hold": "30m",
    "records": [{"domain": "example.net", "name": "@", "type": "A", "ttl": 60,
                 "values": {"primary": "203.0.113.10", "dr": "198.51.100.20"}}]}))


def state(site: str, minutes_ago: int | None) -> dict[str, object]:
    since = None if minutes_ago is None else (T0 - dt.timedelta(minutes=minutes_ago)).isoformat()
    return {"site": site, "generation": 3, "since": since}


def test_decide() -> None:
    assert reconcile.decide(state("primary", None), "dr", PLAN, automatic=True, now=T0).kind == "move"
    assert reconcile.decide(state("dr", 5), "dr", PLAN, automatic=True, now=T0).kind == "noop"
    flap = reconcile.decide(state("primary", 10), "dr", PLAN, automatic=True, now=T0)
    assert flap.kind == "refuse" and "flap guard" in flap.sentence
    assert reconcile.decide(state("primary", 10), "dr", PLAN, automatic=False, now=T0).kind == "move"  # operators may
    back = reconcile.decide(state("dr", 600), "primary", PLAN, automatic=True, now=T0)
    assert back.kind == "refuse" and "automatic failback is off" in back.sentence
    assert reconcile.decide(state("dr", 1), "primary", PLAN, automatic=False, now=T0).kind == "move"
    assert reconcile.decide(state("primary", None), "mars", PLAN, automatic=False, now=T0).kind == "refuse"
    assert PLAN.records[0].fqdn == "example.net"


def test_plan_errors_are_all_reported() -> None:
    with pytest.raises(ConfigError) as info:
        plans.parse_plan(json.dumps({
            "sites": ["primary", "dr"], "extra": 1, "min_hold": "soon",
            "records": [{"domain": "example.net", "name": "erp", "type": "MX", "ttl": 5, "values": {"primary": "x"}}],
            "reserved_ips": [{"ip": "1.2.3.4", "droplets": {"primary": 1}}],
            "health": {"dr": "ftp://x"}}))
    text = " | ".join(info.value.problems)
    for part in ("unknown keys extra", "type must be A, AAAA or CNAME", "at least 30", "one value for each site",
                 "droplet id for each site", "health maps sites", "min_hold must be a duration"):
        assert part in text, (part, text)
    with pytest.raises(ConfigError, match="two names"):
        plans.parse_plan('{"sites": ["only"]}')


def test_fake_rejects_keys_the_schema_does_not_name() -> None:
    spec, _ = load_spec()
    record = spec["paths"]["/v2/domains/{domain_name}/records/{domain_record_id}"]["patch"]
    schema = record["requestBody"]["content"]["application/json"]["schema"]
    assert unknown_keys(schema, {"type": "A", "data": "1.2.3.4", "ttl": 60}, spec) == []
    assert unknown_keys(schema, {"type": "A", "dat": "1.2.3.4"}, spec) == ["dat"]
    action = spec["paths"]["/v2/reserved_ips/{reserved_ip}/actions"]["post"]
    schema = action["requestBody"]["content"]["application/json"]["schema"]
    assert unknown_keys(schema, {"type": "assign", "droplet_id": 1}, spec) == []  # followed the discriminator
    assert unknown_keys(schema, {"type": "assign", "droplet": 1}, spec) == ["droplet"]
    assert unknown_keys(schema, {"type": "unassign", "droplet_id": 1}, spec) == ["droplet_id"]
