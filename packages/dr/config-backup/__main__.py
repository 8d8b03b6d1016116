"""DO Functions entry point for dr/config-backup (all logic lives in drkit.config_backup)."""

from drkit import config_backup
from drkit.runtime import handle


def main(event, context=None):  # type: ignore[no-untyped-def]
    return handle("config-backup", config_backup.run, event, context)
