"""Every environment variable each function reads: the contract with project.yml (pure data).

`project.yml` gives each function exactly `VARIABLES` for that function (a test holds
both to this table, and to what the functions really read). The DigitalOcean deployer
refuses a deploy when any `${VAR}` in project.yml is empty, so `scripts/deploy` writes a
complete deploy env file (`deploy_env`): required variables must be set, and every unset
optional variable is sent as the value `unset`, which the function edge
(`runtime.without_unset`) removes again before any code reads the environment.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from drkit.core.errors import ConfigError

UNSET = "unset"  # the deploy-time stand-in for "not set" (the deployer refuses empty values)
DB = "<NAME>"    # per-database variables: DRKIT_DB_<NAME>_URL for each name in DRKIT_DATABASES

DB_BACKUP, RESTORE_VERIFY, HEALTH, FAILOVER, SNAPSHOTS, CONFIG, SCHEDULER, REPORT = (
    "db-backup", "restore-verify", "health-probe", "dns-failover", "snapshot-rotate", "config-backup", "scheduler",
    "report")
ALL = (DB_BACKUP, RESTORE_VERIFY, HEALTH, FAILOVER, SNAPSHOTS, CONFIG, SCHEDULER, REPORT)
DO_CALLERS = (FAILOVER, SNAPSHOTS, CONFIG, HEALTH)  # health-probe: only for DRKIT_AUTO_FAILOVER=true


@dataclass(frozen=True)
class Var:
    name: str
    functions: tuple[str, ...]
    required: tuple[str, ...]  # the functions for which it must be set
    default: str
    meaning: str

    def pattern(self) -> re.Pattern[str]:
        return re.compile("^" + re.escape(self.name).replace(re.escape(DB), "[A-Z0-9_]+") + "$")


def _v(name: str, functions: Iterable[str], meaning: str, *, default: str = "", required: Iterable[str] = ()) -> Var:
    return Var(name, tuple(functions), tuple(required), default, meaning)


VARIABLES: tuple[Var, ...] = (
    # the bucket: every function
    _v("DRKIT_SPACES_BUCKET", ALL, "the Spaces bucket that holds all drkit state", required=ALL),
    _v("DRKIT_SPACES_REGION", ALL, "Spaces region slug (fra1, nyc3, …); required unless DRKIT_SPACES_ENDPOINT is set"),
    _v("DRKIT_SPACES_ENDPOINT", ALL, "full Spaces endpoint URL, instead of the region",
       default="https://<region>.digitaloceanspaces.com"),
    _v("DRKIT_SPACES_KEY", ALL, "Spaces access key id", required=ALL),
    _v("DRKIT_SPACES_SECRET", ALL, "Spaces secret key", required=ALL),
    _v("DRKIT_PREFIX", ALL, "key prefix inside the bucket (several installations in one bucket)", default="(none)"),
    _v("DRKIT_S3_MAX_ATTEMPTS", ALL, "attempts per S3 request (botocore standard retries)", default="6"),
    _v("DRKIT_LOG_LEVEL", ALL, "debug, info, warning or error", default="info"),
    _v("DRKIT_NOTIFY_SLACK_URL", ALL, "Slack incoming-webhook URL for failures and alerts", default="(none)"),
    _v("DRKIT_NOTIFY_WEBHOOK_URL", ALL, "generic JSON webhook for failures and alerts", default="(none)"),
    _v("DRKIT_NOTIFY_SECRET", ALL, "HMAC-SHA256 key signing generic webhook notifications (16+ chars)",
       default="(unsigned)"),
    # signed records: each function its own key (project.yml: DRKIT_SIGNING_KEY_<FUNCTION>), and whom it believes
    _v("DRKIT_SIGNING_KEY", ALL, "this function's own signing key: it signs every record the function writes "
       "(drkit keygen --signing --for FN)", required=ALL),
    _v("DRKIT_TRUSTED_KEYS", ALL, "role=RW… public keys whose signatures drkit believes, each for its role "
       "(docs/storage.md: trust)", required=ALL),
    # writers of encrypted archives
    _v("DRKIT_AGE_RECIPIENTS", (DB_BACKUP, CONFIG), "age public keys (age1…) every backup is encrypted to",
       required=(DB_BACKUP, CONFIG)),
    _v("DRKIT_ZSTD_LEVEL", (DB_BACKUP, CONFIG), "zstd level 1-19", default="1"),
    _v("DRKIT_ZSTD_THREADS", (DB_BACKUP, CONFIG), "zstd worker threads (0: none)", default="0"),
    _v("DRKIT_PART_SIZE_MB", (DB_BACKUP, CONFIG), "multipart upload part size, MB (5-512)", default="8"),
    _v("DRKIT_UPLOAD_CONCURRENCY", (DB_BACKUP, CONFIG), "parts uploaded at once (1-10)", default="3"),
    # databases
    _v("DRKIT_DATABASES", (DB_BACKUP, RESTORE_VERIFY, HEALTH, SCHEDULER, REPORT), "database names, comma separated (lower-case)",
       required=(DB_BACKUP, RESTORE_VERIFY), default="(none: health-probe checks no backups)"),
    _v("DRKIT_RETENTION", (DB_BACKUP,), "default retention policy", default="keep_within_hourly=7d keep_within_daily=30d"),
    _v(f"DRKIT_DB_{DB}_URL", (DB_BACKUP,), "postgresql:// URL of the database to back up", required=(DB_BACKUP,)),
    _v(f"DRKIT_DB_{DB}_COUNT_TABLES", (DB_BACKUP,), "tables whose exact row counts go into the manifest",
       default="(estimates only)"),
    _v(f"DRKIT_DB_{DB}_PG_DUMP_ARGS", (DB_BACKUP,), "extra pg_dump arguments (e.g. --exclude-schema)",
       default="(none)"),
    _v(f"DRKIT_DB_{DB}_RETENTION", (DB_BACKUP,), "retention policy for this database", default="DRKIT_RETENTION"),
    # restore-verify
    _v("DRKIT_AGE_IDENTITY", (RESTORE_VERIFY,), "age identity (AGE-SECRET-KEY-1…) that decrypts backups",
       required=(RESTORE_VERIFY,)),
    _v("DRKIT_STAGING_URL", (RESTORE_VERIFY,), "server where scratch databases are created and dropped",
       required=(RESTORE_VERIFY,)),
    _v(f"DRKIT_DB_{DB}_CHECKS", (RESTORE_VERIFY,), "JSON list of SQL checks run on the restored copy",
       default="(tables and rows only)"),
    # health-probe
    _v("DRKIT_PROBES", (HEALTH,), "JSON list of HTTP/TLS/DNS/TCP probe targets", default="(none)"),
    _v("DRKIT_RPO", (HEALTH, REPORT), "newest backup older than this is an alert", default="75m"),
    _v("DRKIT_VERIFY_MAX_AGE", (HEALTH, REPORT), "newest passed verification older than this is an alert", default="8d"),
    _v("DRKIT_RTO", (HEALTH, REPORT), "measured restore time above this is an alert", default="4h"),
    _v(f"DRKIT_DB_{DB}_RPO", (HEALTH, REPORT), "per-database DRKIT_RPO", default="DRKIT_RPO"),
    _v(f"DRKIT_DB_{DB}_VERIFY_MAX_AGE", (HEALTH, REPORT), "per-database DRKIT_VERIFY_MAX_AGE",
       default="DRKIT_VERIFY_MAX_AGE"),
    _v(f"DRKIT_DB_{DB}_RTO", (HEALTH, REPORT), "per-database DRKIT_RTO", default="DRKIT_RTO"),
    _v("DRKIT_ALERT_REMINDER", (HEALTH,), "repeat an open alert this often", default="1h"),
    _v("DRKIT_CONFIG_MAX_AGE", (HEALTH,), "config backups older than this are an alert", default="(not checked)"),
    _v("DRKIT_AUTO_FAILOVER", (HEALTH,), "true: a failing probe starts dns-failover in-process", default="false"),
    _v("DRKIT_STATUS_PAGE", (HEALTH,), "JSON: the public status page's title, services (probe targets) and private "
       "strings (docs/status-page.md)", default="(no public page)"),
    # report
    _v("DRKIT_METRICS_BEARER", (REPORT,), "Bearer tokens Prometheus sends to GET /metrics (16+ chars, comma separated)",
       default="(metrics endpoint off)"),
    # the DigitalOcean API
    _v("DRKIT_DO_TOKEN", DO_CALLERS, "DigitalOcean API token (scopes: see docs/configuration.md)",
       required=(FAILOVER, SNAPSHOTS)),
    _v("DRKIT_DO_ENDPOINT", DO_CALLERS, "DigitalOcean API base URL", default="https://api.digitalocean.com"),
    _v("DRKIT_DO_CA_FILE", DO_CALLERS, "CA bundle for the DO API endpoint", default="(system CAs)"),
    # dns-failover
    _v("DRKIT_FAILOVER_PLAN", (FAILOVER, HEALTH), "the failover plan as JSON (instead of a bucket object)",
       default="(none)"),
    _v("DRKIT_FAILOVER_PLAN_KEY", (FAILOVER, HEALTH), "bucket key of the failover plan",
       default="(none: set this or DRKIT_FAILOVER_PLAN)"),
    _v("DRKIT_WEBHOOK_BEARER", (FAILOVER,), "Bearer tokens accepted on the webhook (16+ chars, comma separated)",
       default="(none)"),
    _v("DRKIT_WEBHOOK_BASIC", (FAILOVER,), "user:password pairs accepted as HTTP Basic", default="(none)"),
    _v("DRKIT_WEBHOOK_HMAC", (FAILOVER,), "keys for signed operator commands", default="(none)"),
    _v("DRKIT_GRAFANA_HMAC", (FAILOVER,), "Grafana webhook HMAC signing secrets", default="(none)"),
    _v("DRKIT_GRAFANA_SIGNATURE_HEADER", (FAILOVER,), "header holding Grafana's signature",
       default="x-grafana-alerting-signature"),
    _v("DRKIT_GRAFANA_TIMESTAMP_HEADER", (FAILOVER,), "header holding Grafana's signed timestamp",
       default="(timestamps not signed)"),
    _v("DRKIT_WEBHOOK_MAX_BODY", (FAILOVER,), "largest webhook body accepted, in bytes (16 KiB to 16 MiB)",
       default="1048576 (1 MiB)"),
    # snapshot-rotate
    _v("DRKIT_SNAPSHOT_POLICIES", (SNAPSHOTS, SCHEDULER), "JSON list of snapshot policies (tag, schedule, retention)",
       required=(SNAPSHOTS,), default="(none: the scheduler runs no snapshots)"),
    # scheduler
    _v("DRKIT_FUNCTIONS_KEY", (SCHEDULER,), "namespace access key <id>:<secret> (doctl serverless key create)",
       required=(SCHEDULER,)),
    _v("DRKIT_FUNCTIONS_API_HOST", (SCHEDULER,), "the namespace's API host (https://faas-…doserverless.co)",
       default="__OW_API_HOST (set by DigitalOcean)"),
    _v("DRKIT_FUNCTIONS_NAMESPACE", (SCHEDULER,), "the namespace (fn-…)", default="__OW_NAMESPACE (set by DigitalOcean)"),
    _v("DRKIT_SCHEDULE", (SCHEDULER,), "JSON list of schedule changes {job, cron, within, enabled, databases}",
       default="(the DR plan's: docs/scheduler.md)"),
    _v("DRKIT_HEARTBEAT_URL", (SCHEDULER,), "https URL the scheduler GETs after every tick (dead man's switch)",
       default="(none)"),
    # config-backup
    _v("DRKIT_CONFIG_SOURCES", (CONFIG,), "JSON list of config sources", required=(CONFIG,)),
    _v("DRKIT_CONFIG_RETENTION", (CONFIG,), "retention of config archives", default="keep_within=90d"),
    _v("DRKIT_CONFIG_NOTIFY_ON", (CONFIG,), "what notifies: failures, dns, firewalls, all or none",
       default="failures,dns,firewalls"),
    _v("DRKIT_GITHUB_TOKEN", (CONFIG,), "GitHub token for repository sources (token_env default)",
       default="(public repositories only)"),
    _v("DRKIT_GRAFANA_TOKEN", (CONFIG,), "Grafana service-account token (token_env default)", default="(none)"),
    _v("DRKIT_STORAGE_S3_KEY", (CONFIG,), "S3 access key id of a storage source, e.g. Supabase Storage's "
       "(key_env default)", default="(none)"),
    _v("DRKIT_STORAGE_S3_SECRET", (CONFIG,), "its S3 secret key (secret_env default)", default="(none)"),
)


# Credentials each function may get its own value of at deploy time: project.yml substitutes
# `${DRKIT_SPACES_KEY_DNS_FAILOVER}` into dns-failover's DRKIT_SPACES_KEY, and `deploy_env` falls back to
# DRKIT_SPACES_KEY when that is unset. So a web-exposed function can hold a read-mostly key.
PER_FUNCTION = ("DRKIT_SPACES_KEY", "DRKIT_SPACES_SECRET", "DRKIT_SIGNING_KEY")
# A function's own signing key never falls back to a shared one, except for the two functions that held
# the one shared key before per-writer keys (they still may: no new function learns it).
NO_FALLBACK = {"DRKIT_SIGNING_KEY": (DB_BACKUP, CONFIG)}


def falls_back(var: str, function: str) -> bool:
    """May `function` take the shared `var` when its own `<var>_<FUNCTION>` is unset?"""
    return var not in NO_FALLBACK or function in NO_FALLBACK[var]


def own_value(var: str, function: str, values: Mapping[str, str]) -> str:
    """The value `function` is deployed with for a per-function `var`: its own, else (where allowed) the shared one."""
    own = str(values.get(per_function_name(var, function), "")).strip()
    if own and own != UNSET:
        return own
    shared = str(values.get(var, "")).strip()
    return shared if falls_back(var, function) and shared != UNSET else ""


def as_deployed(role: str, values: Mapping[str, str]) -> dict[str, str]:
    """`values` (an operator's whole .env) as `role` (a function, or `operator`) uses them on this machine: its
    own credentials under the names it reads, else the shared ones (the operator's machine holds every key
    anyway; only the deployer keeps a function from a shared signing key). What the CLI gives the code it runs."""
    out = {k: v for k, v in values.items() if split_per_function(k) is None}
    for var in PER_FUNCTION:
        own = str(values.get(per_function_name(var, role), "")).strip()
        if own and own != UNSET:
            out[var] = own
    return out


def per_function_name(var: str, function: str) -> str:
    return f"{var}_{_upper(function)}"


def split_per_function(name: str) -> tuple[str, str] | None:
    """`DRKIT_SPACES_KEY_DNS_FAILOVER` -> ("DRKIT_SPACES_KEY", "dns-failover"); else None."""
    for var in PER_FUNCTION:
        for fn in ALL:
            if name == per_function_name(var, fn):
                return var, fn
    return None


def spaces_key_of(function: str, values: Mapping[str, str]) -> str:
    """The Spaces access key id `function` is deployed with."""
    return own_value("DRKIT_SPACES_KEY", function, values)


def for_function(function: str) -> list[Var]:
    return [v for v in VARIABLES if function in v.functions]


def find(name: str) -> Var | None:
    return next((v for v in VARIABLES if v.pattern().match(name)), None)


def database_names(values: Mapping[str, str]) -> list[str]:
    """The names in DRKIT_DATABASES, unvalidated (config.database_names validates them; this one must
    not raise, since it also serves the edge that reports every missing variable)."""
    return [n for n in re.split(r"[\s,]+", values.get("DRKIT_DATABASES", "").strip()) if n and n != UNSET]


def deploy_env(project_yml: str, values: Mapping[str, str]) -> tuple[dict[str, str], list[str]]:
    """The value for every `${VAR}` project.yml substitutes (UNSET for unset ones), and warnings.

    Raises ConfigError listing every required variable of a scheduled function that is
    unset (it would fail every run, silently for days), and every database in
    DRKIT_DATABASES whose URL project.yml does not pass to db-backup. A function is scheduled
    when it has a trigger, or when the scheduler (which has one) runs it: every job of its
    table that DRKIT_SCHEDULE does not disable, and snapshot-rotate when policies are set.
    A required variable of a function nothing schedules is a warning: that function refuses
    to run, saying so, until it is set.
    """
    import yaml

    project = yaml.safe_load(project_yml)
    common = dict(project.get("environment") or {})
    problems: list[str] = []
    warnings: list[str] = []
    out: dict[str, str] = {}
    names = database_names(values)
    functions = project["packages"][0]["functions"]
    scheduled = scheduled_functions(project, values)
    for fn in functions:
        env = {**common, **(fn.get("environment") or {})}
        given = set()
        for text in env.values():
            for var in re.findall(r"\$\{([A-Za-z0-9_]+)\}", str(text)):
                given.add(var)
                value = str(values.get(var, "")).strip()
                own = split_per_function(var)
                if own is not None:  # a function's own credential, else (where allowed) the shared one
                    value = own_value(own[0], own[1], values)
                    var_spec = own[0] if falls_back(*own) else var
                else:
                    var_spec = var
                spec = find(own[0] if own is not None else var_spec)
                required = bool(spec and fn["name"] in spec.required)
                if spec and DB in spec.name:  # per-database: required only for the configured databases
                    required = required and any(var == spec.name.replace(DB, _upper(n)) for n in names)
                if not value:
                    if required and fn["name"] in scheduled:
                        problems.append(f"{var_spec} is required by dr/{fn['name']} ({scheduled[fn['name']]}) "
                                        "and is not set")
                    elif required:
                        warnings.append(f"{var_spec} is not set: dr/{fn['name']} will refuse to run until it is")
                    value = UNSET
                out[var] = value
        if fn["name"] == DB_BACKUP:
            for n in names:
                var = f"DRKIT_DB_{_upper(n)}_URL"
                if var not in given:
                    problems.append(f"DRKIT_DATABASES names {n!r}, but project.yml gives dr/db-backup no "
                                    f"{var}: add `{var}: \"${{{var}}}\"` to its environment")
    if problems:
        raise ConfigError(sorted(set(problems)))
    return out, sorted(set(warnings))


def _upper(name: str) -> str:
    return name.upper().replace("-", "_")


def markdown_table() -> str:
    """The per-function table in docs/configuration.md (a test keeps the doc equal to this)."""
    rows = ["| variable | " + " | ".join(ALL) + " | default | meaning |",
            "|---|" + "---|" * len(ALL) + "---|---|"]
    for v in VARIABLES:
        cells = ["**required**" if f in v.required else ("optional" if f in v.functions else "") for f in ALL]
        rows.append(f"| `{v.name}` | " + " | ".join(cells) + f" | {v.default or '—'} | {v.meaning} |")
    return "\n".join(rows) + "\n"


ONE_OF: dict[str, tuple[tuple[str, str], ...]] = {
    fn: (("DRKIT_SPACES_REGION", "DRKIT_SPACES_ENDPOINT"),) for fn in ALL
} | {FAILOVER: (("DRKIT_SPACES_REGION", "DRKIT_SPACES_ENDPOINT"), ("DRKIT_FAILOVER_PLAN", "DRKIT_FAILOVER_PLAN_KEY"))}


def missing(function: str, environ: Mapping[str, str]) -> list[str]:
    """Every required variable of `function` that is unset, each with what it is (all at once)."""
    def unset(name: str) -> bool:
        return not str(environ.get(name, "")).strip()

    out = []
    names = database_names(environ)
    for v in VARIABLES:
        if function not in v.required:
            continue
        for name in ([v.name.replace(DB, _upper(n)) for n in names] if DB in v.name else [v.name]):
            if unset(name):
                out.append(f"{name} is not set ({v.meaning})")
    for a, b in ONE_OF.get(function, ()):
        if unset(a) and unset(b):
            spec = find(a)
            out.append(f"set {a} or {b} ({spec.meaning if spec else a})")
    return out


def scheduled_functions(project: Mapping[str, Any], values: Mapping[str, str]) -> dict[str, str]:
    """The functions something runs on a schedule, and why: their trigger, or the scheduler (parsed project.yml)."""
    functions = project["packages"][0]["functions"]
    scheduled = {fn["name"]: "scheduled" for fn in functions if fn.get("triggers")}
    if SCHEDULER in scheduled:
        for job in scheduler_jobs(values):
            scheduled.setdefault(job, "run by the scheduler; or disable it in DRKIT_SCHEDULE")
    return scheduled


def own_variables(function: str, scheduled: Iterable[str]) -> list[str]:
    """The variables that show `function` is set up: the ones it reads that no scheduled function other than
    health-probe reads too (the bucket, the DO token or the trusted keys say nothing about dns-failover)."""
    others = set(scheduled) - {function, HEALTH}
    return [v.name for v in VARIABLES if function in v.functions and not others & set(v.functions)
            and DB not in v.name]


def scheduler_jobs(values: Mapping[str, str]) -> list[str]:
    """The functions the scheduler will run with these settings (an unreadable DRKIT_SCHEDULE: all of
    them; the scheduler itself reports what is wrong with it)."""
    import json

    from drkit.policy.schedule import JOBS

    disabled: set[str] = set()
    try:
        items = json.loads(str(values.get("DRKIT_SCHEDULE", "")).strip() or "[]")
        disabled = {i["job"] for i in items if isinstance(i, dict) and i.get("enabled") is False}
    except (ValueError, TypeError, KeyError):
        pass
    has_policies = str(values.get("DRKIT_SNAPSHOT_POLICIES", "")).strip() not in ("", UNSET)
    return [j for j in JOBS if j not in disabled and (j != SNAPSHOTS or has_policies)]


def function_environment(project_yml: str, function: str, values: Mapping[str, str]) -> dict[str, str]:
    """What project.yml gives dr/<function> once deployed from these values: the project's and the
    function's `environment`, `${VAR}` substituted (a function's own Spaces key, else the shared one),
    without the variables left unset."""
    import yaml

    project = yaml.safe_load(project_yml)
    fns = {f["name"]: f for f in project["packages"][0]["functions"]}
    raw = {**(project.get("environment") or {}), **(fns[function].get("environment") or {})}

    def value(match: re.Match[str]) -> str:
        var = match.group(1)
        own = split_per_function(var)
        found = own_value(own[0], own[1], values) if own is not None else str(values.get(var, "")).strip()
        return "" if found == UNSET else found

    out = {k: re.sub(r"\$\{([A-Za-z0-9_]+)\}", value, str(v)) for k, v in raw.items()}
    return {k: v for k, v in out.items() if v}
