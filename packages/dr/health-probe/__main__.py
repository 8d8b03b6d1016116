"""DO Functions entry point for dr/health-probe (all logic lives in drkit.functions.health_probe)."""

from drkit.functions import health_probe
from drkit.platform.runtime import handle


def main(event, context=None):  # type: ignore[no-untyped-def]
    return handle("health-probe", health_probe.run, event, context)
