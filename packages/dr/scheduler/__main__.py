"""DO Functions entry point for dr/scheduler (all logic lives in drkit.functions.scheduler)."""

from drkit.functions import scheduler
from drkit.platform.runtime import handle


def main(event, context=None):  # type: ignore[no-untyped-def]
    return handle("scheduler", scheduler.run, event, context)
