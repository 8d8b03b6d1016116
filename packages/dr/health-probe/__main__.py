"""DO Functions entry point for dr/health-probe (all logic lives in drkit.health)."""

from drkit import health
from drkit.runtime import handle


def main(event, context=None):  # type: ignore[no-untyped-def]
    return handle("health-probe", health.run, event, context)
