"""The public status page (pure): services from probe states, notices, and the HTML and JSON anyone may read.

Only what the operator configured as public leaves this module: each service's public name,
its status and since when, and the notices. Probe targets, hosts, addresses and error texts
stay private unless a service sets `show_detail`; every configured private string is removed
from the page as a last guard (`DRKIT_STATUS_PAGE`, docs/status-page.md).
"""

from __future__ import annotations

import datetime as dt
import html
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from drkit.core import jsontext
from drkit.core.errors import ConfigError

STATUSES = ("operational", "degraded", "down", "unknown")  # worst last but one; unknown: not probed yet
NOTICE_SEVERITIES = ("info", "minor", "major")
NOTICE_STATUS = {"info": "operational", "minor": "degraded", "major": "down"}  # what an open notice makes the banner
RESOLVED_SHOWN = dt.timedelta(days=7)  # resolved notices stay on the page this long


@dataclass(frozen=True)
class Service:
    name: str  # what the public sees
    targets: tuple[str, ...]  # health-probe target names behind it (private)
    show_detail: bool = False  # publish the probe's own text (hosts, errors): off unless asked for


@dataclass(frozen=True)
class PageConfig:
    title: str
    services: tuple[Service, ...]
    private: tuple[str, ...] = field(default=())  # strings that must never appear on the page

    @classmethod
    def parse(cls, text: str, var: str = "DRKIT_STATUS_PAGE") -> PageConfig | None:
        """None when unset (no public page); ConfigError naming every problem otherwise."""
        text = text.strip()
        if not text or text == "unset":
            return None
        try:
            raw = jsontext.loads(text)
        except json.JSONDecodeError as exc:
            raise ConfigError(f"{var} is not JSON: {exc.msg} at character {exc.pos}") from None
        except ValueError as exc:  # a key given twice
            raise ConfigError(f"{var}: {exc}") from None
        problems: list[str] = []
        if not isinstance(raw, dict):
            raise ConfigError(f"{var} must be a JSON object like "
                              '{"title": "Acme status", "services": [{"name": "ERP", "targets": ["erp-https"]}]}')
        unknown = sorted(set(raw) - {"title", "services", "private"})
        if unknown:
            problems.append(f"{var}: unknown key(s) {', '.join(unknown)}; known: title, services, private")
        title = raw.get("title", "Service status")
        if not isinstance(title, str) or not title.strip() or len(title) > 100:
            problems.append(f"{var}: title must be a non-empty string of at most 100 characters")
            title = "Service status"
        services: list[Service] = []
        items = raw.get("services")
        if not isinstance(items, list) or not items:
            problems.append(f"{var}: services must be a non-empty list of {{name, targets}}")
            items = []
        for i, s in enumerate(items):
            label = f"{var} services[{i}]"
            if not isinstance(s, dict):
                problems.append(f"{label} must be an object")
                continue
            bad = sorted(set(s) - {"name", "targets", "show_detail"})
            if bad:
                problems.append(f"{label}: unknown key(s) {', '.join(bad)}; known: name, targets, show_detail")
            name, targets = s.get("name"), s.get("targets")
            if not isinstance(name, str) or not name.strip() or len(name) > 80:
                problems.append(f"{label}: name must be a non-empty string of at most 80 characters")
                continue
            if not isinstance(targets, list) or not targets or not all(isinstance(t, str) and t for t in targets):
                problems.append(f"{label} ({name}): targets must list health-probe target names")
                continue
            if not isinstance(s.get("show_detail", False), bool):
                problems.append(f"{label} ({name}): show_detail must be true or false")
            services.append(Service(name.strip(), tuple(targets), s.get("show_detail") is True))
        if len({s.name for s in services}) != len(services):
            problems.append(f"{var}: service names must be unique")
        private = raw.get("private", [])
        if not isinstance(private, list) or not all(isinstance(p, str) and len(p) >= 3 for p in private):
            problems.append(f"{var}: private must be a list of strings (3+ characters) never to publish")
            private = []
        if problems:
            raise ConfigError(problems)
        return cls(title.strip(), tuple(services), tuple(private))

    def check_notice(self, text: str) -> None:
        """Refuse notice text that names something configured as private."""
        leaked = [p for p in self.private if p.lower() in text.lower()]
        if leaked:
            raise ConfigError(f"the notice names {len(leaked)} string(s) listed as private in DRKIT_STATUS_PAGE; "
                              "reword it without hosts, addresses or internal names")


def service_status(service: Service, states: Mapping[str, Mapping[str, Any]]) -> tuple[str, str | None, str | None]:
    """(status, since, detail) of one service from health-probe's target states."""
    known = [states[t] for t in service.targets if t in states]
    if not known:
        return "unknown", None, None
    down = [s for s in known if s.get("status") == "unhealthy"]
    shaky = [s for s in known if s.get("status") != "unhealthy" and (int(s.get("failures", 0)) > 0 or s.get("warning"))]
    if down and len(down) == len(service.targets):
        status, which = "down", down
    elif down or shaky:
        status, which = "degraded", down or shaky
    else:
        status, which = "operational", known
    since = max((str(s.get("since") or "") for s in which), default="") or None
    detail = "; ".join(str((s.get("last") or {}).get("detail") or "") for s in which if s is not None) or None
    return status, since, detail


def build(config: PageConfig, states: Mapping[str, Mapping[str, Any]], notices: Sequence[Mapping[str, Any]],
          now: dt.datetime, updated_at: str | None, failover: str | None = None) -> dict[str, Any]:
    """The public JSON document (also what the HTML shows). The banner is the worst of the services, the
    open notices (major: down, minor: degraded) and a failover in progress (`failover`: the site traffic
    was moved to, or is being moved to): a page never says "All systems operational" during an incident
    its operators have declared."""
    services = []
    for svc in config.services:
        status, since, detail = service_status(svc, states)
        entry: dict[str, Any] = {"name": svc.name, "status": status, "since": since}
        if svc.show_detail and status != "operational" and detail:
            entry["detail"] = detail[:300]
        services.append(entry)
    order = {"operational": 0, "unknown": 1, "degraded": 2, "down": 3}
    worst = max((s["status"] for s in services), key=order.__getitem__, default="unknown")
    declared = max((NOTICE_STATUS.get(str(n.get("severity")), "operational") for n in notices
                    if not n.get("resolved_at")), key=order.__getitem__, default="operational")
    banner = max([worst, declared, "degraded" if failover else "operational"], key=order.__getitem__)
    shown = []
    for n in notices:
        resolved = n.get("resolved_at")
        if resolved and now - dt.datetime.fromisoformat(str(resolved)) > RESOLVED_SHOWN:
            continue
        shown.append({k: n.get(k) for k in ("id", "title", "message", "severity", "posted_at", "resolved_at",
                                            "resolution")})
    shown.sort(key=lambda n: str(n["posted_at"]), reverse=True)  # newest first, the ongoing ones on top
    open_first = [n for n in shown if not n["resolved_at"]] + [n for n in shown if n["resolved_at"]]
    summary = {"operational": "All systems operational", "degraded": "Some systems are degraded",
               "down": "Some systems are down", "unknown": "Status not yet known"}[worst]
    if banner == "down" and worst != "down":
        summary = "Major outage"
    elif banner == "degraded" and worst != "degraded":
        summary = "Running on our disaster-recovery site" if failover and declared == "operational" else "Degraded service"
    doc = {"title": config.title, "status": banner, "summary": summary, "updated_at": updated_at or now.isoformat(),
           "services": services, "notices": open_first}
    if failover:
        doc["failover"] = {"in_progress": True}
    redacted: dict[str, Any] = redact(doc, config.private)
    return redacted


def redact(doc: Any, private: Sequence[str]) -> Any:
    """The last guard: every private string replaced, wherever it came from."""
    if isinstance(doc, dict):
        return {k: redact(v, private) for k, v in doc.items()}
    if isinstance(doc, list):
        return [redact(v, private) for v in doc]
    if isinstance(doc, str):
        for p in private:
            if p.lower() in doc.lower():
                idx = doc.lower().index(p.lower())
                doc = redact(doc[:idx] + "[private]" + doc[idx + len(p):], private)
        return doc
    return doc


_COLORS = {"operational": "#1a7f37", "degraded": "#b35900", "down": "#c62828", "unknown": "#5f6368"}
_WORDS = {"operational": "Operational", "degraded": "Degraded", "down": "Down", "unknown": "Unknown"}


def _when(iso: str | None) -> str:
    if not iso:
        return ""
    t = dt.datetime.fromisoformat(iso).astimezone(dt.UTC)
    return f"{t:%Y-%m-%d %H:%M} UTC"


def render_html(doc: Mapping[str, Any]) -> str:
    """A self-contained page: no script, no external resource, readable on a phone, refreshes itself."""
    e = html.escape
    rows = []
    for s in doc["services"]:
        since = f'<span class="since">since {e(_when(s["since"]))}</span>' if s.get("since") else ""
        detail = f'<div class="detail">{e(s["detail"])}</div>' if s.get("detail") else ""
        rows.append(f'<li class="svc"><span class="name">{e(s["name"])}</span>'
                    f'<span class="st st-{e(s["status"])}">{_WORDS[s["status"]]}</span>{since}{detail}</li>')
    notices = []
    for n in doc["notices"]:
        state = (f'Resolved {e(_when(n["resolved_at"]))}' + (f': {e(n["resolution"])}' if n.get("resolution") else "")
                 if n.get("resolved_at") else "Ongoing")
        notices.append(f'<article class="notice sev-{e(str(n["severity"]))}{" resolved" if n.get("resolved_at") else ""}">'
                       f'<h3>{e(str(n["title"]))}</h3><p>{e(str(n.get("message") or ""))}</p>'
                       f'<p class="meta">Posted {e(_when(n["posted_at"]))} · {state}</p></article>')
    banner = _COLORS[doc["status"]]
    return f"""<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta http-equiv="Content-Security-Policy" content="default-src 'none'; style-src 'unsafe-inline'">
<meta http-equiv="refresh" content="60">
<title>{e(doc["title"])}</title>
<style>
body{{margin:0;font:16px/1.5 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;color:#202124;background:#f6f7f9}}
main{{max-width:44rem;margin:0 auto;padding:1rem}}
h1{{font-size:1.5rem;margin:.5rem 0 1rem}}
.banner{{background:{banner};color:#fff;border-radius:.5rem;padding:1rem 1.25rem;font-size:1.15rem;font-weight:600}}
ul{{list-style:none;padding:0;margin:1rem 0;background:#fff;border-radius:.5rem;border:1px solid #dadce0}}
.svc{{display:flex;flex-wrap:wrap;align-items:baseline;gap:.25rem 1rem;padding:.75rem 1.25rem;border-top:1px solid #eee}}
.svc:first-child{{border-top:0}}
.name{{flex:1 1 12rem;font-weight:600}}
.st{{font-weight:600}}
.st-operational{{color:{_COLORS["operational"]}}}.st-degraded{{color:{_COLORS["degraded"]}}}
.st-down{{color:{_COLORS["down"]}}}.st-unknown{{color:{_COLORS["unknown"]}}}
.since,.meta{{color:#5f6368;font-size:.875rem}}
.detail{{flex-basis:100%;color:#5f6368;font-size:.875rem}}
.notice{{background:#fff;border:1px solid #dadce0;border-left:.35rem solid #1a73e8;border-radius:.5rem;padding:.5rem 1.25rem;margin:1rem 0}}
.notice.sev-major{{border-left-color:{_COLORS["down"]}}}.notice.sev-minor{{border-left-color:{_COLORS["degraded"]}}}
.notice.resolved{{border-left-color:#9aa0a6}}
.notice h3{{margin:.5rem 0 .25rem;font-size:1.05rem}}
footer{{color:#5f6368;font-size:.8rem;margin:2rem 0 1rem}}
</style>
</head>
<body>
<main>
<h1>{e(doc["title"])}</h1>
<div class="banner" id="overall">{e(doc["summary"])}</div>
{"<section id='notices'><h2>Notices</h2>" + "".join(notices) + "</section>" if notices else ""}
<ul id="services">{"".join(rows)}</ul>
<footer>Updated {e(_when(doc["updated_at"]))}. This page refreshes every minute. Machine-readable: <a href="status.json">status.json</a>.</footer>
</main>
</body>
</html>
"""
