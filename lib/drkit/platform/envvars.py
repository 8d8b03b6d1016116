"""Every environment variable each function reads: the contract with project.yml, and the deploy env file.

`project.yml` gives each function exactly `VARIABLES` (platform/variables.py) for that function (a test holds
both to this table, and to what the functions really read). The DigitalOcean deployer
refuses a deploy when any `${VAR}` in project.yml is empty, so `scripts/deploy` writes a
complete deploy env file (`deploy_env`): required variables must be set, and every unset
optional variable is sent as the value `unset`, which the function edge
(`runtime.without_unset`) removes again before any code reads the environment.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Any

from drkit.core.errors import ConfigError
from drkit.platform.variables import (
    ALL,
    CONFIG,
    COPY,
    DB,
    DB_BACKUP,
    DO_CALLERS,
    FAILOVER,
    HEALTH,
    REPORT,
    RESTORE_VERIFY,
    SCHEDULER,
    SNAPSHOTS,
    UNSET,
    VARIABLES,
    Var,
)

__all__ = ["ALL", "CONFIG", "COPY", "DB", "DB_BACKUP", "DO_CALLERS", "FAILOVER", "HEALTH", "REPORT", "RESTORE_VERIFY",
           "SCHEDULER", "SNAPSHOTS", "UNSET", "VARIABLES", "Var", "as_deployed", "copy_leaks", "database_names",
           "deploy_env", "falls_back", "find", "for_function", "function_environment", "markdown_table", "missing",
           "own_value", "own_variables", "per_function_name", "scheduled_functions", "scheduler_jobs",
           "spaces_key_of", "split_per_function"]

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
    problems += copy_leaks(project_yml, values)
    if problems:
        raise ConfigError(sorted(set(problems)))
    return out, sorted(set(warnings))


COPY_CREDENTIALS = ("DRKIT_COPY_KEY", "DRKIT_COPY_SECRET")


def copy_leaks(project_yml: str, values: Mapping[str, str]) -> list[str]:
    """Only dr/backup-copy may hold the off-site copy's settings and write key (a stolen web-facing key must
    not reach the copy): project.yml may give no other function a DRKIT_COPY_* variable or substitute one, and
    no other function may be deployed with the copy's key or secret under another name (values are compared,
    never printed)."""
    import yaml

    project = yaml.safe_load(project_yml)
    common = dict(project.get("environment") or {})
    secret = {str(values.get(v, "")).strip() for v in COPY_CREDENTIALS} - {"", UNSET}
    problems = []
    for fn in project["packages"][0]["functions"]:
        if fn["name"] == COPY:
            continue
        env = {**common, **(fn.get("environment") or {})}
        for name, text in env.items():
            if name.startswith("DRKIT_COPY_") or "${DRKIT_COPY_" in str(text):
                problems.append(f"project.yml gives dr/{fn['name']} {name} ({text}): only dr/backup-copy may hold "
                                "the off-site copy's settings and key")
        for name, value in function_environment(project_yml, fn["name"], values).items():
            if value in secret:
                problems.append(f"dr/{fn['name']} would be deployed with the off-site copy's write credentials as "
                                f"{name}: give it its own key (restore-verify reads the copy with a Read key, "
                                "DRKIT_OFFSITE_KEY/SECRET)")
    return problems


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
} | {FAILOVER: (("DRKIT_SPACES_REGION", "DRKIT_SPACES_ENDPOINT"), ("DRKIT_FAILOVER_PLAN", "DRKIT_FAILOVER_PLAN_KEY")),
     COPY: (("DRKIT_SPACES_REGION", "DRKIT_SPACES_ENDPOINT"), ("DRKIT_COPY_REGION", "DRKIT_COPY_ENDPOINT"))}


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
