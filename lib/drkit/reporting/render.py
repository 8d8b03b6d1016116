"""The operator's DR report (pure): one self-contained HTML page from the gathered evidence, charts inline."""

from __future__ import annotations

import datetime as dt
import html
from collections import Counter
from collections.abc import Mapping, Sequence
from typing import Any

from drkit.policy.durations import human
from drkit.reporting import charts, scorecard, testing
from drkit.reporting.charts import BAD, OK, Series

e = html.escape
GREEN, GREY = "#1a7f37", "#9aa0a6"


def _t(text: str | None) -> dt.datetime | None:
    return dt.datetime.fromisoformat(text) if text else None


def _when(text: str | None) -> str:
    t = _t(text)
    return f"{t.astimezone(dt.UTC):%Y-%m-%d %H:%M} UTC" if t else "—"


def _table(head: Sequence[str], rows: Sequence[Sequence[str]], cls: str = "") -> str:
    """Cells are HTML already (escape what goes in)."""
    if not rows:
        return '<p class="muted">nothing on record in this period</p>'
    return (f'<table class="{cls}"><thead><tr>' + "".join(f"<th>{e(h)}</th>" for h in head) + "</tr></thead><tbody>"
            + "".join("<tr>" + "".join(f"<td>{c}</td>" for c in r) + "</tr>" for r in rows) + "</tbody></table>")


def _flag(ok: bool, text: str) -> str:
    return f'<span class="{"good" if ok else "bad"}">{e(text)}</span>'


def database_section(db: Mapping[str, Any], events: Sequence[Mapping[str, Any]], start: dt.datetime,
                     now: dt.datetime) -> tuple[str, list[str]]:
    """The section of one database, and its problems (for the summary)."""
    name = db["name"]
    backups = [b for b in db["backups"] if b.get("complete")]
    times = [dt.datetime.fromisoformat(b["time"]) for b in backups]
    problems = []
    newest = max(times, default=None)
    age = (now - newest).total_seconds() if newest else None
    if age is None or age > db["rpo_s"]:
        problems.append(f"{name}: newest backup {'missing' if age is None else human(age) + ' old'} "
                        f"(RPO {human(db['rpo_s'])})")
    untrusted = [b for b in backups if b.get("signature") != "trusted"]
    if untrusted:
        problems.append(f"{name}: {len(untrusted)} backup manifest(s) not signed by a trusted key")
    verifications = sorted((b["verification"] | {"backup_id": b["id"]} for b in db["backups"] if b.get("verification")),
                           key=lambda v: str(v.get("finished_at")))
    restores = [(_t(v["finished_at"]), float(v["restore_s"])) for v in verifications
                if v.get("finished_at") and isinstance(v.get("restore_s"), (int, float))]
    last_restore = restores[-1][1] if restores else None
    if last_restore is not None and last_restore > db["rto_s"]:
        problems.append(f"{name}: last verified restore took {human(last_restore)} (RTO {human(db['rto_s'])})")
    failures = [ev for ev in events if ev["action"] == "backup.failed" and (ev.get("details") or {}).get("database") == name]
    in_window = [b for b in backups if dt.datetime.fromisoformat(b["time"]) >= start]
    step = dt.timedelta(minutes=15) if (now - start) <= dt.timedelta(days=31) else dt.timedelta(hours=1)
    ages = charts.age_series(times, start, now, step)
    window_days = max(1, round((now - start).total_seconds() / 86400))
    age_chart = charts.line_chart(f"{name}: age of the newest backup vs RPO, {window_days} days",
                                  [Series("backup age", ages)], start, now, limit=db["rpo_s"], limit_label="RPO",
                                  chart_id=f"age-{name}")
    sized = [b for b in in_window if b.get("dump_bytes") is not None]
    size_chart = charts.line_chart(f"{name}: dump size and stored size", [
        Series("dump (uncompressed)", [(_t(b["time"]) or now, float(b["dump_bytes"])) for b in sized], "#7b1fa2"),
        Series("stored (compressed, encrypted)", [(_t(b["time"]) or now, float(b["stored_bytes"])) for b in sized])],
        start, now, fmt="bytes", chart_id=f"size-{name}")
    timed = [b for b in in_window if isinstance(b.get("duration_s"), (int, float))]
    duration_chart = charts.line_chart(f"{name}: backup duration", [
        Series("backup duration", [(_t(b["time"]) or now, float(b["duration_s"])) for b in timed])], start, now,
        chart_id=f"duration-{name}")
    restore_chart = charts.line_chart(f"{name}: verified restore time vs RTO (every verification)", [
        Series("restore time", [(t, v) for t, v in restores if t is not None], OK, dots=True)],
        min([start, *(t for t, _ in restores if t)]), now, limit=db["rto_s"], limit_label="RTO",
        chart_id=f"restore-{name}")
    stats = [
        ("newest backup", _flag(age is not None and age <= db["rpo_s"], human(age) + " old" if age is not None else "none")),
        ("RPO", e(human(db["rpo_s"]))),
        ("backups in period", e(str(len(in_window)))),
        ("failed runs in period", _flag(not failures, str(len(failures)))),
        ("last verified restore", _flag(last_restore is not None and last_restore <= db["rto_s"],
                                        human(last_restore) if last_restore is not None else "never")),
        ("RTO", e(human(db["rto_s"]))),
    ]
    rows = [[e(_when(v.get("finished_at"))), e(str(v["backup_id"])), _flag(v.get("status") == "passed",
             str(v.get("status"))), e(human(float(v["restore_s"]))) if isinstance(v.get("restore_s"), (int, float))
             else "—", e(str(v.get("error") or ""))[:200]] for v in verifications[::-1][:12]]
    fails = [[e(_when(ev["at"])), e(str((ev.get("details") or {}).get("error") or ""))[:300]] for ev in failures[::-1][:10]]
    body = (f'<section class="db" id="db-{e(name)}"><h2>Database {e(name)}</h2><dl class="stats">'
            + "".join(f"<div><dt>{e(k)}</dt><dd>{v}</dd></div>" for k, v in stats) + "</dl>"
            + age_chart + size_chart + duration_chart + restore_chart
            + "<h3>Verifications</h3>" + _table(["finished", "backup", "result", "restore time", "error"], rows)
            + "<h3>Failed backup runs</h3>" + _table(["at", "error"], fails) + "</section>")
    return body, problems


def config_section(config: Mapping[str, Any]) -> tuple[str, list[str]]:
    backups = sorted(config.get("backups") or [], key=lambda b: b["time"])
    problems = []
    last = (config.get("state") or {}).get("last_run") or {}
    if last.get("status") == "failed" or last.get("failed_units"):
        problems.append("config backup: the last run failed or missed sources")
    bars = []
    for b in backups[-14:]:
        bars.append((f"{b['time'][:16]} ok", float(b.get("ok") or 0), GREEN))
        if b.get("failed"):
            bars.append((f"{b['time'][:16]} failed", float(len(b["failed"])), BAD))
    chart = charts.bar_chart("config backups: sources stored and failed (last 14)", bars, chart_id="config-units")
    drift = [[e(_when(b["time"])), e(str(b.get("drift") or ""))] for b in backups[::-1] if b.get("drift_changes")][:15]
    failed = [[e(_when(b["time"])), e(", ".join(b.get("failed") or []))] for b in backups[::-1] if b.get("failed")][:15]
    return ('<section id="config"><h2>Config backups</h2>' + chart + "<h3>Drift events</h3>"
            + _table(["backup", "changes"], drift) + "<h3>Failed sources</h3>" + _table(["backup", "sources"], failed)
            + "</section>"), problems


def provider_section(config: Mapping[str, Any], databases: Sequence[Mapping[str, Any]],
                     now: dt.datetime) -> tuple[str, list[str]]:
    """Supabase's own backups beside drkit's (their copy and ours), and the Storage reconciliation: from the
    newest config backup that read them."""
    backups = sorted(config.get("backups") or [], key=lambda b: b["time"])
    provider: list[Mapping[str, Any]] = next((b["provider"] for b in backups[::-1] if b.get("provider")), [])
    reconcile: list[Mapping[str, Any]] = next((b["reconcile"] for b in backups[::-1] if b.get("reconcile")), [])
    if not provider and not reconcile:
        return "", []
    problems, rows = [], []
    ours = max((str(b["time"]) for d in databases for b in d.get("backups") or [] if b.get("complete")), default="")
    for p in provider:
        newest = _t(p.get("newest"))
        if newest is None or now - newest > dt.timedelta(days=2):
            problems.append(f"Supabase project {p.get('project')}: its own newest backup is "
                            + (f"from {_when(p.get('newest'))}" if newest else "missing"))
        pitr = (f"PITR {_when(p.get('pitr_earliest'))} to {_when(p.get('pitr_latest'))}" if p.get("pitr_enabled")
                else "no PITR (daily backups only)")
        rows.append([e(f"Supabase's ({p.get('project')}, {p.get('region')}, plan {p.get('plan') or '?'})"),
                     e(_when(p.get("newest"))), e(f"{p.get('completed')} completed, {p.get('failed')} failed"),
                     e(pitr)])
    rows.append([e("drkit's (this bucket, and the off-site copy)"), e(_when(ours) if ours else "none"),
                 e("hourly, signed, verified weekly"), e("restorable anywhere: another region, a new project")])
    recon = []
    for r in reconcile:
        if r.get("error"):
            problems.append(f"Storage {r.get('source')}: the reconciliation did not run ({r['error']})")
            recon.append([e(str(r.get("source"))), _flag(False, "did not run"), e(str(r["error"])), "", "", ""])
            continue
        if r.get("rows_without_file"):
            problems.append(f"Storage {r.get('source')}: {r['rows_without_file']} storage.objects rows have no file "
                            "(broken links after a restore)")
        recon.append([e(str(r.get("source"))), e(str(r.get("rows"))), e(str(r.get("files"))),
                      _flag(not r.get("rows_without_file"), str(r.get("rows_without_file"))),
                      e(str(r.get("files_without_row"))), e(str(r.get("size_differs")))])
    body = ('<section id="provider"><h2>Their copy and ours (Supabase)</h2>'
            + _table(["copy", "newest", "backups", "point in time"], rows, "provider")
            + ("<h3>Storage reconciliation</h3>" + _table(["source", "rows", "files", "rows without a file",
                                                          "files without a row", "size differs"], recon, "reconcile")
               if recon else "") + "</section>")
    return body, problems


def snapshots_section(events: Sequence[Mapping[str, Any]]) -> str:
    # a snapshot is "started" (an action DigitalOcean finishes later) or "created": count each name once
    made = {((ev.get("details") or {}).get("resource") or "?", (ev.get("details") or {}).get("snapshot"))
            for ev in events if ev["action"] in ("snapshot.created", "snapshot.started")}
    created = Counter(resource for resource, _ in made)
    deleted = Counter((ev.get("details") or {}).get("resource") or "?" for ev in events if ev["action"] == "snapshot.deleted")
    bars = []
    for res in sorted(set(created) | set(deleted)):
        bars += [(f"{res} created", float(created[res]), GREEN), (f"{res} pruned", float(deleted[res]), GREY)]
    return ('<section id="snapshots"><h2>Snapshots</h2>'
            + charts.bar_chart("snapshots per resource in the period", bars, chart_id="snapshots") + "</section>")


SCHEDULER_SILENT_S = 600.0  # health-probe's limit too (health/protection.py)


def schedule_section(schedule: Mapping[str, Any], now: dt.datetime | None = None) -> tuple[str, list[str]]:
    jobs = [j for j in schedule.get("jobs") or [] if isinstance(j, dict)]
    problems = [f"scheduled job {j.get('name')}: {j.get('state')}" for j in jobs
                if j.get("state") in ("failed", "timed_out", "lost", "dispatch_failed") or j.get("overdue")]
    if now is not None and schedule.get("at"):  # seen here even without a heartbeat monitor
        silent = (now - dt.datetime.fromisoformat(str(schedule["at"]))).total_seconds()
        if silent > SCHEDULER_SILENT_S:
            problems.insert(0, f"the scheduler is silent: last tick {human(silent)} ago")
    rows = [[e(str(j.get("name"))), _flag(j.get("state") not in ("failed", "timed_out", "lost", "dispatch_failed")
                                          and not j.get("overdue"), str(j.get("state")) + (" (overdue)" if j.get("overdue") else "")),
             e(_when(j.get("last_success"))), e(_when(j.get("next_run")))] for j in jobs]
    tick = f"last tick {_when(schedule.get('at'))}" if schedule.get("at") else "the scheduler has not ticked"
    return (f'<section id="schedule"><h2>Schedule</h2><p class="muted">{e(tick)}</p>'
            + _table(["job", "last run", "last success", "next run"], rows) + "</section>"), problems


def failover_section(test_events: Sequence[Mapping[str, Any]]) -> str:
    moves = [ev for ev in test_events if ev["action"].startswith("failover.")
             and ev["action"] not in ("failover.plan.pushed", "failover.transition")]  # a transition repeats its move
    rows = [[e(_when(ev["at"])), e(ev["action"].removeprefix("failover.")), e(str((ev.get("details") or {}).get("target") or "")),
             e(str((ev.get("details") or {}).get("who") or ev["function"])),
             e(str((ev.get("details") or {}).get("sentence") or ""))[:240]] for ev in moves[::-1][:20]]
    return '<section id="failovers"><h2>Failover history</h2>' + _table(["at", "what", "to", "who", "result"], rows) + "</section>"


def tests_section(rows: Sequence[Mapping[str, Any]]) -> str:
    cells = [[e(r["test"]), e(r["every"]), e(_when(r["last"])), _flag(not r["failed"] and r["result"] != "never", r["result"]),
              f'<span class="{"bad" if r["overdue"] else "good"}">{e(_when(r["next_due"]) if r["next_due"] else "now")}'
              f'{" — overdue" if r["overdue"] else ""}</span>', e(r["evidence"])] for r in rows]
    return ('<section id="dr-tests"><h2>DR testing schedule (from evidence)</h2>'
            + _table(["test", "every", "last performed", "result", "next due", "evidence"], cells, "tests") + "</section>")


CSS = """body{margin:0;font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;color:#202124;background:#fff}
main{max-width:960px;margin:0 auto;padding:1rem 1.25rem}h1{font-size:1.5rem;margin:.25rem 0}
h2{font-size:1.2rem;border-bottom:2px solid #e8eaed;padding-bottom:.25rem;margin-top:2rem}h3{font-size:1rem;margin:1rem 0 .25rem}
.muted{color:#5f6368}.good{color:#1a7f37;font-weight:600}.bad{color:#c62828;font-weight:700}
.verdict{padding:.75rem 1rem;border-radius:.4rem;font-weight:600}.verdict.ok{background:#e6f4ea}.verdict.no{background:#fce8e6}
table{border-collapse:collapse;width:100%;margin:.5rem 0}th,td{text-align:left;padding:.3rem .5rem;border-bottom:1px solid #e8eaed;vertical-align:top}
th{background:#f8f9fa;font-weight:600}.stats{display:flex;flex-wrap:wrap;gap:.5rem 1.5rem;margin:.5rem 0}.stats dt{color:#5f6368;font-size:.8rem}
.stats dd{margin:0;font-size:1.05rem}svg.chart{width:100%;height:auto;display:block;margin:.75rem 0}
@media print{main{max-width:none}}"""


def render(evidence: Mapping[str, Any], now: dt.datetime) -> tuple[str, list[str]]:
    """The page, and its findings (what is wrong or overdue; none means all is well)."""
    window = dt.timedelta(days=int(evidence.get("window_days") or 30))
    start = now - window
    events = evidence.get("events") or []
    test_events = evidence.get("test_events") or []
    problems: list[str] = []
    sections = []
    for db in evidence.get("databases") or []:
        body, found = database_section(db, events, start, now)
        sections.append(body)
        problems += found
    body, found = scorecard.section(evidence, events, start, now)
    sections.append(body)
    problems += found
    body, found = config_section(evidence.get("config") or {})
    sections.append(body)
    problems += found
    body, found = provider_section(evidence.get("config") or {}, evidence.get("databases") or [], now)
    sections.append(body)
    problems += found
    sections.append(snapshots_section(events))
    body, found = schedule_section(evidence.get("schedule") or {}, now)
    sections.append(body)
    problems += found
    sections.append(failover_section(test_events))
    tests = testing.schedule(evidence.get("databases") or [], test_events, now)
    problems += [f"{r['test']}: overdue" for r in tests if r["overdue"]]
    problems += [f"{r['test']}: last result {r['result']}" for r in tests if r["failed"]]
    untrusted = list(evidence.get("untrusted") or [])
    problems += [f"not believed: {u}" for u in untrusted]
    if untrusted:
        sections.append('<section id="untrusted"><h2>Records not believed</h2><p class="muted">In the bucket, but not '
                        "signed by the function that writes them: left out of every figure above.</p>"
                        + _table(["record", "why"], [[e(u.split(": ", 1)[0]), e(u.split(": ", 1)[-1])]
                                                     for u in untrusted[:200]], "untrusted") + "</section>")
    verdict = ("Every database is within its RPO and RTO, and every DR test is up to date." if not problems
               else f"{len(problems)} finding(s): " + "; ".join(problems[:8]) + ("; …" if len(problems) > 8 else ""))
    trust = (f"Backup facts come from manifests signed by one of {evidence.get('trusted_keys')} trusted key(s)."
             if evidence.get("trusted_keys") else
             "No trusted keys were configured: no manifest could be believed (set DRKIT_TRUSTED_KEYS).")
    return (f'<!doctype html><html lang="en"><head><meta charset="utf-8">'
            f'<meta name="viewport" content="width=device-width, initial-scale=1">'
            f"<meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; style-src 'unsafe-inline'; img-src data:\">"
            f"<title>drkit DR report {now:%Y-%m-%d}</title><style>{CSS}</style></head><body><main>"
            f"<h1>Disaster-recovery report</h1><p class=\"muted\">Generated {e(_when(now.isoformat()))} · "
            f"period {e(_when(start.isoformat()))} to {e(_when(now.isoformat()))} · {e(trust)}</p>"
            f'<p class="verdict {"ok" if not problems else "no"}" id="verdict">{e(verdict)}</p>'
            + tests_section(tests) + "".join(sections)
            + '<p class="muted">drkit: every figure above comes from the bucket\'s records; '
              "the evidence is kept beside this report as JSON.</p></main></body></html>\n"), problems
