"""Status page notices in the bucket (`status/notices.json`): posted and resolved by operators and by failover.

Notices are public text, kept as one signed record (operator, dns-failover or health-probe): a notice
planted in the bucket never reaches the page, and an open major notice is what makes the page's banner
say so. They are escaped when rendered, checked against the private strings and capped in size.
"""

from __future__ import annotations

import datetime as dt
import secrets
from dataclasses import dataclass
from typing import Any, ClassVar

from drkit.core import log
from drkit.core.errors import ConfigError
from drkit.core.fields import Fields
from drkit.health.statuspage import NOTICE_SEVERITIES
from drkit.storage import audit, records
from drkit.storage.records import Record, RecordError
from drkit.storage.store import Store

KEY = "status/notices.json"
KEEP = 100  # newest notices kept in the object; older resolved ones leave it (the audit events stay)
AUTOMATIC_FAILOVER = "failover"  # the `source` of the notice a failover posts


def _notice(f: Fields) -> dict[str, Any]:
    out = {"id": f.text("id", max_len=40), "title": f.text("title", max_len=120), "message": f.text("message", max_len=2000),
           "severity": f.text("severity", choices=NOTICE_SEVERITIES), "posted_at": f.time("posted_at").isoformat(),
           "posted_by": f.text("posted_by", max_len=200), "source": f.text("source", max_len=40),
           "resolved_at": (lambda t: t.isoformat() if t else None)(f.time("resolved_at", None, nullable=True)),
           "resolution": f.text("resolution", None, nullable=True, max_len=2000)}
    if f.has("resolved_by"):
        out["resolved_by"] = f.text("resolved_by", max_len=200)
    f.done()
    return out


@dataclass(frozen=True)
class Notices(Record):
    TYPE: ClassVar[str] = "status-notices"
    WRITERS: ClassVar[tuple[str, ...]] = ("operator", "dns-failover", "health-probe")

    notices: tuple[dict[str, Any], ...] = ()

    def to_json(self) -> dict[str, Any]:
        return {"notices": list(self.notices)}

    @classmethod
    def from_fields(cls, f: Fields) -> Notices:
        return cls(tuple(_notice(n) for n in f.objects("notices", max_items=KEEP * 2)))


def load(store: Store, now: dt.datetime | None = None) -> list[dict[str, Any]]:
    """The notices; RecordError when the object is there but not believed (the page then shows none of it)."""
    got = records.read(store, KEY, Notices, now or dt.datetime.now(dt.UTC))
    return [dict(n) for n in got.value.notices] if got else []


def _load_for_change(store: Store, now: dt.datetime) -> list[dict[str, Any]]:
    try:
        return load(store, now)
    except RecordError as exc:  # a writer starts over rather than carry notices nobody it trusts wrote
        log.error("status notices not believed; starting a new list", error=exc.reason)
        return []


def _save(store: Store, notices: list[dict[str, Any]], now: dt.datetime) -> None:
    ongoing = [n for n in notices if not n.get("resolved_at")]
    resolved = sorted((n for n in notices if n.get("resolved_at")), key=lambda n: str(n["resolved_at"]))
    records.write(store, KEY, Notices(tuple(ongoing + resolved[-max(0, KEEP - len(ongoing)):])), now)


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
    _save(store, [*_load_for_change(store, now), notice], now)
    audit.record(store, function, "status.notice.posted", {"id": notice["id"], "title": notice["title"],
                                                           "severity": severity, "who": who})
    return notice


def resolve(store: Store, notice_id: str, message: str, *, who: str, now: dt.datetime,
            function: str = "cli") -> dict[str, Any]:
    notices = _load_for_change(store, now)
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
    _save(store, notices, now)
    audit.record(store, function, "status.notice.resolved", {"id": notice_id, "who": who})
    return notice


def resolve_from(store: Store, source: str, message: str, *, who: str, now: dt.datetime,
                 function: str) -> list[str]:
    """Resolve every ongoing notice `source` posted (failback ends the failover notice)."""
    done = []
    for n in _load_for_change(store, now):
        if n.get("source") == source and not n.get("resolved_at"):
            resolve(store, n["id"], message, who=who, now=now, function=function)
            done.append(n["id"])
    return done
