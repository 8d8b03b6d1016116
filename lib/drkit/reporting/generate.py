"""Makes the DR report: gathers the evidence, renders it, and keeps it in the bucket (latest and one per month)."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from drkit.health.protection import protections_from_env
from drkit.reporting import evidence, render
from drkit.storage import audit
from drkit.storage.store import Store

LATEST = "reports/latest.html"
LINK_SECONDS = 3600  # a presigned link to the private report lives an hour


def monthly_key(now: dt.datetime, suffix: str = ".html") -> str:
    """The month's copy: rewritten by every report of the month, then kept (drkit never deletes reports)."""
    return f"reports/monthly/{now.astimezone(dt.UTC):%Y-%m}/dr-report{suffix}"


def limits_from_env(environ: Mapping[str, str], problems: list[str]) -> dict[str, evidence.Limits]:
    return {p.database: evidence.Limits(p.rpo.total_seconds(), p.verify_max_age.total_seconds(), p.rto.total_seconds())
            for p in protections_from_env(environ, problems)}


@dataclass(frozen=True)
class Report:
    html: str
    evidence: dict[str, Any]
    findings: list[str]  # what is wrong or overdue (empty: all is well)
    keys: tuple[str, ...]  # where it was stored (none for a local-only report)

    def summary(self) -> str:
        if not self.findings:
            return "every database is within its RPO and RTO, and every DR test is up to date"
        return f"{len(self.findings)} finding(s): " + "; ".join(self.findings[:8]) + ("; …" if len(self.findings) > 8
                                                                                      else "")


def previous_findings(store: Store) -> list[str]:
    """The findings of the last kept report (what a notification compares against)."""
    from drkit.core.errors import DrkitError

    try:
        doc = store.get_json_or_none(LATEST.removesuffix(".html") + ".json") or {}
    except DrkitError:
        return []
    found = doc.get("findings") if isinstance(doc, dict) else None
    return [str(f) for f in found] if isinstance(found, list) else []


def make(store: Store, limits: dict[str, evidence.Limits], trusted: Sequence[Any], now: dt.datetime, *,
         keep: bool, function: str, window: dt.timedelta = evidence.WINDOW) -> Report:
    """Gather and render; with `keep`, store it as the latest report and the month's copy, with its evidence."""
    facts = evidence.gather(store, limits, trusted, now, window)
    page, findings = render.render(facts, now)
    facts["findings"] = findings
    keys: tuple[str, ...] = ()
    if keep:
        data = (json.dumps(facts, indent=1, default=str) + "\n").encode()
        for key in (LATEST, monthly_key(now)):
            store.put_bytes(key.removesuffix(".html") + ".json", data, "application/json")
            store.put_bytes(key, page.encode(), "text/html; charset=utf-8")
        keys = (LATEST, monthly_key(now))
    report = Report(page, facts, findings, keys)
    if keep:
        audit.record(store, function, "report.generated", {"keys": list(keys), "findings": findings[:20]})
    return report
