"""DO Functions entry point for dr/config-backup (all logic lives in drkit.functions.config_backup)."""

from drkit.functions import config_backup
from drkit.platform.runtime import handle


def main(event, context=None):  # type: ignore[no-untyped-def]
    return handle("config-backup", config_backup.run, event, context)
