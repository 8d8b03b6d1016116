"""The post-incident record: what happened between two times, from the records drkit keeps (markdown).

The DR plan's post-incident procedure asks for a timeline, when the incident was detected, how long
recovery took against the scenario's RTO, how old the restored data was against the RPO, and what
was done by whom. drkit has all of it in the bucket, signed by the role that did it: audit events
(probe transitions, failover moves, restores and their backups, validations, rebuilds), the status
page's notices, and the failover state. `gather` reads them for a window, believing each event only
from its rightful writer; `render` writes the record; the post-mortem's narrative is left to people,
with its headings in place.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from drkit.core.errors import DrkitError
from drkit.policy import layout
from drkit.reporting.evidence import AUDIT_KEY_RE
from drkit.storage import audit
from drkit.storage.store import Store

# the DR plan's scenarios: name and recovery time objective
SCENARIOS: dict[str, tuple[str, dt.timedelta]] = {
    "1": ("Database loss", dt.timedelta(hours=2)),
    "2": ("App Platform failure: the apps move to another region", dt.timedelta(hours=4)),
    "3": ("Droplet failure", dt.timedelta(hours=1)),
    "4": ("Regional outage", dt.timedelta(hours=8)),
}
RPO = dt.timedelta(hours=1)
# whose event is evidence of each action (prefix -> roles); an event from anyone else is not believed
WRITERS: dict[str, tuple[str, ...]] = {
    "health.": ("health-probe",), "failover.": ("dns-failover", "health-probe", "operator"),
    "status.notice.": ("operator", "dns-failover", "health-probe"), "restore.": ("operator",),
    "recovery.": ("operator",), "supabase.": ("operator",), "files.": ("operator",),
    "droplet.": ("snapshot-rotate",), "app.": ("operator",), "dns.record.": ("snapshot-rotate",), "reserved_ip.": ("snapshot-rotate", "dns-failover"),
    "dns.": ("operator",), "backup.failed": ("db-backup",), "verify.failed": ("restore-verify",), "cli.": ("operator",),
    "config.backup.failed": ("config-backup",), "copy.failed": ("backup-copy",),
}
DETECTION = ("health.changed", "failover.requested", "backup.failed", "verify.failed", "status.notice.posted")


@dataclass(frozen=True)
class Event:
    at: dt.datetime
    action: str
    writer: str
    actor: str
    details: Mapping[str, Any]


@dataclass
class Gathered:
    events: list[Event] = field(default_factory=list)
    not_believed: list[str] = field(default_factory=list)


def _writers(action: str) -> tuple[str, ...]:
    return next((w for prefix, w in WRITERS.items() if action.startswith(prefix)), ())


def gather(store: Store, since: dt.datetime, until: dt.datetime, now: dt.datetime) -> Gathered:
    """Every audit event of the window whose action the record uses, believed only from its rightful writer."""
    out = Gathered()
    day = since.date()
    while day <= until.date():
        for obj in store.list_objects(f"audit/{day:%Y/%m/%d}/"):
            m = AUDIT_KEY_RE.match(obj.key.rsplit("/", 1)[-1])
            if not m or not _writers(m.group(4)):
                continue
            at = dt.datetime.strptime(m.group(1), "%Y%m%dT%H%M%S").replace(tzinfo=dt.UTC)
            if not since <= at <= until:
                continue
            try:
                got = audit.read(store, obj.key, now)
            except DrkitError as exc:
                out.not_believed.append(f"{obj.key}: {exc}")
                continue
            if got is None:
                continue
            ev = got.value
            if ev.action != m.group(4) or got.writer not in _writers(ev.action):
                out.not_believed.append(f"{obj.key}: {ev.action} signed by {got.writer}, not by "
                                        f"{' or '.join(_writers(ev.action))}")
                continue
            if ev.action != "failover.transition":  # the move's own event says it (a transition repeats it)
                out.events.append(Event(ev.at, ev.action, got.writer, ev.actor, dict(ev.details)))
        day += dt.timedelta(days=1)
    out.events.sort(key=lambda e: e.at)
    return out


def describe(e: Event) -> str:
    """One line of the timeline."""
    d = e.details
    if e.action == "health.changed":
        return "; ".join(f"{c.get('target')} {str(c.get('event')).upper()}: {c.get('detail')}"
                         for c in d.get("changes") or [])
    if e.action.startswith("restore."):
        what = {"restore.completed": "restored", "restore.failed": "restore FAILED",
                "restore.swapped_back": "swapped back"}.get(e.action, e.action)
        extra = f" ({d.get('error')})" if d.get("error") else (f" in {d.get('duration_s')} s" if d.get("duration_s")
                                                                else "")
        return f"{what} {d.get('database', '')} backup {d.get('backup_id', '')} into {d.get('target', '')}{extra}"
    if e.action == "recovery.validated":
        return f"recovery validated: {d.get('passed')} automatic checks passed, {d.get('failed')} failed"
    if e.action.startswith("status.notice."):
        return f"status page: {e.action.rsplit('.', 1)[-1]} {d.get('title') or d.get('id') or ''}".strip()
    if e.action.startswith("failover."):
        moved = f" to {d.get('target') or d.get('site')}" if d.get("target") or d.get("site") else ""
        why = d.get("sentence") or d.get("reason")
        return f"failover {e.action.removeprefix('failover.')}{moved}" + (f": {why}" if why else "")
    shown = ", ".join(f"{k} {v}" for k, v in d.items() if isinstance(v, (str, int, float)) and k != "key")[:200]
    return f"{e.action}" + (f": {shown}" if shown else "")


def _restored_ages(events: Sequence[Event], start: dt.datetime) -> list[tuple[str, dt.timedelta]]:
    """For each restore: how much data it could not bring back (incident start minus the backup's time)."""
    out = []
    for e in events:
        backup_id = str(e.details.get("backup_id") or "")
        if e.action == "restore.completed" and layout.ID_RE.match(backup_id):
            out.append((f"{e.details.get('database')} {backup_id}", max(dt.timedelta(0), start - layout.id_time(backup_id))))
    return out


def _human(d: dt.timedelta) -> str:
    s = int(d.total_seconds())
    return f"{s // 3600} h {s % 3600 // 60:02d} min" if s >= 3600 else f"{s // 60} min {s % 60:02d} s"


def render(g: Gathered, *, since: dt.datetime, until: dt.datetime, scenario: str | None, title: str) -> str:
    events = g.events
    detected = next((e for e in events if e.action in DETECTION), None)
    start = detected.at if detected else since
    recovered = next((e for e in reversed(events) if e.action == "recovery.validated"
                      and not e.details.get("failed")), None)
    name, rto = SCENARIOS.get(scenario or "", ("(scenario not given: --scenario 1-4)", None))
    lines = [f"# Post-incident record: {title}", "",
             f"Window {since:%Y-%m-%d %H:%M} to {until:%Y-%m-%d %H:%M} UTC; scenario: {name}"
             + (f" (RTO {_human(rto)})" if rto else "") + ". Written by `drkit incident record` from the signed "
             "records in the bucket; every line below is evidence, the narrative sections are for people.", "",
             "## Summary", ""]
    lines.append(f"- **Detected**: {start:%Y-%m-%d %H:%M:%S} UTC" + (f" ({describe(detected)})" if detected else
                                                                     " (no alert in the window: the window's start)"))
    if recovered:
        took = recovered.at - start
        verdict = "" if rto is None else (f", **within** the RTO of {_human(rto)}" if took <= rto else
                                          f", **over** the RTO of {_human(rto)} by {_human(took - rto)}")
        lines.append(f"- **Recovered** (validated, every automatic check passed): {recovered.at:%Y-%m-%d %H:%M:%S} UTC;"
                     f" time to recover {_human(took)}{verdict}")
    else:
        lines.append("- **Recovered**: no passing `drkit validate` in the window: recovery is not proven")
    for label, age in _restored_ages(events, start):
        lines.append(f"- **Data restored**: {label}, {_human(age)} older than the incident's start "
                     + ("(within" if age <= RPO else "(**over**") + f" the RPO of {_human(RPO)})")
    if not _restored_ages(events, start):
        lines.append("- **Data restored**: no database restore in the window")
    people = sorted({e.actor for e in events if e.writer == "operator"})
    lines.append(f"- **People who acted**: {', '.join(people) or 'none (the automation alone)'}")
    lines += ["", "## Timeline (UTC)", "", "| time | by | what |", "|---|---|---|"]
    for e in events:
        who = e.writer if e.writer != "operator" else f"operator ({e.actor})"
        lines.append(f"| {e.at:%m-%d %H:%M:%S} | {who} | {describe(e).replace('|', '/')} |")
    if not events:
        lines.append("| | | nothing recorded in this window |")
    if g.not_believed:
        lines += ["", "## Records not believed", "", "In the bucket, but not signed by the role that performs the action: "
                  "left out of everything above.", ""] + [f"- {x}" for x in g.not_believed[:100]]
    lines += ["", "## For the post-mortem (people)", "", "- Root cause:", "- What went well:",
              "- What went badly or slowly:", "- Follow-ups (owner, date):", ""]
    return "\n".join(lines)
