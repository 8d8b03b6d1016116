"""What each function really reads from its environment, recorded on a real run: nothing outside
its row of lib/drkit/platform/envvars.py (so nothing project.yml does not give it), and every variable of
that row is read (so project.yml gives it nothing it ignores)."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

import pytest

from conftest import SPACES_SECRET
from drkit.cli.functions import RUNS as ALL_RUNS
from drkit.core.deadline import Deadline
from drkit.functions import db_backup, dns_failover
from drkit.platform import envvars
from drkit.platform.runtime import handle, without_unset
from drkit.platform.web import from_event
from drkit_dev import artifact
from drkit_dev.pgserver import PgServer
from drkit_dev.s3server import S3Server
from support.scenarios import EVENTS, base_env, scenario

RUNS = {name: run for name, run in ALL_RUNS.items() if name != "dns-failover"}  # dns-failover: its web path
# read by the edge (runtime.handle), not by the run itself
EDGE_READS = {"DRKIT_LOG_LEVEL"}
# read only on a path the scenario does not take, with the reason
NOT_ON_THIS_PATH = {
    "health-probe": ({"DRKIT_AUTO_FAILOVER", "DRKIT_DO_TOKEN", "DRKIT_DO_ENDPOINT", "DRKIT_DO_CA_FILE",
                      "DRKIT_FAILOVER_PLAN", "DRKIT_FAILOVER_PLAN_KEY", "DRKIT_TRUSTED_KEYS"},
                     "read only when a target marked failover goes down (the plan only with DRKIT_AUTO_FAILOVER=true)"),
    "config-backup": ({"DRKIT_GITHUB_TOKEN", "DRKIT_GRAFANA_TOKEN", "DRKIT_SUPABASE_TOKEN", "DRKIT_STORAGE_DB_URL"},
                      "read only by the github, grafana and supabase sources (token_env) and a storage source's "
                      "database_env, which the scenario does not configure"),
    "scheduler": ({"DRKIT_SNAPSHOT_POLICIES"}, "read only when set (snapshot-rotate's policies give it slots)"),
    "dns-failover": ({"DRKIT_FAILOVER_PLAN_KEY", "DRKIT_TRUSTED_KEYS", "DRKIT_WEBHOOK_MAX_BODY"},
                     "the plan key and trusted keys are read only when DRKIT_FAILOVER_PLAN (inline) is not set; "
                     "the body limit by handle_web, before the run_web this test calls"),
}


class Recording(Mapping[str, str]):
    def __init__(self, env: Mapping[str, str]):
        self.env = dict(env)
        self.read: set[str] = set()

    def __getitem__(self, key: str) -> str:
        self.read.add(key)
        return self.env[key]

    def __contains__(self, key: object) -> bool:
        if isinstance(key, str):
            self.read.add(key)
        return key in self.env

    def __iter__(self) -> Iterator[str]:
        raise AssertionError("a function must read its variables by name, not walk the environment")

    def __len__(self) -> int:
        return len(self.env)


def test_the_edge_reads_the_log_level() -> None:
    import inspect

    from drkit.platform import runtime

    assert all(f'"{name}"' in inspect.getsource(runtime.handle) for name in EDGE_READS)


def _expanded(function: str) -> set[str]:
    out = set()
    for v in envvars.for_function(function):
        out.add(v.name.replace(envvars.DB, "ODOO"))
    return out


@pytest.mark.parametrize("function", sorted(envvars.ALL))
def test_a_function_reads_exactly_its_variables(function: str, s3_server: S3Server, bucket: str, pg: PgServer,
                                               dbname: str, age_keys: tuple[str, str]) -> None:
    pg.execute("CREATE TABLE t AS SELECT g FROM generate_series(1, 100) g", dbname)
    dotenv = base_env(s3_server.endpoint, bucket, SPACES_SECRET, pg.url(dbname), pg.url("postgres"), age_keys, pg.port)
    if function in ("restore-verify", "health-probe", "report", "backup-copy"):
        assert handle("db-backup", db_backup.run, {}, None, artifact.function_env("db-backup", dotenv))["ok"]
    with scenario(function, dotenv) as sc:
        env = Recording(without_unset(artifact.function_env(function, sc.dotenv)))
        deadline = Deadline(120)
        if function == "dns-failover":
            request = from_event(EVENTS[function])
            assert request is not None
            status, body = dns_failover.run_web(request, env, deadline)
            assert status == 200, body
        else:
            params = {k: v for k, v in EVENTS[function].items()}
            result: Any = RUNS[function](params, env, deadline)
            assert result["ok"], result
    declared = [v.pattern() for v in envvars.for_function(function)]
    stray = sorted(n for n in env.read if not any(p.match(n) for p in declared))
    assert not stray, f"dr/{function} reads {stray}, which its row in envvars.py (and project.yml) lacks"
    skipped, _why = NOT_ON_THIS_PATH.get(function, (set(), ""))
    unread = sorted(_expanded(function) - env.read - skipped - EDGE_READS)
    assert not unread, f"project.yml gives dr/{function} {unread}, which it never read"
