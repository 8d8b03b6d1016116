"""Status page notices in the bucket (`status/notices.json`): posted and resolved by operators and by failover.

Notices are public text. The bucket is the page's own storage (anyone holding the bucket key
can change the public page anyway), so they are not signed; they are escaped when rendered,
checked against the private strings and capped in size.
"""

from __future__ import annotations

import datetime as dt
import secrets
from typing import Any

from drkit.core.errors import ConfigError
from drkit.health.statuspage import NOTICE_SEVERITIES
from drkit.storage import audit
from drkit.storage.store import Store

KEY = "status/notices.json"
KEEP = 100  # newest notices kept in the object; older resolved ones leave it (the audit events stay)
AUTOMATIC_FAILOVER = "failover"  # the `source` of the notice a failover posts


def load(store: Store) -> list[dict[str, Any]]:
    doc = store.get_json_or_none(KEY) or {}
    items = doc.get("notices") if isinstance(doc, dict) else None
    return [n for n in items if isinstance(n, dict) and n.get("id")] if isinstance(items, list) else []


def _save(store: Store, notices: list[dict[str, Any]]) -> None:
    ongoing = [n for n in notices if not n.get("resolved_at")]
    resolved = sorted((n for n in notices if n.get("resolved_at")), key=lambda n: str(n["resolved_at"]))
    store.put_json(KEY, {"notices": ongoing + resolved[-max(0, KEEP - len(ongoing)):]})


def post(store: Store, title: str, message: str, severity: str, *, who: str, now: dt.datetime,
         source: str = "operator", function: str = "cli") -> dict[str, Any]:
    problems = []
    if not title.strip() or len(title) > 120:
        problems.append("the notice title must be 1 to 120 characters")
    if len(message) > 2000:
        problems.append("the notice message must be at most 2000 characters")
    if severity not in NOTICE_SEVERITIES:
        problems.append(f"severity must be one of {', '.join(NOTICE_SEVERITIES)}, not {severity!r}")
    if problems:
        raise ConfigError(problems)
    notice = {"id": f"{now.astimezone(dt.UTC):%Y%m%d-%H%M}-{secrets.token_hex(2)}", "title": title.strip(),
              "message": message.strip(), "severity": severity, "posted_at": now.isoformat(), "posted_by": who,
              "source": source, "resolved_at": None, "resolution": None}
    _save(store, [*load(store), notice])
    audit.record(store, function, "status.notice.posted", {"id": notice["id"], "title": notice["title"],
                                                           "severity": severity, "who": who})
    return notice


def resolve(store: Store, notice_id: str, message: str, *, who: str, now: dt.datetime,
            function: str = "cli") -> dict[str, Any]:
    notices = load(store)
    if notice_id == "latest":  # the newest ongoing notice
        ongoing = sorted((n for n in notices if not n.get("resolved_at")), key=lambda n: str(n.get("posted_at")))
        notice_id = ongoing[-1]["id"] if ongoing else notice_id
    match = [n for n in notices if n["id"] == notice_id]
    if not match:
        listed = ", ".join(n["id"] for n in notices if not n.get("resolved_at")) or "none"
        raise ConfigError(f"no notice {notice_id!r}; ongoing notices: {listed} (drkit status show lists them)")
    notice = match[0]
    if notice.get("resolved_at"):
        raise ConfigError(f"notice {notice_id} was already resolved at {notice['resolved_at']}")
    notice.update(resolved_at=now.isoformat(), resolution=message.strip()[:2000] or None, resolved_by=who)
    _save(store, notices)
    audit.record(store, function, "status.notice.resolved", {"id": notice_id, "who": who})
    return notice


def resolve_from(store: Store, source: str, message: str, *, who: str, now: dt.datetime,
                 function: str) -> list[str]:
    """Resolve every ongoing notice `source` posted (failback ends the failover notice)."""
    done = []
    for n in load(store):
        if n.get("source") == source and not n.get("resolved_at"):
            resolve(store, n["id"], message, who=who, now=now, function=function)
            done.append(n["id"])
    return done
