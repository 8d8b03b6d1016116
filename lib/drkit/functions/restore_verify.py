"""restore-verify: prove a backup restores, and time it (RTO evidence).

Per database: pick a backup (`latest`, an id or key, or `random` within a
window of days), estimate from its size and past throughput whether the
restore fits the deadline, restore it into a fresh scratch database on the
staging server (streamed, checksum-verified, strict), check it, drop the
scratch database (also on failure and timeout), write a report next to the
backup, set or clear its `.verified` marker, record state and audit, and
notify on failure.

Checks, each pass/fail with figures: checksum, restore, table count, exact
row counts against the manifest, operator SQL checks (drkit.checks).
Scratch databases are named `drkit_verify_<UTC stamp>_<rand>_<db>`; a run
drops leftovers whose stamp is over an hour old (a crashed run's), never a
concurrent run's.
"""

from __future__ import annotations

import datetime as dt
import random
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from drkit.core import log, suggest
from drkit.core.deadline import Clock, Deadline, utcnow
from drkit.core.errors import (
    ConfigError,
    CryptoError,
    DeadlineExceeded,
    DrkitError,
    IntegrityError,
    PgError,
    StoreError,
)
from drkit.core.secret import Secret
from drkit.crypto import encryption
from drkit.crypto.trust import Identity
from drkit.platform import identity
from drkit.platform.config import COPY_READER, Config, SpacesConfig, copy_configured, copy_from_env
from drkit.platform.databases import DatabaseConfig, database_names, env_name, parse_db_url
from drkit.platform.notify import Notifier
from drkit.platform.runtime import Params
from drkit.policy import checks, layout
from drkit.postgres import binaries, dbadmin, restore
from drkit.postgres.verify import cleanup_leftovers, content_checks, scratch_name, skip_check, staging_placement
from drkit.storage import audit, catalog, markers, state
from drkit.storage.records import RecordError
from drkit.storage.state import RunInfo, VerifyState
from drkit.storage.store import Store

FUNCTION = "restore-verify"
DEFAULT_MB_S = 20.0  # assumed restore throughput before the first measurement
MARGIN_S = 45.0  # drop the scratch database and write the report after a stop
REPOS = ("auto", "primary", "copy")

@dataclass(frozen=True)
class Request:
    databases: tuple[str, ...] | None
    backup: str = "latest"  # latest | random | <id> | <key>
    window_days: int = 7
    dry_run: bool = False
    accept_skips: bool = False  # take this run's skip list as the new baseline
    repo: str = "auto"  # primary | copy | auto: the one whose last proof is older (the copy when configured)

    @classmethod
    def from_params(cls, params: Mapping[str, Any]) -> Request:
        p = Params(params, known=("database", "backup", "window_days", "dry_run", "accept_skips", "repo"))
        repo = p.string("repo", "auto") or "auto"
        if repo not in REPOS:
            p.problems.append(f"parameter 'repo' must be {', '.join(REPOS)}, not {repo[:20]!r}")
        names = p.databases()
        backup = p.string("backup", "latest") or "latest"
        window = p.string("window_days", "7")
        if not window.isdigit() or not 1 <= int(window) <= 3650:
            p.problems.append(f"parameter 'window_days' must be a whole number of days, not {window!r}")
            window = "7"
        request = cls(names, backup, int(window), p.boolean("dry_run", False), p.boolean("accept_skips", False), repo)
        p.finish()
        if names and len(names) > 1 and backup not in ("latest", "random"):
            raise ConfigError("a specific backup can only be verified for one database")
        return request


@dataclass(frozen=True)
class Settings:
    staging: DatabaseConfig
    identities: list[Any]
    checks: dict[str, list[checks.Check]] = field(default_factory=dict)
    notifier: Notifier = field(default_factory=Notifier)
    identity: Identity = field(default_factory=Identity)  # its signing key, and whose records it believes
    copy: SpacesConfig | None = None  # the off-site copy, read with a Read key (DRKIT_OFFSITE_*)

    @classmethod
    def from_env(cls, environ: Mapping[str, str], names: list[str]) -> Settings:
        problems: list[str] = []
        url = environ.get("DRKIT_STAGING_URL", "").strip()
        staging = None
        if not url:
            problems.append("DRKIT_STAGING_URL is not set (a server where restore-verify may create and drop "
                            "scratch databases; the user needs CREATEDB)")
        else:
            params, password = parse_db_url("staging", url, problems)
            staging = DatabaseConfig("staging", Secret(url), params, Secret(password) if password else None)
        raw_identity = environ.get("DRKIT_AGE_IDENTITY", "")
        lines = [ln.strip() for ln in raw_identity.replace("\\n", "\n").split() if ln.strip().startswith("AGE-SECRET")]
        identities = []
        if not lines:
            problems.append("DRKIT_AGE_IDENTITY is not set (the AGE-SECRET-KEY-1… identity; several for rotation)")
        for line in lines:
            Secret(line)
            try:
                identities.append(encryption.parse_identity(line))
            except ConfigError as exc:
                problems.extend(exc.problems)
        parsed: dict[str, list[checks.Check]] = {}
        for name in names:
            var = env_name(name, "CHECKS")
            try:
                parsed[name] = checks.parse_checks(environ.get(var, ""), var)
            except ValueError as exc:
                problems.append(str(exc))
        notifier = Notifier.collect(environ, problems)
        me = identity.collect(environ, FUNCTION, problems)
        copy = copy_from_env(environ, problems, COPY_READER) if copy_configured(environ, COPY_READER) else None
        if problems or staging is None:
            raise ConfigError(problems)
        return cls(staging, identities, parsed, notifier, me, copy.spaces if copy else None)


def _startup(environ: Mapping[str, str]) -> tuple[Config, list[str], Settings]:
    # A reader: no age recipients, and no production database URLs (it never connects to them).
    problems: list[str] = []
    cfg = None
    try:
        cfg = Config.from_env(environ, need_recipients=False, with_databases=False)
    except ConfigError as exc:
        problems += exc.problems
    names = database_names(environ)
    if not names:
        problems.append("DRKIT_DATABASES is not set (the names of the databases whose backups are verified)")
    try:
        settings = Settings.from_env(environ, names)
    except ConfigError as exc:
        problems += exc.problems
    if problems or cfg is None:
        raise ConfigError(problems)
    return cfg, names, settings


def check(environ: Mapping[str, str]) -> str:
    """The configuration run() needs, validated as it validates it (drkit config check); every problem at once."""
    _, names, settings = _startup(environ)
    return f"verifies {', '.join(names)} on {settings.staging.display}"


def run(params: Mapping[str, Any], environ: Mapping[str, str], deadline: Deadline, *,
        store: Store | None = None, clock: Clock = utcnow, rng: random.Random | None = None) -> dict[str, Any]:
    request = Request.from_params(params)
    cfg, names, settings = _startup(environ)
    log.configure(cfg.log_level)
    unknown = [n for n in request.databases or () if n not in names]
    if unknown:
        raise ConfigError(suggest.unknown("database", unknown, names))
    selected = list(request.databases or names)
    store = (store or Store(cfg.spaces)).with_identity(settings.identity)
    if request.repo != "copy":  # a proof of the copy runs with the primary down too (a regional outage)
        store.check_access()
    binaries.tool_version("pg_restore")
    cleaned: list[str] = []
    staging_error: PgError | None = None
    if not request.dry_run:
        try:
            cleaned = cleanup_leftovers(settings.staging, clock())
        except PgError as exc:  # reported per database below, and notified
            staging_error = PgError(f"staging server: {exc}")
    rng = rng or random.Random()
    results = []
    copy_view: Store | None = None  # opened once, for the first database proven on the copy
    for name in selected:
        repo = _repo(request, settings, store, name, clock())
        if repo == "copy" and copy_view is None:
            copy_view = _copy_view(settings, store)
        source = copy_view if repo == "copy" and copy_view is not None else store
        one = verify_one(name, settings, source, request, deadline, clock, rng, staging_error, repo)
        results.append(one | {"repo": repo})
    statuses = {r["status"] for r in results}
    ok = statuses <= {"passed", "dry_run"}
    status = "ok" if ok else ("failed" if statuses.isdisjoint({"passed"}) else "partial")
    out: dict[str, Any] = {"ok": ok, "status": "dry_run" if request.dry_run and ok else status,
                           "decision": "; ".join(r["decision"] for r in results), "databases": results}
    if len({r["repo"] for r in results}) == 1:
        out["repo"] = results[0]["repo"]
    if cleaned:
        out["leftovers_dropped"] = cleaned
    failures = [r for r in results if r["status"] not in ("passed", "dry_run")]
    if failures and settings.notifier.configured:
        out["notifications"] = settings.notifier.send({
            "event": "restore_verify.failed", "function": FUNCTION, "status": "failed",
            "decision": out["decision"], "databases": failures,
            "failed_checks": [f"{r['database']}: {c['name']}: {c['detail']}" for r in failures
                              for c in r.get("checks", []) if not c["passed"]]})
    return out


def _repo(request: Request, settings: Settings, store: Store, name: str, now: dt.datetime) -> str:
    """Which copy this run proves: as asked, or (auto) the one whose last proof ran longer ago, the primary
    first: the weekly proof alternates between them (a failing one does not starve the other)."""
    if request.repo == "copy" and settings.copy is None:
        raise ConfigError("repo=copy: the off-site copy is not configured for restore-verify (DRKIT_OFFSITE_BUCKET, "
                          "DRKIT_OFFSITE_KEY/SECRET: a Read key of the copy bucket)")
    if request.repo != "auto" or settings.copy is None:
        return "primary" if request.repo == "auto" else request.repo

    def ran(repo: str) -> dt.datetime | None:
        got = _prior(store, name, now, repo)
        return got.last_run.at if got and got.last_run else None

    primary, copy = ran("primary"), ran("copy")
    return "copy" if primary is not None and (copy is None or copy < primary) else "primary"


def _copy_view(settings: Settings, primary: Store) -> Store:
    """The off-site copy, read-only (behind overwrites and delete markers when versioned); records to the primary."""
    from drkit.storage.versioned import open_view

    assert settings.copy is not None
    return open_view(settings.copy, settings.identity, writes_to=primary)


def pick(store: Store, db: str, request: Request, now: dt.datetime, rng: random.Random) -> catalog.Entry:
    if request.backup == "random":
        since = now - dt.timedelta(days=request.window_days)
        pool = [e for e in catalog.trusted_view(store, db, now).trusted if e.time >= since]
        if not pool:
            raise ConfigError(f"database {db!r} has no complete backup in the last {request.window_days} days")
        return rng.choice(pool)
    return catalog.find(store, request.backup, db, now=now)


def verify_one(name: str, settings: Settings, store: Store, request: Request, deadline: Deadline,
               clock: Clock, rng: random.Random, staging_error: PgError | None = None,
               repo: str = "primary") -> dict[str, Any]:
    log.bind(database=name)
    started = clock()
    result: dict[str, Any] = {"database": name, "status": "failed", "checks": []}
    outcomes: list[checks.Outcome] = []
    result["checks_objects"] = outcomes
    entry = None
    try:
        entry = pick(store, name, request, started, rng)
        result["backup_id"] = entry.id
        result["backup_time"] = entry.time.isoformat()
        try:
            manifest = catalog.read_manifest(store, entry)
        except (StoreError, IntegrityError) as exc:
            outcomes.append(checks.Outcome("manifest", False, str(exc), None))
            raise
        if staging_error is not None:
            result["infrastructure"] = True
            raise staging_error
        records_at = getattr(store, "writes_to", None) or store  # a copy's proofs are recorded in the primary
        prior = _prior(records_at, name, started, repo)  # the last pass: throughput, skip list
        estimate = _estimate_s(prior, manifest)
        result["estimate_s"] = round(estimate, 1)
        if request.dry_run:
            result["status"] = "dry_run"
            result["decision"] = (f"dry run {name}: would restore {entry.id} ({manifest['bytes_in'] / 1e6:.0f} MB) "
                                  f"into a scratch database on {settings.staging.display}, ~{estimate:.0f} s")
            return _finish(result)
        if estimate > deadline.remaining() - MARGIN_S:
            result["status"] = "skipped"
            raise DeadlineExceeded(f"estimated restore time {estimate:.0f}s does not fit the {deadline.remaining():.0f}s "
                                   "left; raise the function timeout or verify from a machine: "
                                   f"scripts/drkit restore --db {name} --backup {entry.id} --target URL")
        _restore_and_check(name, settings, store, entry, manifest, deadline, clock, result, outcomes,
                           request.accept_skips,
                           list(prior.last_success.skipped or []) if prior and prior.last_success else None)
    except DrkitError as exc:
        if result["status"] != "skipped":
            result["status"] = "timed_out" if isinstance(exc, DeadlineExceeded) else "failed"
        result["error"] = str(exc)
    except Exception as exc:  # noqa: BLE001 - one database's failure must not stop the others
        result["status"], result["error"] = "failed", f"internal error: {type(exc).__name__}: {exc}"
        log.error("verification failed", error=result["error"])
    if result["status"] == "failed" and not result.get("error") and any(not o.passed for o in outcomes):
        result["error"] = "; ".join(f"{o.name}: {o.detail}" for o in outcomes if not o.passed)
    if entry is not None and result.get("infrastructure"):
        # A staging problem is not evidence against the backup: keep its report and marker.
        now = clock()
        try:
            state.record_run(store, layout.verify_state_key(name, repo), VerifyState, name,
                             RunInfo("failed", now, id=entry.id, error=str(result.get("error"))[:3000]),
                             success=False, now=now)
        except DrkitError as exc:
            result["report_error"] = str(exc)
        audit.record(store, FUNCTION, "verify.failed", {"database": name, "backup_id": entry.id,
                                                        "status": "failed", "error": result.get("error"),
                                                        "infrastructure": True, "repo": repo})
    elif entry is not None and result["status"] in ("passed", "failed", "timed_out"):
        markers.record_verification(store, FUNCTION, name, entry.id, result, started, clock(), repo)
    return _finish(result)


def _finish(result: dict[str, Any]) -> dict[str, Any]:
    result["checks"] = [o.to_dict() for o in result.pop("checks_objects", [])]
    if "decision" not in result:
        failed = [c["name"] for c in result["checks"] if not c["passed"]]
        if result["status"] == "passed":
            r = result["restore"]
            by = {c["name"]: c for c in result["checks"]}
            proved = [f"{by['table count']['value']} tables" if "table count" in by else "",
                      f"{by['row counts']['value']} rows" if "row counts" in by else "",
                      *(f"{by[k]['value']} {k}" for k in ("policies", "triggers") if k in by)]
            skipped = result.get("skipped") or []
            result["decision"] = (f"verified {result['database']} {result['backup_id']}: {len(result['checks'])} checks "
                                  f"passed ({', '.join(x for x in proved if x)}); restored in {r['duration_s']:.1f}s "
                                  f"({r['throughput_mb_s']} MB/s) into PostgreSQL {r['target_version']}"
                                  + (f"; skipped by name: {', '.join(skipped[:8])}"
                                     + (f" and {len(skipped) - 8} more" if len(skipped) > 8 else "") if skipped else ""))
        else:
            why = f" ({', '.join(failed)})" if failed else ""
            result["decision"] = f"{result['database']} verification {result['status'].replace('_', ' ')}{why}: " \
                                 f"{result.get('error', '')}"
    log.unbind("database")
    return result


def _prior(store: Store, name: str, now: dt.datetime, repo: str = "primary") -> state.RunState | None:
    """The last verification's state; one this function cannot believe counts as none (no skip baseline)."""
    try:
        return state.read(store, layout.verify_state_key(name, repo), VerifyState, now)
    except RecordError as exc:
        log.error("verification state not believed; verifying without its baseline", error=exc.reason)
        return None
    except StoreError as exc:  # the primary unreachable while the copy is proven: no baseline, still a proof
        log.error("verification state unreadable; verifying without its baseline", error=str(exc))
        return None


def _estimate_s(prior: state.RunState | None, manifest: dict[str, Any]) -> float:
    rate = (prior.last_success.throughput_mb_s if prior and prior.last_success else None) or DEFAULT_MB_S
    return float(manifest["bytes_in"]) / 1e6 / max(rate, 1.0) * 1.25 + 5.0


def _restore_and_check(name: str, settings: Settings, store: Store, entry: catalog.Entry,
                       manifest: dict[str, Any], deadline: Deadline, clock: Clock, result: dict[str, Any],
                       outcomes: list[checks.Outcome], accept_skips: bool = False, previous: Any = None) -> None:
    scratch = scratch_name(name, clock())
    result["scratch_database"] = scratch
    try:
        dbadmin.create_database(settings.staging, scratch)
    except PgError:
        result["infrastructure"] = True  # says nothing about the backup
        raise
    try:
        try:
            placement = staging_placement(settings.staging, scratch, manifest)
        except ConfigError as exc:
            outcomes.append(checks.Outcome("restore", False, str(exc), None))
            result["infrastructure"] = True
            raise
        try:
            done = restore.restore(store, entry, settings.identities, settings.staging, scratch, manifest=manifest,
                                   deadline=deadline, options=("--no-owner", "--no-privileges"), placement=placement)
        except IntegrityError as exc:
            outcomes.append(checks.Outcome("checksum", False, str(exc), None))
            raise
        except CryptoError as exc:
            outcomes.append(checks.Outcome("checksum", True, "stored bytes match the manifest", None))
            outcomes.append(checks.Outcome("decrypt", False, str(exc), None))
            raise
        except PgError as exc:
            outcomes.append(checks.Outcome("checksum", True, "stored bytes match the manifest", None))
            outcomes.append(checks.Outcome("restore", False, f"{exc}", None))
            raise
        outcomes.append(checks.Outcome("checksum", True, f"sha256 of {manifest['bytes_out']:,} bytes matches", None))
        outcomes.append(checks.Outcome("restore", True, f"pg_restore {done.pg_restore_version} into PostgreSQL "
                                       f"{done.target_version_num // 10000} ({done.strategy}), no errors", None))
        result["restore"] = {"duration_s": done.duration_s, "throughput_mb_s": done.throughput_mb_s,
                             "bytes_restored": done.bytes_restored, "target_version": done.target_version_num // 10000,
                             "target_version_num": done.target_version_num, "strategy": done.strategy}
        skipped = sorted({label for label, _ in done.skipped}, key=lambda x: (x.startswith("COMMENT "), x))
        result["skipped"] = skipped
        if placement.roles_created:
            result["roles_created"] = placement.roles_created
        if done.disarmed is not None:  # the scratch copy calls no webhook, runs no job, pulls no subscription
            result["disarmed"] = done.disarmed.to_dict()
        outcomes.extend(content_checks(settings.staging, scratch, manifest, settings.checks.get(name, []),
                                       entry.time, not_restored=placement.not_restored()))
        outcomes.append(skip_check(skipped, previous if isinstance(previous, list) else None, accept_skips))
        result["status"] = "passed" if all(o.passed for o in outcomes) else "failed"
    finally:
        try:
            dbadmin.drop_database(settings.staging, scratch)
        except PgError as exc:
            result["scratch_left"] = scratch
            log.error("scratch database could not be dropped; the next run drops it", error=str(exc))
