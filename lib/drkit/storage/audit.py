"""Audit events: one small signed record in Spaces per state change (`audit/<date>/<stamp>-<fn>-<action>-<rand>.json`).

Any role may write an audit event, each signed by its writer; readers (the DR report) take an event as
evidence of an action only from the role that performs that action (`Signed.writer`), never from the
`function` text inside it.
"""

from __future__ import annotations

import datetime as dt
import os
from dataclasses import dataclass, field
from typing import Any, ClassVar

from drkit import __version__
from drkit.core import log
from drkit.core.errors import DrkitError
from drkit.core.fields import Fields
from drkit.platform.identity import ROLES
from drkit.policy.layout import audit_key
from drkit.storage import records
from drkit.storage.records import Record, Signed
from drkit.storage.store import Store


@dataclass(frozen=True)
class AuditEvent(Record):
    TYPE: ClassVar[str] = "audit"
    WRITERS: ClassVar[tuple[str, ...]] = ROLES

    at: dt.datetime
    function: str
    action: str
    actor: str
    drkit_version: str
    details: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {"at": self.at.isoformat(), "function": self.function, "action": self.action, "actor": self.actor,
                "drkit_version": self.drkit_version, "details": self.details}

    @classmethod
    def from_fields(cls, f: Fields) -> AuditEvent:
        details = f.json("details", {})
        if not isinstance(details, dict):
            raise f.fail("details", "must be an object")
        return cls(at=f.time("at"), function=f.text("function", max_len=40), action=f.text("action", max_len=80),
                   actor=f.text("actor", max_len=200), drkit_version=f.text("drkit_version", max_len=40),
                   details=details)


def actor() -> str:
    """Who acted: the activation id inside DO Functions, else the operator's user name."""
    activation = os.environ.get("__OW_ACTIVATION_ID")
    if activation:
        return f"activation:{activation}"
    return f"cli:{os.environ.get('USER') or os.environ.get('LOGNAME') or 'unknown'}"


def record(store: Store, function: str, action: str, details: dict[str, Any], *, now: dt.datetime | None = None) -> str | None:
    """Write an audit event. Never raises: a failed audit write is logged loudly instead.

    (The action itself already happened; failing the run now would hide its result.)
    """
    now = now or dt.datetime.now(dt.UTC)
    event = AuditEvent(now, function, action, actor(), __version__, log.redact_obj(details))
    key = audit_key(now, function, action)
    try:
        records.write(store, key, event, now)
    except DrkitError as exc:
        log.error("audit event could not be written", action=action, error=str(exc))
        return None
    return key


def read(store: Store, key: str, now: dt.datetime) -> Signed[AuditEvent] | None:
    return records.read(store, key, AuditEvent, now)
