"""Audit events: one small JSON object in Spaces per state change."""

from __future__ import annotations

import datetime as dt
import os
from typing import Any

from drkit import __version__
from drkit.core import log
from drkit.core.errors import StoreError
from drkit.policy.layout import audit_key
from drkit.storage.store import Store


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
    event = {
        "at": now.isoformat(),
        "function": function,
        "action": action,
        "actor": actor(),
        "drkit_version": __version__,
        "details": log.redact_obj(details),
    }
    key = audit_key(now, function, action)
    try:
        store.put_json(key, event)
    except StoreError as exc:
        log.error("audit event could not be written", action=action, error=str(exc))
        return None
    return key
