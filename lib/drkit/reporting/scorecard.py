"""The report's off-site section: a 3-2-1-1-0 scorecard per database and the copy's lag, from signed records only.

3 copies (the live database, the primary bucket, the off-site copy), 2 media or providers, 1 off-site,
1 immutable (the copy's Object Lock, and until when), 0 errors (the last restore proof of each copy).
"""

from __future__ import annotations

import datetime as dt
import html
from collections.abc import Mapping, Sequence
from typing import Any

from drkit.policy import layout
from drkit.policy.durations import human
from drkit.reporting import charts
from drkit.reporting.charts import OK, Series

e = html.escape


def _flag(ok: bool, text: str) -> str:
    return f'<span class="{"good" if ok else "bad"}">{e(text)}</span>'


def _when(t: dt.datetime | None) -> str:
    return f"{t.astimezone(dt.UTC):%Y-%m-%d %H:%M} UTC" if t else "never"


def _time(text: Any) -> dt.datetime | None:
    return dt.datetime.fromisoformat(text) if isinstance(text, str) and text else None


def copy_delays(events: Sequence[Mapping[str, Any]], database: str) -> list[tuple[dt.datetime, float]]:
    """For each backup of `database` that a copy run names, how long after the backup it was in the copy (pure)."""
    out = []
    for ev in events:
        if ev.get("action") != "copy.completed":
            continue
        at = _time(ev.get("at"))
        for key in (ev.get("details") or {}).get("keys") or []:
            parsed = layout.parse_key(str(key))
            if at and parsed and parsed[0] == database and parsed[2] == layout.MANIFEST_SUFFIX:
                made = layout.id_time(parsed[1])
                out.append((made, max((at - made).total_seconds(), 0.0)))
    return sorted(out)


def section(evidence: Mapping[str, Any], events: Sequence[Mapping[str, Any]], start: dt.datetime,
            now: dt.datetime) -> tuple[str, list[str]]:
    copy = evidence.get("copy") or {}
    status = copy.get("status")
    problems: list[str] = []
    if not status:
        problems.append("off-site copy: none on record (dr/backup-copy has not run: 3-2-1-1-0 not met)")
        return ('<section id="offsite"><h2>Off-site copy (3-2-1-1-0)</h2><p class="bad">No off-site copy on record: '
                "every backup lives in one bucket, in one region, deletable by every function's key. Configure "
                "DRKIT_COPY_* (docs/storage.md) and run <code>drkit copy run</code>.</p></section>"), problems
    at = _time(status.get("at"))
    immutable = status.get("immutability") == "object-lock"
    if not immutable:
        problems.append(f"off-site copy: not immutable ({status.get('immutability')}): the copy key can delete it")
    if not status.get("ok"):
        problems.append(f"off-site copy: last run not clean: {str(status.get('decision'))[:200]}")
    primary_host = str(copy.get("primary") or "").split("/", 1)[0]
    copy_host = str(status.get("target") or "").split("/", 1)[0]
    elsewhere = primary_host != copy_host
    if not elsewhere:
        problems.append(f"off-site copy: at the same endpoint as the primary ({copy_host}): one region or provider "
                        "outage takes both; put the copy in another region or with another provider")
    by_db = {d["name"]: d for d in status.get("databases") or []}
    rows, charts_html = [], []
    for db in evidence.get("databases") or []:
        name = db["name"]
        d = by_db.get(name) or {}
        newest_primary = max((b["time"] for b in db.get("backups") or [] if b.get("complete")), default=None)
        newest_copied = d.get("newest_copied")
        waiting = [b for b in db.get("backups") or [] if b.get("complete") and (not newest_copied or b["id"] > newest_copied)]
        lag = max((now - min(_time(b["time"]) or now for b in waiting)).total_seconds(), 0.0) if waiting else 0.0
        lag_ok = lag <= float(db.get("copy_max_lag_s") or 3 * 3600)
        if not lag_ok:
            problems.append(f"{name}: the off-site copy is {human(lag)} behind (limit {human(db['copy_max_lag_s'])})")
        proofs = []
        for label, state in (("primary", db.get("verify_state") or {}), ("copy", db.get("copy_verify_state") or {})):
            last = (state.get("last_success") or {}).get("at")
            run = state.get("last_run") or {}
            failed = bool(run) and run.get("status") not in ("passed", None)
            proofs.append((label, _time(last), failed))
        never = [label for label, t, _ in proofs if t is None]
        if "copy" in never:
            problems.append(f"{name}: the off-site copy has never been restore-verified")
        copies = 1 + (1 if newest_primary else 0) + (1 if newest_copied else 0)
        locked = _time(d.get("locked_until"))
        rows.append([e(name), _flag(copies >= 3, f"{copies} (live, primary{', off-site' if newest_copied else ''})"),
                     _flag(elsewhere, f"{copy.get('primary')} · {status.get('target')}"),
                     _flag(bool(newest_copied), newest_copied or "none"),
                     _flag(immutable and locked is not None, f"until {_when(locked)}" if immutable and locked else
                           str(status.get("immutability"))),
                     " · ".join(_flag(t is not None and not failed, f"{label}: {_when(t)}" + (" (last run failed)"
                                                                                              if failed else ""))
                                for label, t, failed in proofs),
                     _flag(lag_ok, "current" if not waiting else human(lag))])
        delays = copy_delays(events, name)
        charts_html.append(charts.line_chart(
            f"{name}: time from backup to off-site copy", [Series("copy delay", delays, OK, dots=True)],
            start, now, limit=float(db.get("copy_max_lag_s") or 3 * 3600), limit_label="max lag",
            chart_id=f"copy-lag-{name}"))
    head = ["database", "3 copies", "2 places (primary · copy)", "1 off-site: newest copied", "1 immutable",
            "0 errors: last proof of each copy", "lag"]
    table = ("<table><thead><tr>" + "".join(f"<th>{e(h)}</th>" for h in head) + "</tr></thead><tbody>"
             + "".join("<tr>" + "".join(f"<td>{c}</td>" for c in r) + "</tr>" for r in rows) + "</tbody></table>")
    body = (f'<section id="offsite"><h2>Off-site copy (3-2-1-1-0)</h2><p class="muted">Last copy run '
            f"{e(_when(at))} to {e(str(status.get('target')))}: {e(str(status.get('decision')))}</p>"
            + table + "".join(charts_html) + "</section>")
    return body, problems
