"""The drill's rehearsal steps (./scripts/drill runs them too): a payload or schema change that breaks
the drill fails here, not on an operator's machine."""

from __future__ import annotations

from typing import Any

from rich.console import Console

from drkit_dev import drill, drill_schedule, probeservers


def test_the_failover_rehearsal_and_the_scheduler_day_pass(make_env: Any) -> None:
    env = make_env({"erp": "postgresql://x@127.0.0.1/erp"})
    d = drill.Drill(Console(quiet=True))
    server, port = probeservers.serve(probeservers.Behaviour())
    try:
        drill.failover_step(d, env, port)
        drill_schedule.compressed_day(d, env)
    finally:
        probeservers.stop(server)
    assert [(s.name, s.ok) for s in d.steps] == [("dns-failover", True), ("scheduler", True)], d.steps
