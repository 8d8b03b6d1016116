"""DO Functions entry point for dr/report (web GET /metrics; invoked: the DR report. Logic: drkit.functions.report)."""

from drkit.functions import report
from drkit.platform.runtime import handle_web


def main(event, context=None):  # type: ignore[no-untyped-def]
    return handle_web("report", report.run_web, report.run, event, context, methods=("GET", "HEAD"))
