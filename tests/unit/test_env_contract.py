"""The environment contract: lib/drkit/platform/envvars.py == project.yml == docs/configuration.md == the code."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from drkit.core.errors import ConfigError
from drkit.platform import envvars
from drkit.platform.runtime import without_unset

ROOT = Path(__file__).resolve().parents[2]
PROJECT = (ROOT / "project.yml").read_text()
# read by the library, but never a function's configuration
NOT_CONFIGURATION = {"DRKIT_PG_BIN": "development override of the vendored PostgreSQL tools (tests, drill)"}


def project_env(function: str) -> set[str]:
    project = yaml.safe_load(PROJECT)
    fn = next(f for f in project["packages"][0]["functions"] if f["name"] == function)
    env = {**project["environment"], **fn["environment"]}
    for name, value in env.items():
        own = f"${{{envvars.per_function_name(name, function)}}}"
        expected = own if name in envvars.PER_FUNCTION else f"${{{name}}}"
        assert value == expected, f"{function}: {name} should be substituted from {expected}"
    return set(env)


@pytest.mark.parametrize("function", envvars.ALL)
def test_project_yml_gives_each_function_exactly_what_it_reads(function: str) -> None:
    given = project_env(function)
    declared = envvars.for_function(function)
    for name in given:
        spec = envvars.find(name)
        assert spec is not None and function in spec.functions, f"project.yml gives dr/{function} {name}, unread"
    for spec in declared:
        assert any(spec.pattern().match(n) for n in given), f"dr/{function} reads {spec.name}; project.yml lacks it"


def test_every_variable_in_the_code_is_declared() -> None:
    found: set[str] = set()
    for path in (ROOT / "lib" / "drkit").glob("*.py"):
        if path.name != "envvars.py":
            found |= set(re.findall(r"\"(DRKIT_[A-Z0-9_]*[A-Z0-9])\"", path.read_text()))
    undeclared = sorted(n for n in found if envvars.find(n) is None and n not in NOT_CONFIGURATION)
    assert not undeclared, f"read in lib/drkit but not in envvars.VARIABLES: {undeclared}"


def test_configuration_doc_holds_the_table() -> None:
    doc = (ROOT / "docs" / "configuration.md").read_text()
    assert envvars.markdown_table() in doc, "docs/configuration.md: paste envvars.markdown_table() (see its header)"


def required_only() -> dict[str, str]:
    """An operator's .env with only what the scheduled functions require."""
    return {"DRKIT_SPACES_BUCKET": "b", "DRKIT_SPACES_REGION": "fra1", "DRKIT_SPACES_KEY": "k",
            "DRKIT_SPACES_SECRET": "s", "DRKIT_AGE_RECIPIENTS": "age1x", "DRKIT_AGE_IDENTITY": "AGE-SECRET-KEY-1X",
            "DRKIT_DATABASES": "odoo", "DRKIT_DB_ODOO_URL": "postgresql://u:p@h/odoo",
            "DRKIT_STAGING_URL": "postgresql://u:p@h/postgres",
            **{envvars.per_function_name("DRKIT_SIGNING_KEY", fn): f"drkit-sign-1:{fn}" for fn in envvars.ALL},
            "DRKIT_TRUSTED_KEYS": "db-backup=RWx", "DRKIT_FUNCTIONS_KEY": "dof_v1_x:y",
            "DRKIT_CONFIG_SOURCES": '[{"type": "digitalocean"}]',
            "DRKIT_COPY_BUCKET": "b-offsite", "DRKIT_COPY_REGION": "ams3", "DRKIT_COPY_KEY": "ck",
            "DRKIT_COPY_SECRET": "cs"}


def test_the_off_site_copy_is_required_unless_disabled() -> None:
    """The scheduler runs backup-copy: a deployment without an off-site copy says so, and runs without one only
    when the operator disables it on purpose."""
    values = {k: v for k, v in required_only().items() if not k.startswith("DRKIT_COPY_")}
    with pytest.raises(ConfigError, match="DRKIT_COPY_BUCKET is required by dr/backup-copy .run by the scheduler"):
        envvars.deploy_env(PROJECT, values)
    values["DRKIT_SCHEDULE"] = '[{"job": "backup-copy", "enabled": false}]'
    _, warnings = envvars.deploy_env(PROJECT, values)
    assert any("DRKIT_COPY_BUCKET is not set" in w for w in warnings)


@pytest.mark.parametrize("function", [f for f in envvars.ALL if f != envvars.COPY])
def test_no_function_but_backup_copy_sees_the_copy_settings(function: str) -> None:
    """Only dr/backup-copy holds DRKIT_COPY_* (above all not the web-facing dns-failover and report): not in
    project.yml, not once deployed, not under another name."""
    assert not {n for n in project_env(function) if n.startswith("DRKIT_COPY_")}
    deployed = envvars.function_environment(PROJECT, function, required_only())
    assert not {n for n in deployed if n.startswith("DRKIT_COPY_")}
    assert not {"ck", "cs"} & set(deployed.values()), f"dr/{function} is deployed with the copy's key"
    copy_env = envvars.function_environment(PROJECT, envvars.COPY, required_only())
    assert copy_env["DRKIT_COPY_KEY"] == "ck" and copy_env["DRKIT_COPY_SECRET"] == "cs"


def test_deploy_and_config_check_refuse_the_copy_key_under_another_name() -> None:
    """An operator who gives restore-verify (or dns-failover) the copy's write key is stopped, by name only."""
    for leak in ({"DRKIT_OFFSITE_KEY": "ck", "DRKIT_OFFSITE_SECRET": "cs", "DRKIT_OFFSITE_BUCKET": "b-offsite"},
                 {"DRKIT_SPACES_KEY_DNS_FAILOVER": "ck", "DRKIT_SPACES_SECRET_DNS_FAILOVER": "cs"}):
        with pytest.raises(ConfigError) as exc:
            envvars.deploy_env(PROJECT, required_only() | leak)
        assert "off-site copy's write credentials" in str(exc.value) and "ck" not in str(exc.value).split()
    leaky = PROJECT.replace('          DRKIT_WEBHOOK_MAX_BODY: "${DRKIT_WEBHOOK_MAX_BODY}"\n',
                            '          DRKIT_WEBHOOK_MAX_BODY: "${DRKIT_WEBHOOK_MAX_BODY}"\n'
                            '          DRKIT_COPY_KEY: "${DRKIT_COPY_KEY}"\n')
    assert leaky != PROJECT
    assert any("dr/dns-failover DRKIT_COPY_KEY" in p for p in envvars.copy_leaks(leaky, required_only()))


def test_a_function_never_falls_back_to_a_shared_signing_key() -> None:
    """A stolen dns-failover must not hold the key that signs backups: only the two functions that held the
    one shared key before per-writer keys may still use it."""
    values = {k: v for k, v in required_only().items() if not k.startswith("DRKIT_SIGNING_KEY_")}
    values["DRKIT_SIGNING_KEY"] = "drkit-sign-1:shared"
    with pytest.raises(ConfigError) as exc:
        envvars.deploy_env(PROJECT, values)
    text = str(exc.value)
    assert "DRKIT_SIGNING_KEY_SCHEDULER is required by dr/scheduler" in text
    assert "DRKIT_SIGNING_KEY_DB_BACKUP" not in text and "DRKIT_SIGNING_KEY_CONFIG_BACKUP" not in text
    values |= {envvars.per_function_name("DRKIT_SIGNING_KEY", fn): "drkit-sign-1:own"
               for fn in envvars.ALL if fn not in (envvars.DB_BACKUP, envvars.CONFIG, envvars.FAILOVER)}
    env, warnings = envvars.deploy_env(PROJECT, values)
    assert env["DRKIT_SIGNING_KEY_DB_BACKUP"] == "drkit-sign-1:shared" == env["DRKIT_SIGNING_KEY_CONFIG_BACKUP"]
    assert env["DRKIT_SIGNING_KEY_DNS_FAILOVER"] == envvars.UNSET  # the web-facing function: never the shared key
    assert any("DRKIT_SIGNING_KEY_DNS_FAILOVER is not set" in w for w in warnings)
    fenv = envvars.function_environment(PROJECT, envvars.FAILOVER, values)
    assert "DRKIT_SIGNING_KEY" not in fenv


def test_what_the_scheduler_runs_is_required_and_what_it_does_not_is_a_warning() -> None:
    values = required_only()
    del values["DRKIT_CONFIG_SOURCES"]
    with pytest.raises(ConfigError, match="DRKIT_CONFIG_SOURCES is required by dr/config-backup .run by the scheduler"):
        envvars.deploy_env(PROJECT, values)
    values["DRKIT_SCHEDULE"] = '[{"job": "config-backup", "enabled": false}]'
    _, warnings = envvars.deploy_env(PROJECT, values)
    assert "DRKIT_CONFIG_SOURCES is not set: dr/config-backup will refuse to run until it is" in warnings
    assert any("DRKIT_SNAPSHOT_POLICIES is not set" in w for w in warnings)  # no policies: nothing to schedule
    del values["DRKIT_FUNCTIONS_KEY"]
    with pytest.raises(ConfigError, match="DRKIT_FUNCTIONS_KEY is required by dr/scheduler"):
        envvars.deploy_env(PROJECT, values)


def test_a_dotenv_with_only_the_required_variables_deploys() -> None:
    env, warnings = envvars.deploy_env(PROJECT, required_only())
    code = "\n".join(line.split("#")[0] for line in PROJECT.splitlines())
    used = set(re.findall(r"\$\{([A-Z0-9_]+)\}", code))
    assert set(env) == used and all(v.strip() for v in env.values()), "every ${VAR} needs a non-empty value"
    assert env["DRKIT_DB_SUPERSET_URL"] == envvars.UNSET and env["DRKIT_NOTIFY_SLACK_URL"] == envvars.UNSET
    assert env["DRKIT_DB_ODOO_URL"] == "postgresql://u:p@h/odoo"
    # unscheduled functions' required variables are warnings, not blockers
    assert any("DRKIT_SNAPSHOT_POLICIES" in w for w in warnings) and any("DRKIT_DO_TOKEN" in w for w in warnings)
    # and the function sees none of the placeholders
    assert "DRKIT_NOTIFY_SLACK_URL" not in without_unset(env) and without_unset(env)["DRKIT_SPACES_BUCKET"] == "b"


def test_deploy_env_refuses_listing_every_missing_variable() -> None:
    values = required_only()
    del values["DRKIT_AGE_RECIPIENTS"], values["DRKIT_STAGING_URL"], values["DRKIT_DB_ODOO_URL"]
    with pytest.raises(ConfigError) as exc:
        envvars.deploy_env(PROJECT, values)
    text = str(exc.value)
    for name in ("DRKIT_AGE_RECIPIENTS", "DRKIT_STAGING_URL", "DRKIT_DB_ODOO_URL"):
        assert name in text


def test_each_function_can_hold_its_own_spaces_key() -> None:
    values = required_only() | {"DRKIT_SPACES_KEY_DNS_FAILOVER": "narrow", "DRKIT_SPACES_SECRET_DNS_FAILOVER": "n-s"}
    env, _ = envvars.deploy_env(PROJECT, values)
    assert env["DRKIT_SPACES_KEY_DNS_FAILOVER"] == "narrow" and env["DRKIT_SPACES_KEY_DB_BACKUP"] == "k"
    assert envvars.spaces_key_of("dns-failover", values) == "narrow" and envvars.spaces_key_of("db-backup", values) == "k"


def test_deploy_env_refuses_a_database_project_yml_does_not_pass() -> None:
    values = required_only() | {"DRKIT_DATABASES": "odoo,crm", "DRKIT_DB_CRM_URL": "postgresql://u:p@h/crm"}
    with pytest.raises(ConfigError, match="DRKIT_DB_CRM_URL: \"\\$\\{DRKIT_DB_CRM_URL\\}\""):
        envvars.deploy_env(PROJECT, values)


@pytest.mark.parametrize("function", envvars.ALL)
def test_missing_names_every_required_variable_at_once(function: str) -> None:
    absent = envvars.missing(function, {})
    wanted = [v.name for v in envvars.for_function(function) if function in v.required and envvars.DB not in v.name]
    assert len(absent) == len(wanted) + len(envvars.ONE_OF[function])
    if function == envvars.DB_BACKUP:  # per-database variables of the configured databases
        assert any(a.startswith("DRKIT_DB_ODOO_URL is not set") for a in envvars.missing(function, {
            "DRKIT_DATABASES": "odoo"}))


def test_deploy_env_file_is_private_and_complete(tmp_path: Path) -> None:
    from drkit.cli import main

    env_file = tmp_path / ".env"
    env_file.write_text("".join(f"{k}={v}   # a comment\n" for k, v in required_only().items()))
    out = tmp_path / "build" / "deploy.env"
    assert main.main(["--env-file", str(env_file), "config", "deploy-env", "--out", str(out),
                     "--project", str(ROOT / "project.yml")]) == 0
    assert out.stat().st_mode & 0o777 == 0o600  # it holds the Spaces secret and database passwords
    lines = dict(line.split("=", 1) for line in out.read_text().splitlines() if not line.startswith("#"))
    assert lines["DRKIT_SPACES_SECRET_DNS_FAILOVER"] == "'s'" and lines["DRKIT_DB_SUPERSET_URL"] == "'unset'"
    code = "\n".join(line.split("#")[0] for line in PROJECT.splitlines())
    assert set(lines) == set(re.findall(r"\$\{([A-Z0-9_]+)\}", code))
