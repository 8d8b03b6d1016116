"""The operator's `.env`: read with python-dotenv, and compared with how the deployer would read it.

`doctl serverless deploy` reads a project's `.env` itself when it is run without `--env` (./scripts/deploy
gives it `build/deploy.env` instead, which drkit writes). Its parser is npm `dotenv` 7.0.0 (the
nimbella-deployer's pin), which is stricter than python-dotenv: a `# comment` after a value is part of
the value, `export KEY=` is not a variable, there are no multi-line values and no escapes but `\\n` in
double quotes. `differences` names every line the two would read differently, so that the one file
means the same thing to both; .env.example has none (a test holds it to that).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from pathlib import Path

from drkit.core.errors import ConfigError

# npm dotenv 7.0.0: one variable per line, `KEY=VALUE`, KEY of word characters, dots and dashes
_DEPLOYER_LINE = re.compile(r"^\s*([\w.-]+)\s*=\s*(.*)?\s*$")


def read(path: Path) -> dict[str, str]:
    """KEY=VALUE pairs as python-dotenv reads them (no `${VAR}` expansion); a line without `=`, or one it cannot
    parse (an unclosed quote, say: python-dotenv would only warn and leave the variable unset), is an error."""
    import io

    from dotenv import dotenv_values
    from dotenv.parser import parse_stream

    text = path.read_text(encoding="utf-8")
    broken = [b.original for b in parse_stream(io.StringIO(text)) if b.error]
    if broken:  # the value is never shown: a broken line often holds a secret
        raise ConfigError([f"{path} line {o.line}: cannot be read ({_name(o.string)}): write KEY=VALUE, and close "
                           "every quote on the same line" for o in broken])
    values = dotenv_values(path, interpolate=False, encoding="utf-8")
    missing = [k for k, v in values.items() if v is None]
    if missing:
        raise ConfigError(f"{path}: {', '.join(missing)} has no `=` (write KEY=VALUE)")
    return {k: str(v) for k, v in values.items()}


def _name(line: str) -> str:
    m = re.match(r"\s*(?:export\s+)?([A-Za-z_][\w.-]*)", line)
    return f"it starts with {m.group(1)}" if m else "no variable name"


def deployer_view(text: str) -> dict[str, tuple[int, str]]:
    """{KEY: (line number, value)} as npm dotenv 7.0.0 parses `text` (what `doctl serverless deploy` reads)."""
    out: dict[str, tuple[int, str]] = {}
    for n, line in enumerate(text.split("\n"), 1):
        m = _DEPLOYER_LINE.match(line)
        if not m:
            continue
        value = m.group(2) or ""
        if len(value) >= 2 and value[0] == value[-1] == '"':
            value = value[1:-1].replace("\\n", "\n")
        elif len(value) >= 2 and value[0] == value[-1] == "'":
            value = value[1:-1]
        else:
            value = value.strip()
        out[m.group(1)] = (n, value)
    return out


def hygiene(path: Path, known: Callable[[str], bool], names: Iterable[str]) -> list[str]:
    """Warnings about the file itself: readable by others, or a DRKIT_ name drkit does not know (misspelt?)."""
    import difflib

    out = []
    mode = path.stat().st_mode & 0o777
    if mode & 0o077:
        out.append(f"{path} is readable by others (mode {mode:04o}): it holds keys and passwords; chmod 600 {path}")
    candidates = sorted(set(names))
    for key in read(path):
        if key.startswith("DRKIT_") and not known(key):
            close = difflib.get_close_matches(key, candidates, n=1, cutoff=0.8)
            out.append(f"{path.name}: {key} is not a drkit variable, so nothing reads it"
                       + (f": did you mean {close[0]}?" if close else " (docs/configuration.md lists them)"))
    return out


def differences(path: Path) -> list[str]:
    """One line per variable the deployer would read differently from drkit (or not at all)."""
    ours = read(path)
    theirs = deployer_view(path.read_text(encoding="utf-8"))
    out = []
    for key, value in ours.items():
        if key not in theirs:
            out.append(f"{path.name}: {key}: `doctl serverless deploy` would not see it (write KEY=VALUE on one "
                       "line, without `export`)")
        elif theirs[key][1] != value:
            n = theirs[key][0]
            extra = " (a `# comment` after a value is part of the value there: put it on its own line)" \
                if "#" in theirs[key][1] and "#" not in value else ""
            out.append(f"{path.name} line {n}: {key}: `doctl serverless deploy` would read a different value"
                       f"{extra}")
    return out
