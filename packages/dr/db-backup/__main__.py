"""DO Functions entry point for dr/db-backup (all logic lives in drkit.functions.db_backup)."""

from drkit.functions import db_backup
from drkit.platform.runtime import handle


def main(event, context=None):  # type: ignore[no-untyped-def]
    return handle("db-backup", db_backup.run, event, context)
