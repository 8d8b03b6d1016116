"""The drill's rehearsal steps (./scripts/drill runs them too): a payload or schema change that breaks
the drill fails here, not on an operator's machine."""

from __future__ import annotations

from pathlib import Path
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


def test_the_config_backup_step_passes(make_env: Any, age_keys: tuple[str, str], tmp_path: Path) -> None:
    """The drill reads the config backups back with the operator's trust, as `drkit config extract` does."""
    env = make_env({"erp": "postgresql://x@127.0.0.1/erp"}, DRKIT_AGE_IDENTITY=age_keys[0])
    d = drill.Drill(Console(quiet=True))
    drill.config_step(d, env, tmp_path)
    assert [(s.name, s.ok) for s in d.steps] == [("config-backup", True)], d.steps


def test_the_supabase_step_passes(make_env: Any, age_keys: tuple[str, str]) -> None:
    """A project shaped like today's platform into a new one, and its settings through the Management API."""
    from drkit_dev import drill_supabase

    env = make_env({"erp": "postgresql://x@127.0.0.1/erp"}, DRKIT_AGE_IDENTITY=age_keys[0])
    d = drill.Drill(Console(quiet=True))
    drill_supabase.supabase_step(d, env, age_keys[0])
    assert [(s.name, s.ok) for s in d.steps] == [("supabase restore", True), ("supabase project", True)], d.steps
    assert "user tables identical" in d.facts["supabase restore"] and "disarmed:" in d.facts["supabase restore"]
    assert "drkit supabase recreate --apply rebuilt it as" in d.facts["supabase project"], d.facts
