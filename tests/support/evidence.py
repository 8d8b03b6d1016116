"""A bucket with a month's worth of real evidence in miniature: backups, a verification, probes, failovers.

Every record is made by drkit's own functions against the local stand-ins (PostgreSQL, the S3
server, a fake DO API, HTTP servers on 127.0.0.1), as the drill and the production runs make them.
"""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass
from typing import Any

from drkit.core.deadline import Deadline
from drkit.functions import db_backup, dns_failover, health_probe, restore_verify
from drkit.platform.runtime import handle
from drkit_dev.fakedo import FakeDO
from drkit_dev.pgserver import PgServer
from drkit_dev.probeservers import Behaviour

PRIVATE = ("erp.internal.example", "127.0.0.1", "10.20.30.40")
PLAN = {"sites": ["primary", "dr"],
        "records": [{"domain": "example.net", "name": "erp", "type": "A", "ttl": 60,
                     "values": {"primary": "203.0.113.10", "dr": "198.51.100.20"}}]}


@dataclass
class Account:
    env: dict[str, str]
    fake: FakeDO
    behaviour: Behaviour


def status_page(port: int) -> str:
    return json.dumps({"title": "Example Co status",
                       "services": [{"name": "Shop", "targets": ["shop-http"]},
                                    {"name": "Back office", "targets": ["erp-http", "erp-tcp"]}],
                       "private": list(PRIVATE)})


def make_account(make_env: Any, pg: PgServer, dbname: str, age_keys: tuple[str, str], behaviour: Behaviour,
                 port: int) -> Account:
    fake = FakeDO().start()
    fake.add_record("example.net", "A", "erp", "203.0.113.10", 60)
    base = f"http://127.0.0.1:{port}"
    probes = [{"name": "shop-http", "type": "http", "url": f"{base}/health"},
              {"name": "erp-http", "type": "http", "url": f"{base}/health?host=erp.internal.example"},
              {"name": "erp-tcp", "type": "tcp", "host": "127.0.0.1", "port": port}]
    env = make_env({"app": pg.url(dbname)}, DRKIT_STAGING_URL=pg.url("postgres"), DRKIT_AGE_IDENTITY=age_keys[0],
                   DRKIT_DB_APP_COUNT_TABLES="*", DRKIT_PROBES=json.dumps(probes), DRKIT_STATUS_PAGE=status_page(port),
                   DRKIT_DO_TOKEN=fake.token, DRKIT_DO_ENDPOINT=fake.endpoint, DRKIT_DO_CA_FILE=fake.ca_file,
                   DRKIT_FAILOVER_PLAN=json.dumps(PLAN), DRKIT_RPO="75m", DRKIT_RTO="4h")
    return Account(env, fake, behaviour)


def backups_and_verification(account: Account, pg: PgServer, dbname: str, now: dt.datetime) -> None:
    """Backups every few hours over two days (clocked), then today's, and a restore proof of it."""
    pg.execute("CREATE TABLE orders AS SELECT g AS id, md5(g::text) AS note FROM generate_series(1, 2000) g", dbname)
    for hours in (50, 44, 30, 26, 20, 6):  # a gap of 14 h: the age chart crosses the RPO line
        when = now - dt.timedelta(hours=hours)
        r = db_backup.run({}, account.env, Deadline(120), clock=lambda when=when: when)  # type: ignore[misc]
        assert r["ok"], r
    pg.execute("INSERT INTO orders SELECT g, md5(g::text) FROM generate_series(2001, 3000) g", dbname)
    assert handle("db-backup", db_backup.run, {}, None, account.env)["ok"]
    verified = handle("restore-verify", restore_verify.run, {"database": "app"}, None, account.env)
    assert verified["ok"], verified


def probes(account: Account, times: int) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for _ in range(times):
        result = handle("health-probe", health_probe.run, {}, None, account.env)
        assert result["ok"], result
    return result


def failover(account: Account, action: str) -> dict[str, Any]:
    params = {"action": action, "site": "dr" if action != "failback" else "primary", "reason": "test"}
    result = handle("dns-failover", dns_failover.run, params, None, account.env)
    assert result["ok"], result
    return result
