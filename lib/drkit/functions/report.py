"""report: the operator's DR report (scheduled daily) and the Prometheus metrics endpoint (web, bearer).

Invoked (the scheduler's daily job, or `doctl serverless functions invoke dr/report`): gathers the
bucket's evidence (backups, verifications, config backups, audit events, schedule), renders the
self-contained HTML report and stores it as `reports/latest.html` and the month's copy
`reports/monthly/<YYYY-MM>/dr-report.html` (with its evidence JSON beside each), notifies the
findings that are new since the last report, and answers with a presigned link valid for an hour.
Reports are private; drkit never deletes them.

Web GET `/metrics` with `Authorization: Bearer <DRKIT_METRICS_BEARER>`: health-probe's latest
Prometheus text (`status/health.prom`), for Prometheus to scrape (docs/observability.md).
"""

from __future__ import annotations

import datetime as dt
import hmac
from collections.abc import Mapping
from typing import Any

from drkit.core import log
from drkit.core.deadline import Clock, Deadline, utcnow
from drkit.core.errors import ConfigError, DrkitError
from drkit.crypto.trust import Identity
from drkit.health.memory import HealthMetrics
from drkit.platform import identity
from drkit.platform.config import collect_spaces, spaces_from_env
from drkit.platform.notify import Notifier
from drkit.platform.runtime import Params, TextReply
from drkit.platform.web import HttpRequest, WebError
from drkit.reporting import generate
from drkit.storage import records
from drkit.storage.store import Store

FUNCTION = "report"
PROM_KEY = "status/health.prom"  # written by health-probe every run
PROM_TYPE = "text/plain; version=0.0.4; charset=utf-8"
MIN_TOKEN = 16


def _tokens(environ: Mapping[str, str]) -> list[str]:
    tokens = [t.strip() for t in environ.get("DRKIT_METRICS_BEARER", "").split(",") if t.strip()]
    short = [t for t in tokens if len(t) < MIN_TOKEN]
    if short:
        raise ConfigError(f"DRKIT_METRICS_BEARER: every token must be at least {MIN_TOKEN} characters "
                          f"({len(short)} is shorter)")
    return tokens


def _settings(environ: Mapping[str, str]) -> tuple[Any, dict[str, Any], Identity, Notifier]:
    problems: list[str] = []
    spaces = collect_spaces(environ, problems)
    limits = generate.limits_from_env(environ, problems)
    me = identity.collect(environ, FUNCTION, problems)
    try:
        _tokens(environ)
    except ConfigError as exc:
        problems += exc.problems
    notifier = Notifier.collect(environ, problems)
    if problems or spaces is None:
        raise ConfigError(problems)
    return spaces, limits, me, notifier


def check(environ: Mapping[str, str]) -> str:
    """The configuration run() and run_web() need, validated as they validate it (drkit config check)."""
    _, limits, me, _ = _settings(environ)
    metrics = "metrics endpoint on" if _tokens(environ) else "metrics endpoint off (DRKIT_METRICS_BEARER unset)"
    return f"{len(limits)} database(s), {len(me.trust.keys())} trusted key(s); {metrics}"


def run(params: Mapping[str, Any], environ: Mapping[str, str], deadline: Deadline, *,
        store: Store | None = None, clock: Clock = utcnow) -> dict[str, Any]:
    p = Params(params, known=("days",))
    days = p.string("days", "30")
    if not days.isdigit() or not 1 <= int(days) <= 400:
        p.problems.append(f"parameter 'days' must be a whole number of days from 1 to 400, not {days[:20]!r}")
    p.finish()
    spaces, limits, me, notifier = _settings(environ)
    store = (store or Store(spaces)).with_identity(me)
    now = clock()
    before = set(generate.previous_findings(store, now))
    report = generate.make(store, limits, now, keep=True, function=FUNCTION,
                           window=dt.timedelta(days=int(days)))
    url = store.presigned_url(generate.LATEST, generate.LINK_SECONDS)
    out: dict[str, Any] = {"ok": True, "status": "ok", "keys": list(report.keys), "findings": report.findings,
                           "url": url, "url_expires_s": generate.LINK_SECONDS,
                           "decision": f"DR report stored: {report.summary()}"}
    new = [f for f in report.findings if f not in before]
    if new and notifier.configured:  # a finding is told once, when it appears (the report keeps listing it)
        out["notifications"] = notifier.send({
            "event": "report.findings", "function": FUNCTION, "status": "failed",
            "decision": f"DR report: {len(new)} new finding(s); the report: {generate.LATEST}", "failed_checks": new})
    return out


def run_web(req: HttpRequest, environ: Mapping[str, str], deadline: Deadline) -> tuple[int, dict[str, Any] | TextReply]:
    """GET /metrics with a bearer token: health-probe's Prometheus text."""
    tokens = _tokens(environ)
    if not tokens:
        raise WebError(503, "the metrics endpoint is off: set DRKIT_METRICS_BEARER (16+ characters)")
    given = req.headers.get("authorization", "")
    scheme, _, token = given.partition(" ")
    if scheme.lower() != "bearer" or not any(hmac.compare_digest(token.strip().encode(), t.encode()) for t in tokens):
        log.warning("metrics request refused", reason="missing or wrong bearer token")
        return 401, {"ok": False, "error": "missing or wrong bearer token"}
    store = Store(spaces_from_env(environ), identity=identity.from_env(environ, FUNCTION, signs=False))
    try:
        got = records.read(store, PROM_KEY, HealthMetrics, dt.datetime.now(dt.UTC))
    except DrkitError as exc:  # Prometheus then sees no metrics, and its DrkitMetricsAbsent rule fires
        log.error("metrics not served", error=str(exc))
        return 503, {"ok": False, "error": "health-probe's metrics are not believed (not signed by health-probe); "
                                           "see the report's findings"}
    if got is None:
        return 503, {"ok": False, "error": "no metrics yet: health-probe has not run"}
    return 200, TextReply(got.value.text, PROM_TYPE, {"Cache-Control": "no-store"})
