"""`drkit validate`: the DR plan's recovery validation checklist, run after any recovery.

Every automatic check of the plan, each with its evidence: the databases answer and hold every table
of their newest backup (with the operator's SQL checks), every probe passes (HTTP, TLS certificates,
DNS, TCP), DNS answers from public resolvers name the site traffic should be on (propagation), the
monitoring is alive (the scheduler ticked within ten minutes; the metrics endpoint answers), and the
backups run again (no job switched off in DRKIT_SCHEDULE, the newest backup within its RPO). Then the
checks only a person can do. Exit 0 only when every automatic check passed; an audit event
(`recovery.validated`) keeps the result for the post-incident record.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from drkit.cli import common
from drkit.core.errors import ConfigError, DrkitError
from drkit.platform.config import Config
from drkit.platform.databases import database_names, env_name
from drkit.storage import audit

PUBLIC_RESOLVERS = ("1.1.1.1", "8.8.8.8", "9.9.9.9")
MANUAL = ("a real user logs in (password, and a second factor where they have one)",
          "the business functions work end to end: create and post an order, an invoice, a payment",
          "e-mail and webhooks leave the site (a password reset arrives; an integration receives its event)",
          "scheduled work in the apps runs (cron jobs, queues) and runs once, not on both sites",
          "the status page says what users see (drkit status post|resolve)")


@dataclass(frozen=True)
class Row:
    area: str
    check: str
    ok: bool
    detail: str

    def to_dict(self) -> dict[str, Any]:
        return {"area": self.area, "check": self.check, "ok": self.ok, "detail": self.detail}


def _guard(area: str, check: str, fn: Callable[[], list[Row]]) -> list[Row]:
    """A check that cannot run is a failed check, never a crash and never a pass."""
    try:
        return fn()
    except DrkitError as exc:
        return [Row(area, check, False, str(exc))]


def databases(env: Mapping[str, str], store: Any, names: list[str], now: dt.datetime) -> list[Row]:
    from drkit.policy import checks
    from drkit.postgres import connection
    from drkit.storage import catalog

    cfg = Config.from_env(env, need_recipients=False)
    rows = []
    for name in names:
        db = cfg.databases[name]
        try:
            entry = catalog.find(store, "latest", name)
            manifest = catalog.read_manifest(store, entry)
        except DrkitError as exc:
            rows.append(Row("database", f"{name}: newest backup", False, str(exc)))
            manifest = {"tables": [], "id": None}
        with connection.connect(db, autocommit=True) as conn:
            # production after a recovery: every query here reads (the operator's SQL checks too), bounded in time
            conn.execute("SET default_transaction_read_only = on")
            conn.execute("SET statement_timeout = 15000")
            version = conn.execute("SHOW server_version").fetchone()[0]
            rows.append(Row("database", f"{name}: connects", True, f"PostgreSQL {version} at {db.display}"))
            missing, fewer, counted = [], [], 0
            for t in manifest.get("tables") or []:
                rel = f"{t['schema']}.{t['name']}"
                if conn.execute("SELECT to_regclass(%s)", (f'"{t["schema"]}"."{t["name"]}"',)).fetchone()[0] is None:
                    missing.append(rel)
                    continue
                if t.get("exact_rows") is not None:
                    n = conn.execute(f'SELECT count(*) FROM "{t["schema"]}"."{t["name"]}"').fetchone()[0]
                    counted += 1
                    if n < int(t["exact_rows"]):
                        fewer.append(f"{rel} {n} < {t['exact_rows']}")
            tables = len(manifest.get("tables") or [])
            rows.append(Row("database", f"{name}: tables of the newest backup", not missing and not fewer,
                            (f"all {tables} present, {counted} counted, none with fewer rows than backup "
                             f"{manifest.get('id')}" if not missing and not fewer else
                             "; ".join(filter(None, [f"missing: {', '.join(missing[:10])}" if missing else "",
                                                     f"fewer rows: {', '.join(fewer[:10])}" if fewer else ""])))))
            raw = env.get(env_name(name, "CHECKS"), "").strip()
            for check in checks.parse_checks(raw, env_name(name, "CHECKS")) if raw else []:
                try:
                    value = conn.execute(check.sql).fetchone()
                    got = checks.evaluate(check, value[0] if value else None, now)
                    rows.append(Row("database", f"{name}: {got.name}", got.passed, got.detail))
                except Exception as exc:  # noqa: BLE001 - the query's own error is the check's result
                    rows.append(Row("database", f"{name}: {check.name}", False,
                                    f"query failed: {connection.describe_pg_error(exc)}"))
    return rows


def probes(env: Mapping[str, str]) -> list[Row]:
    from drkit.health import probe

    raw = env.get("DRKIT_PROBES", "").strip()
    if not raw:
        return [Row("probes", "DRKIT_PROBES", False, "no probes configured: nothing proves users are served")]
    results = probe.run_all(probe.parse_targets(raw), budget_s=60)
    return [Row(f"probes ({r.type})", r.name, r.ok, r.detail + (f" (warning: {r.warning})" if r.warning else ""))
            for r in results]


def dns_answers(env: Mapping[str, str], store: Any, resolvers: list[str], now: dt.datetime) -> list[Row]:
    import dns.exception
    import dns.resolver

    from drkit.failover import reconcile, service

    plan = service.plan_from_env(env, store)
    site = str(reconcile.read_state(store, plan, now)["site"])
    rows = []
    for rec in plan.records:
        want = rec.values.get(site, "")
        seen: dict[str, str] = {}
        for server in resolvers:
            host, _, port = server.partition(":")
            r = dns.resolver.Resolver(configure=False)
            r.nameservers, r.port, r.lifetime = [host], int(port or 53), 5.0
            try:
                answer = r.resolve(rec.fqdn, rec.type, raise_on_no_answer=False)
                seen[server] = ",".join(sorted(x.to_text().rstrip(".") for x in answer)) or "no answer"
            except (dns.exception.DNSException, OSError) as exc:
                seen[server] = f"error ({type(exc).__name__})"
        wrong = {s: a for s, a in seen.items() if a != want.rstrip(".")}
        rows.append(Row("dns", f"{rec.fqdn} {rec.type} on {site}", not wrong,
                        f"every resolver ({', '.join(resolvers)}) answers {want}" if not wrong else
                        "; ".join(f"{s} answers {a}" for s, a in wrong.items()) + f" (want {want}: TTL {rec.ttl} s; "
                        "propagation takes up to the old record's TTL)"))
    return rows


def monitoring(env: Mapping[str, str], store: Any, metrics_url: str | None, now: dt.datetime) -> list[Row]:
    from drkit.health.protection import schedule_protection

    # health-probe's own judgement of the scheduler: ticking, every job within its window
    judged = schedule_protection(store, now, {"scheduler": 1})  # a missing status is a failure here
    rows = [Row("monitoring", "scheduler ticks", r.ok, r.detail if r.ok else f"{r.detail}; silent; check its "
                "trigger (runbook §1)") for r in judged if r.name == "scheduler"]
    jobs = [r for r in judged if r.name != "scheduler"]
    failing = [f"{r.name.removeprefix('schedule:')} ({r.detail})" for r in jobs if not r.ok]
    rows.append(Row("monitoring", "scheduled jobs", not failing, "none failing or overdue" if not failing else
                    f"failing or overdue: {'; '.join(failing)}"))
    if metrics_url:
        import requests

        bearer = next((b for b in str(env.get("DRKIT_METRICS_BEARER", "")).split(",") if b.strip()), "")
        try:
            resp = requests.get(metrics_url, timeout=10,
                                headers={"Authorization": f"Bearer {bearer.strip()}"} if bearer else {})
            ok = resp.status_code == 200 and "drkit_" in resp.text
            rows.append(Row("monitoring", "metrics endpoint", ok, f"HTTP {resp.status_code}"
                            + (f", {resp.text.count(chr(10))} lines of drkit metrics" if ok else "")))
        except requests.RequestException as exc:
            rows.append(Row("monitoring", "metrics endpoint", False, f"cannot reach it ({type(exc).__name__})"))
    return rows


def backups(env: Mapping[str, str], store: Any, names: list[str], now: dt.datetime) -> list[Row]:
    from drkit.health import protection
    from drkit.policy import schedule
    from drkit.storage import catalog

    rows = []
    slots = schedule.parse(env.get("DRKIT_SCHEDULE", ""), names, [], now)
    running = {(s.job, s.subject) for s in slots}
    off = [f"{job} {db}" for job in ("db-backup", "restore-verify") for db in names if (job, db) not in running]
    rows.append(Row("backups", "scheduled again", not off, "db-backup and restore-verify run for every database"
                    if not off else f"switched off in DRKIT_SCHEDULE: {', '.join(off)} (re-enable them)"))
    problems: list[str] = []
    rpo = {p.database: p.rpo for p in protection.protections_from_env(env, problems)}
    for name in names:
        entries = catalog.trusted_view(store, name, now).trusted
        newest = entries[0].time if entries else None
        ok = newest is not None and now - newest <= rpo.get(name, dt.timedelta(minutes=75))
        rows.append(Row("backups", f"{name}: newest backup within RPO", ok,
                        f"taken {common.age(newest, now)} ago (RPO {rpo.get(name)})" if newest else "no backup"))
    return rows


def cmd_validate(args: argparse.Namespace, env: Mapping[str, str]) -> int:
    from rich.table import Table

    _, store = common.open_store(env)
    now = dt.datetime.now(dt.UTC)
    configured = database_names(env)
    names = args.db or configured
    unknown = [n for n in names if n not in configured]
    if unknown:
        from drkit.core import suggest

        raise ConfigError(suggest.unknown("database", unknown, configured))
    resolvers = args.resolver or list(PUBLIC_RESOLVERS)
    rows = [*_guard("database", "databases", lambda: databases(env, store, names, now)),
            *_guard("probes", "probes", lambda: probes(env)),
            *(_guard("dns", "DNS", lambda: dns_answers(env, store, resolvers, now))
              if env.get("DRKIT_FAILOVER_PLAN", "").strip() or env.get("DRKIT_FAILOVER_PLAN_KEY", "").strip() else
              [Row("dns", "failover plan", False, "no failover plan (DRKIT_FAILOVER_PLAN[_KEY]): DNS not checked")]),
            *_guard("monitoring", "monitoring", lambda: monitoring(env, store, args.metrics_url, now)),
            *_guard("backups", "backups", lambda: backups(env, store, names, now))]
    passed = sum(r.ok for r in rows)
    audit.record(store, "cli", "recovery.validated", {"passed": passed, "failed": len(rows) - passed,
                                                        "checks": [r.to_dict() for r in rows]})
    if args.json:
        print(json.dumps({"ok": passed == len(rows), "checks": [r.to_dict() for r in rows], "manual": list(MANUAL)},
                         indent=2))
        return 0 if passed == len(rows) else 1
    con = common.console()
    table = Table("area", "check", "result", "evidence", title="recovery validation (automatic checks)")
    for r in rows:
        table.add_row(r.area, r.check, "[green]PASS[/green]" if r.ok else "[red]FAIL[/red]", r.detail)
    con.print(table)
    con.print("[bold]by hand[/bold] (the plan's checklist; tick each one):")
    for item in MANUAL:
        con.print(f"  [ ] {item}")
    verdict = (f"[green]every automatic check passed ({passed})[/green]" if passed == len(rows) else
               f"[red]{len(rows) - passed} of {len(rows)} automatic checks failed[/red]: the recovery is not done")
    con.print(verdict)
    return 0 if passed == len(rows) else 1


def register(root: Any) -> None:
    p = root.add_parser("validate", help="the recovery validation checklist: databases, probes, TLS, DNS from public "
                                         "resolvers, monitoring, backups running again; then what a person checks")
    p.add_argument("--db", action="append", help="only this database (repeatable; default: all)")
    p.add_argument("--resolver", action="append", metavar="IP[:PORT]",
                   help=f"a DNS resolver to ask (repeatable; default: {', '.join(PUBLIC_RESOLVERS)})")
    p.add_argument("--metrics-url", help="dr/report's /metrics URL (its bearer: DRKIT_METRICS_BEARER)")
    p.add_argument("--json", action="store_true", help="the result as JSON")
    p.set_defaults(fn=cmd_validate)
