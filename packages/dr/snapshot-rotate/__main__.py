"""DO Functions entry point for dr/snapshot-rotate (all logic lives in drkit.functions.snapshot_rotate)."""

from drkit.functions import snapshot_rotate
from drkit.platform.runtime import handle


def main(event, context=None):  # type: ignore[no-untyped-def]
    return handle("snapshot-rotate", snapshot_rotate.run, event, context)
