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
from drkit.core.errors import ConfigError
from drkit.platform.config import collect_spaces, spaces_from_env, trusted_keys
from drkit.platform.notify import Notifier
from drkit.platform.runtime import Params, TextReply
from drkit.platform.web import HttpRequest, WebError
from drkit.reporting import generate
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


def _settings(environ: Mapping[str, str]) -> tuple[Any, dict[str, Any], list[Any], Notifier]:
    problems: list[str] = []
    spaces = collect_spaces(environ, problems)
    limits = generate.limits_from_env(environ, problems)
    trusted: list[Any] = []
    try:
        trusted = trusted_keys(environ, required=False)
        _tokens(environ)
    except ConfigError as exc:
        problems += exc.problems
    notifier = Notifier.collect(environ, problems)
    if problems or spaces is None:
        raise ConfigError(problems)
    return spaces, limits, trusted, notifier


def check(environ: Mapping[str, str]) -> str:
    """The configuration run() and run_web() need, validated as they validate it (drkit config check)."""
    _, limits, trusted, _ = _settings(environ)
    metrics = "metrics endpoint on" if _tokens(environ) else "metrics endpoint off (DRKIT_METRICS_BEARER unset)"
    return f"{len(limits)} database(s), {len(trusted)} trusted key(s); {metrics}"


def run(params: Mapping[str, Any], environ: Mapping[str, str], deadline: Deadline, *,
        store: Store | None = None, clock: Clock = utcnow) -> dict[str, Any]:
    p = Params(params, known=("days",))
    days = p.string("days", "30")
    if not days.isdigit() or not 1 <= int(days) <= 400:
        p.problems.append(f"parameter 'days' must be a whole number of days from 1 to 400, not {days[:20]!r}")
    p.finish()
    spaces, limits, trusted, notifier = _settings(environ)
    store = store or Store(spaces)
    now = clock()
    before = set(generate.previous_findings(store))
    report = generate.make(store, limits, trusted, now, keep=True, function=FUNCTION,
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
    store = Store(spaces_from_env(environ))
    text = store.get_bytes_or_none(PROM_KEY)
    if text is None:
        return 503, {"ok": False, "error": "no metrics yet: health-probe has not run"}
    return 200, TextReply(text.decode(), PROM_TYPE, {"Cache-Control": "no-store"})
