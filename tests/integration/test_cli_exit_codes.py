"""Every CLI command's documented exit codes, command by command (the list comes from the parser itself,
so a new command without its line here fails): invalid configuration is 2 and changes nothing."""

from __future__ import annotations

import argparse
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from conftest import keys
from drkit.cli import main

# each command's arguments for a run that must be refused as invalid configuration (the bucket is unset)
COMMANDS: dict[str, list[str]] = {
    "config check": [], "config deploy-env": ["--out", "{tmp}/deploy.env"], "config backup": [], "config list": [],
    "config show": ["latest"], "config extract": ["--to", "{tmp}/out"], "dns restore": ["--domain", "example.net"],
    "failover status": [], "failover dry-run": [], "failover drill": [], "failover failover": ["--yes"],
    "failover failback": ["--yes"], "failover plan push": ["{tmp}/plan.json", "--key", "plans/failover.json"], "failover plan show": ["--key", "plans/failover.json"],
    "schedule status": [], "schedule run": ["db-backup"], "backup": [], "backups list": [],
    "backups show": ["latest", "--db", "app"], "backups pin": ["latest", "--db", "app", "--reason", "x"],
    "backups untrusted": ["--db", "app", "--delete"],
    "backups unpin": ["latest", "--db", "app"],
    "restore": ["--db", "app", "--target", "postgresql://u@127.0.0.1:1/x", "--yes-i-know", "x"],
    "swap-back": ["--target", "postgresql://u@127.0.0.1:1/x", "--kept", "x_before_1"],
    "droplet rebuild": ["erp"], "retention plan": [],
    "status show": [], "status post": ["--title", "Orders are delayed"], "status resolve": ["latest"],
    "status publish": [], "report": ["--out", "{tmp}/out"],
    "files list": ["--source", "files"], "files restore": ["--source", "files", "--to", "{tmp}/files"],
    "supabase recreate": ["--region", "us-east-1"], "validate": [], "incident record": ["--since", "2026-12-01T00:00Z"],
    "apps stop": ["odoo"], "apps start": ["odoo"], "apps redeploy": ["odoo"],
    "copy run": [], "copy status": [],
}
NO_CONFIG = {"init", "keygen"}  # they write files and read no configuration: refused when the file exists


def commands(parser: argparse.ArgumentParser, prefix: tuple[str, ...] = ()) -> Iterator[str]:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield from commands(sub, (*prefix, name))
            return
    yield " ".join(prefix)


def test_every_command_is_listed() -> None:
    assert sorted(commands(main.build_parser())) == sorted([*COMMANDS, *NO_CONFIG])


def test_the_exit_codes_are_documented(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main.main(["--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "Exit codes: 0 done" in text and "2 invalid configuration" in text and "130 interrupted" in text


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_invalid_configuration_is_2_and_changes_nothing(command: str, make_env: Any, tmp_path: Path, s3_client: Any,
                                                      bucket: str, capsys: pytest.CaptureFixture[str]) -> None:
    env = make_env({"app": "postgresql://u:p@127.0.0.1:1/app"}, DRKIT_SPACES_BUCKET="")
    env_file = tmp_path / ".env"
    env_file.write_text("".join(f"{k}={v}\n" for k, v in env.items() if v))
    (tmp_path / "plan.json").write_text('{"sites": ["primary", "dr"], "records": [{"domain": "example.net", '
                                        '"name": "erp", "type": "A", "ttl": 60, "values": {"primary": "203.0.113.10", '
                                        '"dr": "198.51.100.20"}}]}')
    argv = ["--env-file", str(env_file), *command.split(), *[a.format(tmp=tmp_path) for a in COMMANDS[command]]]
    code = main.main(argv)
    captured = capsys.readouterr()
    assert code == 2, (command, captured.out[-500:], captured.err[-500:])
    assert "DRKIT_SPACES_BUCKET" in captured.out + captured.err  # says what is wrong
    assert keys(s3_client, bucket, "") == []  # nothing written anywhere
    assert not (tmp_path / "deploy.env").exists() and not (tmp_path / "out").exists()


@pytest.mark.parametrize("command", sorted(NO_CONFIG))
def test_init_and_keygen_refuse_to_overwrite_with_2(command: str, tmp_path: Path,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    existing = tmp_path / "existing"
    existing.write_text("keep me\n")
    argv = ["--env-file", str(existing), "init"] if command == "init" else ["keygen", "--out", str(existing)]
    assert main.main(argv) == 2
    assert existing.read_text() == "keep me\n" and "refusing to overwrite" in capsys.readouterr().err
