"""Webhook deliveries dns-failover has seen (`state/idempotency/dns-failover/<key>.json`), as signed records.

The first delivery of an alert runs; copies while it runs get 202, later copies its stored answer. A
record dns-failover did not sign is never an answer: a planted "completed" record must not turn a real
alert into a duplicate.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any, ClassVar

from drkit.core.fields import Fields
from drkit.storage.records import Record


@dataclass(frozen=True)
class Delivery(Record):
    """One webhook delivery's idempotency record: in progress until `expires`, or completed with its answer."""

    TYPE: ClassVar[str] = "webhook-delivery"
    WRITERS: ClassVar[tuple[str, ...]] = ("dns-failover",)

    status: str
    at: dt.datetime
    expires: dt.datetime | None = None
    sentence: str = ""

    def to_json(self) -> dict[str, Any]:
        return {"status": self.status, "at": self.at.isoformat(),
                "expires": self.expires.isoformat() if self.expires else None, "sentence": self.sentence}

    @classmethod
    def from_fields(cls, f: Fields) -> Delivery:
        return cls(f.text("status", choices=("in_progress", "completed")), f.time("at"), f.time("expires", nullable=True),
                   f.text("sentence", "", max_len=4000))
