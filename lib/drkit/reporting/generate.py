"""Makes the DR report: gathers the evidence, renders it, and keeps it in the bucket (latest and one per month)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar

from drkit.core.fields import Fields
from drkit.health.protection import protections_from_env
from drkit.reporting import evidence, render
from drkit.storage import audit, records
from drkit.storage.records import Record
from drkit.storage.store import Store

LATEST = "reports/latest.html"
LINK_SECONDS = 3600  # a presigned link to the private report lives an hour


def monthly_key(now: dt.datetime, suffix: str = ".html") -> str:
    """The month's copy: rewritten by every report of the month, then kept (drkit never deletes reports)."""
    return f"reports/monthly/{now.astimezone(dt.UTC):%Y-%m}/dr-report{suffix}"


@dataclass(frozen=True)
class Evidence(Record):
    """A report's evidence and findings, kept beside it (`reports/latest.json`, the month's copy)."""

    TYPE: ClassVar[str] = "report-evidence"
    WRITERS: ClassVar[tuple[str, ...]] = ("report", "operator")

    facts: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return self.facts

    @classmethod
    def from_fields(cls, f: Fields) -> Evidence:
        facts = dict(f.value)
        for name in facts:
            f.json(name)
        found = facts.get("findings", [])
        if not isinstance(found, list) or not all(isinstance(x, str) for x in found):
            raise f.fail("findings", "must be a list of strings")
        return cls(facts)


def limits_from_env(environ: Mapping[str, str], problems: list[str]) -> dict[str, evidence.Limits]:
    from drkit.policy.durations import interval_or_default

    lag = interval_or_default(environ, "DRKIT_OFFSITE_MAX_LAG", "3h", problems).total_seconds()
    return {p.database: evidence.Limits(p.rpo.total_seconds(), p.verify_max_age.total_seconds(), p.rto.total_seconds(),
                                        lag)
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


def previous_findings(store: Store, now: dt.datetime) -> list[str]:
    """The findings of the last kept report (what a notification compares against). One not signed by the
    report (or an operator) counts as none: planted findings never silence a notification."""
    from drkit.core import log
    from drkit.core.errors import DrkitError

    try:
        got = records.read(store, LATEST.removesuffix(".html") + ".json", Evidence, now)
    except DrkitError as exc:
        log.warning("the last report's evidence is not believed; every finding is new", error=str(exc))
        return []
    return [str(f) for f in got.value.facts.get("findings", [])] if got else []


def make(store: Store, limits: dict[str, evidence.Limits], now: dt.datetime, *,
         keep: bool, function: str, window: dt.timedelta = evidence.WINDOW) -> Report:
    """Gather and render; with `keep`, store it as the latest report and the month's copy, with its evidence."""
    facts = evidence.gather(store, limits, now, window)
    page, findings = render.render(facts, now)
    facts["findings"] = findings
    keys: tuple[str, ...] = ()
    if keep:
        for key in (LATEST, monthly_key(now)):
            records.write(store, key.removesuffix(".html") + ".json", Evidence(facts), now)
            store.put_bytes(key, page.encode(), "text/html; charset=utf-8")
        keys = (LATEST, monthly_key(now))
    report = Report(page, facts, findings, keys)
    if keep:
        audit.record(store, function, "report.generated", {"keys": list(keys), "findings": findings[:20]})
    return report
