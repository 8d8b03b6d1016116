"""`drkit status show|post|resolve|publish` (the public status page) and `drkit report` (the private DR report)."""

from __future__ import annotations

import argparse
import datetime as dt
import getpass
import json
import webbrowser
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from drkit.cli import common
from drkit.core.errors import ConfigError
from drkit.health import notices, publish, statuspage


def _page(env: Mapping[str, str]) -> statuspage.PageConfig | None:
    return statuspage.PageConfig.parse(env.get("DRKIT_STATUS_PAGE", ""))


def _who() -> str:
    return f"cli:{getpass.getuser()}"


def _republish(store: Any, env: Mapping[str, str], now: dt.datetime) -> str:
    page = _page(env)
    if page is None:
        return "DRKIT_STATUS_PAGE is not set here: health-probe publishes the page on its next run"
    from drkit.failover import watch

    doc = publish.publish(store, page, now, failover=watch.moved_to(store, env, now))
    return f"published: {doc['summary']} ({store.public_url(publish.PUBLIC_HTML)})"


def cmd_status_show(args: argparse.Namespace, env: Mapping[str, str]) -> int:
    _, store = common.open_store(env)
    page = _page(env)
    now = dt.datetime.now(dt.UTC)
    states, updated = publish.saved_states(store, now)
    items = notices.load(store, now)
    if page is None:
        raise ConfigError("DRKIT_STATUS_PAGE is not set: there is no public status page "
                          '(e.g. {"title": "Acme status", "services": [{"name": "ERP", "targets": ["erp-https"]}]}, '
                          "docs/status-page.md)")
    doc = statuspage.build(page, states, items, now, updated)
    if args.json:
        print(json.dumps(doc, indent=2))
        return 0
    from rich.table import Table

    con = common.console()
    colour = {"operational": "green", "degraded": "yellow", "down": "red", "unknown": "dim"}
    con.print(f"[bold]{doc['title']}[/]: [{colour[doc['status']]}]{doc['summary']}[/] "
              f"(probes as of {updated or 'never'}; public page {store.public_url(publish.PUBLIC_HTML)})")
    table = Table("service", "status", "since")
    for s in doc["services"]:
        table.add_row(s["name"], f"[{colour[s['status']]}]{s['status']}[/]", s.get("since") or "")
    con.print(table)
    table = Table(title="notices")
    table.add_column("notice id", no_wrap=True)  # what `drkit status resolve` takes: never wrapped
    for column in ("severity", "title", "posted", "resolved"):
        table.add_column(column)
    for n in items[::-1][:20]:
        table.add_row(n["id"], str(n.get("severity")), str(n.get("title")), str(n.get("posted_at"))[:16],
                      str(n.get("resolved_at") or "ongoing")[:16])
    con.print(table)
    return 0


def cmd_status_post(args: argparse.Namespace, env: Mapping[str, str]) -> int:
    _, store = common.open_store(env)
    page = _page(env)
    if page is not None:
        page.check_notice(f"{args.title}\n{args.message}")
    now = dt.datetime.now(dt.UTC)
    notice = notices.post(store, args.title, args.message, args.severity, who=_who(), now=now)
    print(f"posted notice {notice['id']}; {_republish(store, env, now)}")
    print(f"resolve it with: drkit status resolve {notice['id']} --message \"...\"")
    return 0


def cmd_status_resolve(args: argparse.Namespace, env: Mapping[str, str]) -> int:
    _, store = common.open_store(env)
    page = _page(env)
    if page is not None:
        page.check_notice(args.message)
    now = dt.datetime.now(dt.UTC)
    done = notices.resolve(store, args.id, args.message, who=_who(), now=now)
    print(f"resolved notice {done['id']} ({done['title']}); {_republish(store, env, now)}")
    return 0


def cmd_status_publish(args: argparse.Namespace, env: Mapping[str, str]) -> int:
    _, store = common.open_store(env)
    if _page(env) is None:
        raise ConfigError("DRKIT_STATUS_PAGE is not set: nothing to publish (docs/status-page.md)")
    print(_republish(store, env, dt.datetime.now(dt.UTC)))
    return 0


def cmd_report(args: argparse.Namespace, env: Mapping[str, str]) -> int:
    from drkit.reporting import generate

    _, store = common.open_store(env)
    problems: list[str] = []
    limits = generate.limits_from_env(env, problems)
    if problems:
        raise ConfigError(problems)
    now = dt.datetime.now(dt.UTC)
    with common.console().status(f"gathering {args.days} days of evidence from the bucket ..."):
        report = generate.make(store, limits, now, keep=args.keep, function="cli",
                               window=dt.timedelta(days=args.days))
    out = Path(args.out) if args.out else Path(f"drkit-dr-report-{now:%Y%m%d-%H%M}.html")
    _write_private(out, report.html)
    print(f"report: {out.resolve()}")
    if report.keys:
        print(f"stored: {', '.join(report.keys)}; a link valid for an hour: "
              f"{store.presigned_url(generate.LATEST, generate.LINK_SECONDS)}")
    print(report.summary())
    if args.open:
        webbrowser.open(out.resolve().as_uri())
    return 0


def _write_private(out: Path, text: str) -> None:
    """The report holds database names and failures: 0600, replaced whole (a half-written file never stays)."""
    import os
    import tempfile

    if out.is_dir():
        raise ConfigError(f"{out} is a directory; give a file name with --out")
    fd, tmp = tempfile.mkstemp(dir=out.parent if str(out.parent) else ".", prefix=".drkit-report-")
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
        os.replace(tmp, out)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _days(text: str) -> int:
    """--days: a whole number of days from 1 to 400 (argparse's `choices` would list all 400 in its error)."""
    import argparse

    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number of days (1 to 400)") from None
    if not 1 <= value <= 400:
        raise argparse.ArgumentTypeError(f"{value} days is outside 1 to 400")
    return value


def register(root: Any) -> None:
    g = root.add_parser("status", help="the public status page: services, notices; post and resolve notices "
                                       "(docs/status-page.md)").add_subparsers(dest="command", required=True)
    c = g.add_parser("show", help="what the public page says now, and every notice")
    c.add_argument("--json", action="store_true", help="print the public JSON document")
    c.set_defaults(fn=cmd_status_show)
    c = g.add_parser("post", help="post a public notice (an incident, maintenance) and republish the page")
    c.add_argument("--title", required=True, help="short public title, e.g. \"Orders are delayed\"")
    c.add_argument("--message", default="", help="what users should know; no hosts, addresses or internal names")
    c.add_argument("--severity", choices=statuspage.NOTICE_SEVERITIES, default="minor")
    c.set_defaults(fn=cmd_status_post)
    c = g.add_parser("resolve", help="mark a notice resolved (it stays on the page for 7 days)")
    c.add_argument("id", help="the notice id (drkit status show lists them), or latest: the newest ongoing one")
    c.add_argument("--message", default="", help="the resolution users read")
    c.set_defaults(fn=cmd_status_resolve)
    c = g.add_parser("publish", help="render and upload the page now from health-probe's last states")
    c.set_defaults(fn=cmd_status_publish)
    p = root.add_parser("report", help="the DR report: backup age vs RPO, restore time vs RTO, failures, drift, "
                                       "DR test schedule (a private HTML file)")
    p.add_argument("--out", help="where to write the HTML (default: ./drkit-dr-report-<time>.html, mode 0600)")
    p.add_argument("--open", action="store_true", help="open it in the browser")
    p.add_argument("--days", type=_days, default=30, metavar="DAYS", help="the period to chart (1-400, default 30)")
    p.add_argument("--keep", action="store_true", help="also store it in the bucket as the latest and the month's "
                                                       "report (what the daily dr/report run does)")
    p.set_defaults(fn=cmd_report)
