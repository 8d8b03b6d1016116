"""What one backup-copy run does, decided without I/O: copy, keep longer, or let go of each object.

Copy what is new, keep blobs still in use locked, let go of what the copy's own retention no longer keeps.

Retention on the copy never follows the primary: a backup the primary deleted (by its retention, or
by an attacker) stays in the copy until the copy's own keep date (`lock_days` after it was copied)
has passed *and* the server no longer locks it. The primary can only extend protection: a files blob
that the primary's signed files catalog still names is kept (and re-locked) for another `lock_days`.
The newest copied backup of each database and the newest config archive are never let go.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from drkit.policy import layout
from drkit.policy.retention import Duration, Policy, parse_policy
from drkit.storage.copies import Copied

MARGIN_DAYS = 7
DEFAULT_POLICY = "keep_within_hourly=7d keep_within_daily=30d"


def _days(d: Duration) -> float:
    return d.years * 366 + d.months * 31 + d.days + d.hours / 24


def window_days(policy: Policy) -> int:
    """How far back the retention policy keeps backups, in days (pure; counts taken at their period)."""
    spans = [_days(d) for d in (policy.within, policy.within_hourly, policy.within_daily, policy.within_weekly,
                                policy.within_monthly, policy.within_yearly)]
    spans += [policy.hourly / 24, policy.daily, policy.weekly * 7, policy.monthly * 31, policy.yearly * 366]
    return int(max(spans + [1.0]) + 0.999)


def default_lock_days(retention: str) -> int:
    """The retention window plus a margin: a copy locked for as long as the primary would still keep it."""
    try:
        policy = parse_policy(retention or DEFAULT_POLICY)
    except ValueError:
        policy = parse_policy(DEFAULT_POLICY)
    return min(window_days(policy) + MARGIN_DAYS, 3650)


@dataclass(frozen=True)
class Want:
    """An object of the primary that belongs in the copy.

    `sha256` is what a signed record says its bytes hash to (a backup's data: its manifest; a manifest:
    its catalog head), or None when only the bytes read from the primary can say. `group` ties the
    objects of one backup together (`db:odoo:<id>`, `config:<id>`, `files:<source>`, `catalog`)."""

    key: str
    size: int | None
    sha256: str | None
    group: str
    order: int = 0  # within a group: data 0, signature 1, manifest 2 (the manifest last), heads 9


@dataclass
class Plan:
    copy: list[Want] = field(default_factory=list)
    extend: list[str] = field(default_factory=list)  # copied blobs the primary still names: keep them longer
    expire: list[str] = field(default_factory=list)  # past their keep date in the copy: delete (if unlocked)
    present: int = 0  # wanted and already in the copy


def decide(wanted: Sequence[Want], held: Mapping[str, Copied], now: dt.datetime, lock_days: int) -> Plan:
    """The run's plan (pure). `held`: the copy's ledger."""
    out = Plan()
    wanted_keys = {w.key for w in wanted}
    for w in sorted(wanted, key=lambda w: (_group_order(w.group), w.group, w.order, w.key)):
        have = held.get(w.key)
        if have is None:
            out.copy.append(w)
        elif layout.changes_in_place(w.key):
            if w.sha256 is None or have.sha256 != w.sha256:
                out.copy.append(w)  # a head or catalog that moved on: the copy keeps each version
            else:
                out.present += 1
        elif (w.size is not None and have.size != w.size) or (w.sha256 is not None and have.sha256 != w.sha256):
            out.copy.append(w)  # recorded, but not as the primary's signed record says: copied again
        else:
            out.present += 1
    half = dt.timedelta(days=lock_days / 2)
    for key in sorted(held):
        if key.startswith(layout.FILES_PREFIX) and "/blobs/" in key and key in wanted_keys:
            if held[key].keep_until - now < half:
                out.extend.append(key)
    protected = _newest_of_each(held)
    for key in sorted(held):
        if key in protected or layout.changes_in_place(key):
            continue
        if key in out.extend or (key in wanted_keys and key.startswith(layout.FILES_PREFIX)):
            continue
        have = held[key]
        if have.keep_until < now and (have.locked_until is None or have.locked_until < now):
            out.expire.append(key)
    out.expire.sort(key=_expire_order)
    return out


def _group_order(group: str) -> int:
    """Backups and archives before blobs, catalog heads last (a head in the copy names only what is there)."""
    return {"db": 0, "config": 1, "files": 2, "catalog": 9}.get(group.split(":", 1)[0], 5)


def _expire_order(key: str) -> tuple[int, str]:
    """The manifest first (the backup stops being complete), then its signature, then the data."""
    rank = 0 if key.endswith(layout.MANIFEST_SUFFIX) else 1 if key.endswith(layout.SIGNATURE_SUFFIX) else 2
    return rank, key


def _newest_of_each(held: Mapping[str, Copied]) -> set[str]:
    """Every key of the newest copied backup of each database and of the newest config archive."""
    newest: dict[str, str] = {}
    for key in held:
        db = layout.parse_key(key)
        cfg = layout.parse_config_key(key) if db is None else None
        subject, backup_id = (f"db:{db[0]}", db[1]) if db else (("config", cfg[0]) if cfg else ("", ""))
        if subject and backup_id > newest.get(subject, ""):
            newest[subject] = backup_id
    out = set()
    for key in held:
        db = layout.parse_key(key)
        cfg = layout.parse_config_key(key) if db is None else None
        if (db and newest.get(f"db:{db[0]}") == db[1]) or (cfg and newest.get("config") == cfg[0]):
            out.add(key)
    return out
