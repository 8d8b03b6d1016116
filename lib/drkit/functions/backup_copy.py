"""backup-copy: the off-site copy, pulled from the primary bucket into a second one, verified and locked.

Every new signed backup, config archive, files blob and catalog head is copied into a bucket in another
region or with another provider; each copy is read back and checked, locked where the copy bucket has
Object Lock, and recorded (offsite/run.py).

Least privilege, pull model: only this function holds the copy's key (DRKIT_COPY_*); it needs only a
Read key on the primary. Run by the scheduler after each db-backup slot that succeeded and every 6 hours
on its own slot (catch-up), or by hand: `doctl serverless functions invoke dr/backup-copy` or
`drkit copy run`.
Parameters: `dry_run` (true: say what would be copied, write nothing), `database` (a comma list: only
these databases' backups, besides config and files).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from drkit.core.deadline import Clock, Deadline, utcnow
from drkit.core.errors import ConfigError, DrkitError
from drkit.crypto.trust import Identity
from drkit.offsite.plan import default_lock_days
from drkit.offsite.run import Run, execute, with_failures
from drkit.offsite.target import Target
from drkit.platform import identity
from drkit.platform.config import CopyConfig, SpacesConfig, collect_spaces, copy_from_env
from drkit.platform.databases import database_names
from drkit.platform.notify import Notifier
from drkit.platform.runtime import Params
from drkit.policy import layout
from drkit.storage import records
from drkit.storage.copies import CopyStatus
from drkit.storage.store import Store

FUNCTION = "backup-copy"


@dataclass(frozen=True)
class Settings:
    spaces: SpacesConfig
    copy: CopyConfig
    me: Identity
    databases: tuple[str, ...]
    lock_days: int
    notifier: Notifier

    @classmethod
    def from_env(cls, environ: Mapping[str, str]) -> Settings:
        problems: list[str] = []
        spaces = collect_spaces(environ, problems)
        copy = copy_from_env(environ, problems)
        me = identity.collect(environ, FUNCTION, problems)
        notifier = Notifier.collect(environ, problems)
        default_lock = default_lock_days(environ.get("DRKIT_RETENTION", ""))
        try:
            names = tuple(database_names(environ))
        except ConfigError as exc:
            problems += exc.problems
            names = ()
        if problems or spaces is None or copy is None:
            raise ConfigError(problems)
        return cls(spaces, copy, me, names, copy.lock_days or default_lock, notifier)


def check(environ: Mapping[str, str]) -> str:
    """The configuration run() needs, validated as it validates it (drkit config check)."""
    s = Settings.from_env(environ)
    return (f"copy to {s.copy.spaces.endpoint_url}/{s.copy.spaces.bucket}, kept {s.lock_days} days; "
            f"{len(s.databases)} database(s)")


def run(params: Mapping[str, Any], environ: Mapping[str, str], deadline: Deadline, *,
        store: Store | None = None, copy_store: Store | None = None, clock: Clock = utcnow) -> dict[str, Any]:
    p = Params(params, known=("dry_run", "database"))
    dry_run = p.boolean("dry_run", False)
    only = p.string("database", "")
    p.finish()
    s = Settings.from_env(environ)
    primary = (store or Store(s.spaces)).with_identity(s.me)
    target_store = (copy_store or Store(s.copy.spaces)).with_identity(s.me)
    target = Target(s.copy, target_store, s.lock_days)
    target_store.check_access()
    databases = tuple(n.strip() for n in only.split(",") if n.strip()) or s.databases
    r = Run(primary, target, clock(), deadline, databases, dry_run)
    before = _last_ok(primary, r.now)
    status = execute(r)
    if r.failures and not status.failures:
        status = with_failures(status, r.failures)
    caps = target.capabilities()
    out: dict[str, Any] = {"ok": status.ok or dry_run, "status": "dry_run" if dry_run else "ok" if status.ok else "failed",
            "decision": status.decision, "target": status.target, "immutability": caps.immutability,
            "immutability_detail": caps.describe(s.lock_days), "lock_days": s.lock_days,
            "copied": status.copied, "bytes": status.bytes, "seconds": status.seconds,
            "throughput_mb_s": round(status.bytes / 1e6 / status.seconds, 1) if status.seconds and status.bytes else None,
            "databases": [d.to_json() | {"lag_s": round(d.lag.total_seconds())} for d in status.databases],
            "failures": list(status.failures)[:50], "left_for_next_run": r.left}
    if not dry_run and s.notifier.configured and before != status.ok:  # told once: on the change
        out["notifications"] = s.notifier.send({
            "event": "backup-copy.failed" if not status.ok else "backup-copy.resolved", "function": FUNCTION,
            "status": "failed" if not status.ok else "passed", "decision": f"off-site copy: {status.decision}",
            "failed_checks": list(status.failures)[:20]})
    return out


def _last_ok(primary: Store, now: Any) -> bool:
    """Was the last recorded copy run clean? None on record, or none believed, counts as clean: a first failure
    is told."""
    try:
        got = records.read(primary, layout.COPY_STATUS_KEY, CopyStatus, now)
    except DrkitError:
        return True
    return got.value.ok if got else True
