"""DO Functions entry point for dr/dns-failover (web: raw; all logic lives in drkit.functions.dns_failover)."""

from drkit.functions import dns_failover
from drkit.platform.runtime import handle_web


def main(event, context=None):  # type: ignore[no-untyped-def]
    return handle_web("dns-failover", dns_failover.run_web, dns_failover.run, event, context)
