"""`drkit config check`: every function's own start-up validation, on the environment project.yml gives it.

For each deployed function, the variables are substituted from the operator's `.env` as the deployer
does (`envvars.function_environment`), then the function's `check()` runs: the same constructors its
run() starts with, so a configuration this command accepts is one the function accepts. With
`--connect`, each function's endpoints are reached with that function's own credentials: the bucket
(each function's Spaces key), the databases (db-backup), the staging server (restore-verify), the
DigitalOcean API (the functions that hold a token), the Functions API (the scheduler), and the
failover plan in the bucket (read and verified as dns-failover does). One line per problem; exit 1
when there is any.
"""

from __future__ import annotations

import argparse
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from drkit.cli.common import console, project_text
from drkit.cli.functions import CHECKS
from drkit.core.deadline import Deadline
from drkit.core.errors import ConfigError, DrkitError
from drkit.functions import dns_failover
from drkit.platform import envvars
from drkit.platform.runtime import without_unset

# what DigitalOcean sets in a running function; the check stands in for it
RUNTIME = {"__OW_API_HOST": "https://faas.set-by-digitalocean.invalid", "__OW_NAMESPACE": "fn-set-by-digitalocean"}


def function_env(project: str, function: str, env: Mapping[str, str]) -> dict[str, str]:
    out = without_unset(envvars.function_environment(project, function, env))
    if function == envvars.SCHEDULER:
        out = {**RUNTIME, **out}
    return out


def problems_of(function: str, fenv: Mapping[str, str], connect: bool) -> tuple[list[str], list[str], str]:
    """(configuration problems, endpoints not reached, summary) of one function."""
    try:
        summary = CHECKS[function](fenv)
    except ConfigError as exc:
        return list(exc.problems), [], ""
    if not connect:
        return [], [], summary
    try:
        reached = _connect(function, fenv)
    except ConfigError as exc:
        return list(exc.problems), [], summary
    except DrkitError as exc:
        return [], [str(exc)], summary
    return [], [], f"{summary}; reached {reached}"


def _connect(function: str, fenv: Mapping[str, str]) -> str:
    from drkit.platform.config import spaces_from_env
    from drkit.storage.store import Store

    spaces = spaces_from_env(fenv)
    store = Store(spaces)
    store.check_access()
    reached = [f"bucket {spaces.bucket} with this function's key"]
    if function == envvars.DB_BACKUP:
        reached += _databases(fenv)
    elif function == envvars.RESTORE_VERIFY:
        from drkit.functions.restore_verify import Settings
        from drkit.platform.databases import database_names
        from drkit.postgres import connection

        settings = Settings.from_env(fenv, database_names(fenv))
        with connection.connect(settings.staging, autocommit=True) as conn:
            conn.execute("SELECT 1")
        reached.append(f"staging {settings.staging.display}")
    elif function == envvars.FAILOVER:
        reached.append(dns_failover.check(fenv, store))
    elif function == envvars.COPY:
        from drkit.functions.backup_copy import Settings as CopySettings
        from drkit.offsite.target import Target

        copy = CopySettings.from_env(fenv)
        target = Target(copy.copy, Store(copy.copy.spaces), copy.lock_days)
        target.store.check_access()
        reached.append(f"the off-site copy {target.describe()} with its key "
                       f"({target.capabilities().describe(copy.lock_days)})")
    elif function == envvars.SCHEDULER and "DRKIT_FUNCTIONS_API_HOST" in fenv:
        from drkit.scheduling.openwhisk import FunctionsApi

        problems: list[str] = []
        api = FunctionsApi.from_env(fenv, problems)
        if api is None:
            raise ConfigError(problems)
        api.activation("0" * 32)  # 404 for an unknown id; 401/403 when the key is refused
        reached.append(f"the Functions API of {api.namespace} with its key")
    if fenv.get("DRKIT_DO_TOKEN") and function != envvars.HEALTH:
        from drkit.digitalocean.api import DoApi

        do_api = DoApi.from_env(fenv, Deadline(60))
        if function == envvars.SNAPSHOTS:  # a read with the scope each one uses most (writes are not tried)
            do_api.snapshots("droplet")
        else:
            do_api.list_domains()
        reached.append("the DigitalOcean API with its token (read scopes)")
    return ", ".join(reached)


def _databases(fenv: Mapping[str, str]) -> list[str]:
    from drkit.platform.config import Config
    from drkit.postgres import binaries, snapshot

    cfg = Config.from_env(fenv)
    tool = binaries.tool_version("pg_dump")
    out = []
    for db in cfg.databases.values():
        with snapshot.SnapshotSession(db) as s:
            info = s.inspect(())
        binaries.check_compatible(tool, info.server_version_num)
        out.append(f"{db.name} (PostgreSQL {info.server_version}, pg_dump {tool.version} compatible)")
    return out


def cmd_config_check(args: argparse.Namespace, env: Mapping[str, str]) -> int:
    con = console()
    project = project_text(args.project)
    bad = 0
    try:
        _, warnings = envvars.deploy_env(project, env)
    except ConfigError as exc:
        for problem in exc.problems:
            con.print(f"[red]deploy[/red]: {problem}", highlight=False)
        bad += len(exc.problems)
        warnings = []
    for warning in warnings:
        con.print(f"[yellow]deploy[/yellow]: {warning}", highlight=False)
    unreached = 0
    import yaml

    scheduled = envvars.scheduled_functions(yaml.safe_load(project), env)
    for function in envvars.ALL:
        problems, failed, summary = problems_of(function, function_env(project, function, env), args.connect)
        in_use = function in scheduled or any(str(env.get(v, "")).strip()
                                              for v in envvars.own_variables(function, scheduled))
        if problems and not in_use:  # deployed, but nothing runs it and nothing of it is set: not in use
            con.print(f"[yellow]dr/{function}[/yellow]: not set up (nothing schedules it; it refuses to run until "
                      f"it is): {problems[0]}", highlight=False)
            continue
        for problem in problems:
            con.print(f"[red]dr/{function}[/red]: {problem}", highlight=False)
        for problem in failed:
            con.print(f"[red]dr/{function}[/red]: not reached: {problem}", highlight=False)
        if not problems and not failed:
            con.print(f"[green]dr/{function}[/green]: ok; {summary}", highlight=False)
        bad += len(problems)
        unreached += len(failed)
    _warnings(con, env)
    env_path = Path(getattr(args, "env_file", None) or ".env")
    if env_path.exists():
        from drkit.cli import envfile

        for line in [*envfile.hygiene(env_path, lambda n: known_name(n, env), drkit_names()),
                     *envfile.differences(env_path)]:  # ./scripts/deploy is safe; `doctl serverless deploy` alone is not
            con.print(f"[yellow]warning[/yellow]: {line}", highlight=False)
    if env.get("DRKIT_CONFIG_SOURCES", "").strip():
        from drkit.cli.config import print_sources

        try:
            print_sources(con, env)
        except ConfigError:
            pass  # already a line of dr/config-backup above
    if getattr(args, "notify", False) and not bad:
        unreached += _notify_test(con, env)
    if bad:
        con.print(f"[red]{bad} configuration problem(s)[/red]: each function refuses to start until its lines "
                  "are fixed")
        return 2
    if unreached:
        con.print(f"[red]{unreached} endpoint(s) not reached[/red] with the credentials the functions would use")
        return 1
    con.print("[green]configuration is valid[/green] for every function" + (" and every endpoint answered"
                                                                          if args.connect else ""))
    return 0


def _notify_test(con: Any, env: Mapping[str, str]) -> int:
    """One test message to each configured notification URL (only when asked: --notify); failures counted."""
    from drkit.platform.notify import Notifier

    notifier = Notifier.from_env(env)
    if not notifier.configured:
        con.print("[yellow]notifications[/yellow]: no DRKIT_NOTIFY_* URL is set: failures are only in the logs")
        return 0
    statuses = notifier.send({"event": "drkit.test", "function": "cli", "status": "passed",
                              "decision": "drkit config check --notify: a test message; nothing happened"})
    failed = [s for s in statuses if not s.get("ok")]
    for status in statuses:
        colour = "green" if status.get("ok") else "red"
        con.print(f"[{colour}]notifications[/{colour}]: {status.get('channel')}: "
                  f"{'delivered' if status.get('ok') else status.get('error') or status.get('status')}", highlight=False)
    return len(failed)


def signing_warnings(env: Mapping[str, str]) -> list[str]:
    """Each writer's own key, trusted for its role only: what `drkit config check` says when it is not so."""
    from drkit.crypto import signing
    from drkit.platform import identity

    problems: list[str] = []
    trust = identity.trust_from_env(env, problems)
    out = list(problems)
    holders: dict[str, list[str]] = {}
    for role in identity.ROLES:
        key = envvars.as_deployed(role, env).get("DRKIT_SIGNING_KEY", "").strip()
        if not key:
            if role == identity.OPERATOR:
                out.append("no operator signing key (DRKIT_SIGNING_KEY_OPERATOR): pins, failover plans and notices "
                           "cannot be signed from this machine (drkit keygen --signing --for operator)")
            continue
        try:
            public = signing.parse_public(signing.public_of(key))
        except ConfigError as exc:
            out += [f"{role}: {p}" for p in exc.problems]
            continue
        holders.setdefault(public.text, []).append(role)
        if role not in trust.roles_of(public):
            out.append(f"{role}'s signing key {public.id_hex} is not trusted for {role} in DRKIT_TRUSTED_KEYS: what "
                       f"it writes would be refused (add {role}={public.text})")
    for text, roles in holders.items():
        if len(roles) > 1:
            out.append(f"one signing key ({signing.parse_public(text).id_hex}) is shared by {', '.join(roles)}: whoever "
                       "steals one of them forges the records of all; give each its own "
                       "(drkit keygen --signing --for all)")
    if trust.legacy():
        out.append("DRKIT_TRUSTED_KEYS has a key without a role (an older shared key): it is believed for db-backup, "
                   "config-backup and operator; name each key's role (role=RW…)")
    return out


# read by the operator CLI only (never deployed): restores into another S3 endpoint, the copy's Read key
CLI_ONLY = frozenset({"DRKIT_RESTORE_S3_KEY", "DRKIT_RESTORE_S3_SECRET", "DRKIT_COPY_READ_KEY", "DRKIT_COPY_READ_SECRET",
                      "DRKIT_PG_BIN"})


def drkit_names() -> list[str]:
    """Every variable name drkit reads (per-function names spelt out)."""
    names = [v.name for v in envvars.VARIABLES if "<" not in v.name] + sorted(CLI_ONLY)
    names += [envvars.per_function_name(base, fn) for base in envvars.PER_FUNCTION for fn in (*envvars.ALL, "operator")]
    return names


def known_name(name: str, env: Mapping[str, str]) -> bool:
    """A variable drkit reads: declared, per function, CLI-only, or named by another setting (a source's token_env)."""
    if envvars.find(name) is not None or name in CLI_ONLY or name in drkit_names():
        return True
    return any(name in str(value) for key, value in env.items() if key != name and key.startswith("DRKIT_"))


def _warnings(con: Any, env: Mapping[str, str]) -> None:
    """What is allowed but weakens the deployment: TLS not verified, shared keys, a signing key not trusted."""
    from drkit.platform.config import Config
    from drkit.postgres import connection

    try:
        cfg = Config.from_env(env, need_recipients=False)
    except ConfigError:
        return
    for db in cfg.databases.values():
        warning = connection.tls_warning(db)
        if warning:
            con.print(f"[yellow]warning[/yellow]: {warning}")
    for line in signing_warnings(env):
        con.print(f"[yellow]warning[/yellow]: {line}")
    recipients = [r for r in str(env.get("DRKIT_AGE_RECIPIENTS", "")).replace(",", " ").split() if r]
    if len(recipients) == 1:
        con.print("[yellow]warning[/yellow]: DRKIT_AGE_RECIPIENTS names one age recipient: lose that identity and every "
                  "backup is unreadable. Add a second, kept offline (docs/runbook.md §5: drkit keygen)")
    writers = {envvars.spaces_key_of(fn, env) for fn in (envvars.DB_BACKUP, envvars.CONFIG)}
    for exposed in (envvars.FAILOVER, envvars.HEALTH):
        if envvars.spaces_key_of(exposed, env) in writers:
            con.print(f"[yellow]warning[/yellow]: dr/{exposed} uses the same Spaces key as the backup writers; "
                      f"{'it answers the public web: ' if exposed == envvars.FAILOVER else ''}give it its own key "
                      f"limited to this bucket ({envvars.per_function_name('DRKIT_SPACES_KEY', exposed)}; "
                      "docs/configuration.md, least privilege)")
