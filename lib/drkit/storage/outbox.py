"""The alert outbox: an alert is stored first, sent, and marked sent only after the endpoint answered 2xx.

One signed record per condition (`state/alerts/<role>/<id>.json`, `<id>` a hash of the condition's key,
e.g. `schedule.failed:db-backup/odoo:20261130T0107Z`), created with a conditional write, so concurrent
runs that see the same failure raise one alert. Delivery is retried by whichever run comes next, with
backoff, per channel (a Slack message that went out is not sent again because the webhook failed); a
send is claimed with a per-attempt token, so two runs never deliver the same attempt, and a token whose
run died is given up after `STALE` and the next attempt made. When the condition clears, `resolve`
marks it and one "resolved" message follows the same way.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import secrets
from dataclasses import dataclass, field, replace
from typing import Any, ClassVar

from drkit.core import log
from drkit.core.deadline import Deadline
from drkit.core.errors import DrkitError
from drkit.core.fields import Fields
from drkit.platform.notify import CHANNELS, Notifier
from drkit.storage import records
from drkit.storage.records import Record, RecordError
from drkit.storage.store import Store

PREFIX = "state/alerts/"
STALE = dt.timedelta(minutes=2)  # a send token older than this, with nothing recorded, was a run that died
MAX_BACKOFF = dt.timedelta(minutes=30)
KEEP_DELIVERED = dt.timedelta(days=7)
PHASES = ("open", "resolved")


@dataclass(frozen=True)
class Alert(Record):
    TYPE: ClassVar[str] = "alert"
    WRITERS: ClassVar[tuple[str, ...]] = ("scheduler", "health-probe", "db-backup", "restore-verify", "config-backup",
                                          "snapshot-rotate", "dns-failover", "report")

    condition: str
    event: dict[str, Any]
    opened_at: dt.datetime
    resolved_at: dt.datetime | None = None
    resolution: dict[str, Any] | None = None  # the "resolved" message
    delivered: dict[str, tuple[str, ...]] = field(default_factory=dict)  # phase -> channels that answered 2xx
    attempts: dict[str, int] = field(default_factory=dict)  # phase -> attempts made
    next_attempt_at: dt.datetime | None = None
    last_error: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {"condition": self.condition, "event": self.event, "opened_at": self.opened_at.isoformat(),
                "resolved_at": self.resolved_at.isoformat() if self.resolved_at else None,
                "resolution": self.resolution, "delivered": {k: list(v) for k, v in self.delivered.items()},
                "attempts": self.attempts,
                "next_attempt_at": self.next_attempt_at.isoformat() if self.next_attempt_at else None,
                "last_error": self.last_error}

    @classmethod
    def from_fields(cls, f: Fields) -> Alert:
        event, resolution = f.json("event"), f.json("resolution", None)
        if not isinstance(event, dict) or (resolution is not None and not isinstance(resolution, dict)):
            raise f.fail("event", "must be an object")
        delivered: dict[str, tuple[str, ...]] = {}
        for phase, sent in (f.json("delivered", {}) or {}).items():
            if phase not in PHASES or not isinstance(sent, list) or not set(sent) <= set(CHANNELS):
                raise f.fail("delivered", f"{str(phase)[:20]}: must list channels of {', '.join(CHANNELS)}")
            delivered[phase] = tuple(sent)
        attempts: dict[str, int] = {}
        for phase, n in (f.json("attempts", {}) or {}).items():
            if phase not in PHASES or isinstance(n, bool) or not isinstance(n, int) or not 0 <= n <= 10_000:
                raise f.fail("attempts", f"{str(phase)[:20]}: must be a count")
            attempts[phase] = n
        return cls(f.text("condition", max_len=500), event, f.time("opened_at"), f.time("resolved_at", None, nullable=True),
                   resolution, delivered, attempts, f.time("next_attempt_at", None, nullable=True),
                   f.text("last_error", None, nullable=True))

    def phase(self) -> str:
        return "resolved" if self.resolved_at else "open"

    def pending(self, channels: tuple[str, ...]) -> tuple[str, ...]:
        """Channels the current phase still has to reach."""
        done = set(self.delivered.get(self.phase(), ()))
        return tuple(c for c in channels if c not in done)


@dataclass(frozen=True)
class SendToken(Record):
    TYPE: ClassVar[str] = "alert-send"
    WRITERS: ClassVar[tuple[str, ...]] = Alert.WRITERS

    owner: str
    at: dt.datetime

    def to_json(self) -> dict[str, Any]:
        return {"owner": self.owner, "at": self.at.isoformat()}

    @classmethod
    def from_fields(cls, f: Fields) -> SendToken:
        return cls(f.text("owner", max_len=40), f.time("at"))


def _id(condition: str) -> str:
    return hashlib.sha256(condition.encode()).hexdigest()[:24]


def key_of(store: Store, condition: str) -> str:
    return f"{PREFIX}{store.identity.role or 'unknown'}/{_id(condition)}.json"


def _mine(store: Store) -> tuple[str, ...]:
    """Each role's alerts are believed only from that role: another function's key cannot mark this
    role's alert delivered or resolved (which would silence it)."""
    return (store.identity.role or "unknown",)


def raise_alert(store: Store, condition: str, event: dict[str, Any], now: dt.datetime) -> bool:
    """Store an alert for `condition` unless one is open already (True: this call raised it). A condition
    that was resolved and comes back is a new alert."""
    key = key_of(store, condition)
    alert = Alert(condition, event, now)
    got = records.claim(store, key, alert, now, writers=_mine(store))
    if got.ours:
        return True
    holder = got.holder.value if got.holder else None
    if holder is not None and holder.resolved_at is not None and not holder.pending(CHANNELS):
        records.write(store, key, alert, now)  # closed and told: a new occurrence
        return True
    return False


def resolve(store: Store, condition: str, message: dict[str, Any], now: dt.datetime) -> bool:
    """Mark `condition`'s open alert resolved (one "resolved" message follows); False when none is open."""
    key = key_of(store, condition)
    try:
        got = records.read(store, key, Alert, now, _mine(store))
    except RecordError as exc:
        log.error("alert record not believed; removed", key=key, error=exc.reason)
        store.delete(key)
        return False
    if got is None or got.value.resolved_at is not None:
        return False
    records.write(store, key, replace(got.value, resolved_at=now, resolution=message, next_attempt_at=None,
                                      last_error=None), now)
    return True


def open_conditions(store: Store, now: dt.datetime) -> dict[str, Alert]:
    """This role's alerts that are open (not resolved), by condition."""
    out = {}
    for _, alert in _alerts(store, now):
        if alert.resolved_at is None:
            out[alert.condition] = alert
    return out


def _alerts(store: Store, now: dt.datetime) -> list[tuple[str, Alert]]:
    prefix = f"{PREFIX}{store.identity.role or 'unknown'}/"
    found = []
    for obj in store.list_objects(prefix):
        if obj.key.count("/") != prefix.count("/") or not obj.key.endswith(".json"):
            continue  # send tokens live one level down
        try:
            got = records.read(store, obj.key, Alert, now, _mine(store))
        except RecordError as exc:
            log.error("alert record not believed; removed", key=obj.key, error=exc.reason)
            store.delete(obj.key)
            continue
        if got is not None:
            found.append((obj.key, got.value))
    return found


def flush(store: Store, notifier: Notifier, now: dt.datetime, deadline: Deadline,
          margin_s: float = 10.0) -> list[dict[str, Any]]:
    """Deliver every alert (and resolution) that is due; one result line per send attempted."""
    channels = notifier.channels()
    out: list[dict[str, Any]] = []
    if not channels:
        return out
    owner = secrets.token_hex(6)
    for key, alert in _alerts(store, now):
        if deadline.expired(margin_s):
            log.warning("alert delivery left for the next run: the deadline is near")
            break
        pending = alert.pending(channels)
        if not pending:
            if alert.resolved_at is not None and now - alert.resolved_at > KEEP_DELIVERED:
                _forget(store, key)
            continue
        if alert.next_attempt_at is not None and alert.next_attempt_at > now:
            continue
        phase = alert.phase()
        n = alert.attempts.get(phase, 0) + 1
        token = records.claim(store, f"{key.removesuffix('.json')}/{phase}-{n}.json", SendToken(owner, now), now,
                              writers=_mine(store))
        if not token.ours:
            held = token.holder.value if token.holder else None
            if held is not None and now - held.at > STALE:  # that run died mid-send: count the attempt as failed
                records.write(store, key, replace(alert, attempts={**alert.attempts, phase: n}), now)
            continue
        message = alert.resolution if phase == "resolved" and alert.resolution else alert.event
        results = [notifier.send_to(channel, message) for channel in pending]
        ok = tuple(r["channel"] for r in results if r.get("ok"))
        delivered = {**alert.delivered, phase: tuple(sorted({*alert.delivered.get(phase, ()), *ok}))}
        failed = [r for r in results if not r.get("ok")]
        wait = min(MAX_BACKOFF, dt.timedelta(seconds=30 * 2 ** (n - 1)))
        error = "; ".join(f"{r['channel']}: {r.get('error') or r.get('status')}" for r in failed) or None
        try:
            records.write(store, key, replace(alert, delivered=delivered, attempts={**alert.attempts, phase: n},
                                              next_attempt_at=now + wait if failed else None, last_error=error), now)
        except DrkitError as exc:  # delivered but not recorded: the next run may send it once more
            log.error("alert delivery not recorded", key=key, error=str(exc))
        out += [r | {"condition": alert.condition, "phase": phase, "attempt": n} for r in results]
    return out


def _forget(store: Store, key: str) -> None:
    base = key.removesuffix(".json") + "/"
    for obj in store.list_objects(base):
        store.delete(obj.key)
    store.delete(key)
