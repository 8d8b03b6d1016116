"""`drkit …` run in-process with a given environment, as an operator's shell would give it."""

from __future__ import annotations

import os

import pytest

from drkit.cli import main


def cli_with_env(env: dict[str, str], capsys: pytest.CaptureFixture[str], *argv: str, columns: int = 240
                 ) -> tuple[int, str]:
    """`drkit ARGV` with `env` added to the process environment (restored after): the exit code and the words it
    printed, whitespace folded."""
    old = dict(os.environ)
    os.environ.update(env)
    os.environ["COLUMNS"] = str(columns)
    try:
        capsys.readouterr()
        code = main.main(list(argv))
        out = capsys.readouterr()
        return code, " ".join((out.out + out.err).split())
    finally:
        os.environ.clear()
        os.environ.update(old)
