"""DO Functions entry point for dr/snapshot-rotate (all logic lives in drkit.snapshot_rotate)."""

from drkit import snapshot_rotate
from drkit.runtime import handle


def main(event, context=None):  # type: ignore[no-untyped-def]
    return handle("snapshot-rotate", snapshot_rotate.run, event, context)
