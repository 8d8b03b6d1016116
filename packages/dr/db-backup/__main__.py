"""DO Functions entry point for dr/db-backup (all logic lives in drkit.db_backup)."""

from drkit import db_backup
from drkit.runtime import handle


def main(event, context=None):  # type: ignore[no-untyped-def]
    return handle("db-backup", db_backup.run, event, context)
