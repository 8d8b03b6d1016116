"""cli/envfile.py: .env read with python-dotenv, and the lines the deployer (npm dotenv 7) reads otherwise."""

from __future__ import annotations

from pathlib import Path

from conftest import ROOT
from drkit.cli import envfile


def test_the_example_means_the_same_to_drkit_and_to_the_deployer() -> None:
    example = ROOT / ".env.example"
    assert envfile.differences(example) == []
    ours = envfile.read(example)
    theirs = envfile.deployer_view(example.read_text())
    assert ours == {k: v for k, (_, v) in theirs.items()} and len(ours) > 20


def test_constructs_the_two_parsers_read_differently_are_named_without_their_values(tmp_path: Path) -> None:
    env = tmp_path / ".env"
    env.write_text("A=plain\n"
                   "B=secret-value   # a comment\n"          # the deployer keeps the comment in the value
                   "export C=exported\n"                     # the deployer does not see it
                   "D='quoted # not a comment'\n"            # both: literal
                   'E="two\\nlines"\n'                       # both: a newline
                   "F=\n")
    assert envfile.read(env) == {"A": "plain", "B": "secret-value", "C": "exported", "D": "quoted # not a comment",
                                 "E": "two\nlines", "F": ""}
    found = envfile.differences(env)
    assert len(found) == 2
    assert found[0].startswith(".env line 2: B:") and "put it on its own line" in found[0]
    assert found[1].startswith(".env: C:") and "without `export`" in found[1]
    assert all("secret-value" not in line for line in found)
