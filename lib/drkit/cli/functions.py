"""The deployed functions by name, for what runs them outside DigitalOcean: their run() and their check()."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from drkit.core.deadline import Deadline
from drkit.functions import (
    backup_copy,
    config_backup,
    db_backup,
    dns_failover,
    health_probe,
    report,
    restore_verify,
    scheduler,
    snapshot_rotate,
)
from drkit.platform import envvars

MODULES = {envvars.DB_BACKUP: db_backup, envvars.RESTORE_VERIFY: restore_verify, envvars.HEALTH: health_probe,
           envvars.FAILOVER: dns_failover, envvars.SNAPSHOTS: snapshot_rotate, envvars.CONFIG: config_backup,
           envvars.SCHEDULER: scheduler, envvars.REPORT: report, envvars.COPY: backup_copy}
RUNS: dict[str, Callable[[Mapping[str, Any], Mapping[str, str], Deadline], dict[str, Any]]] = {
    name: module.run for name, module in MODULES.items()}
CHECKS: dict[str, Callable[[Mapping[str, str]], str]] = {name: module.check for name, module in MODULES.items()}
