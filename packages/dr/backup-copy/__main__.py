"""DO Functions entry point for dr/backup-copy (all logic lives in drkit.functions.backup_copy)."""

from drkit.functions import backup_copy
from drkit.platform.runtime import handle


def main(event, context=None):  # type: ignore[no-untyped-def]
    return handle("backup-copy", backup_copy.run, event, context)
