"""What every CLI command shares: the env file, the console, sizes and ages, the store, keys and identities, exit codes."""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from drkit.core.errors import ConfigError
from drkit.crypto import encryption
from drkit.platform.config import Config
from drkit.storage.store import Store

EXIT = {"ok": 0, "dry_run": 0, "partial": 3, "invalid_config": 2}


def load_env_file(path: Path) -> dict[str, str]:
    """The env file's KEY=VALUE pairs, read with python-dotenv (cli/envfile.py)."""
    from drkit.cli import envfile

    return envfile.read(path)


def environment(env_file: str | None) -> dict[str, str]:
    env: dict[str, str] = {}
    path = Path(env_file) if env_file else Path(".env")
    if env_file and not path.exists():
        raise ConfigError(f"env file {path} does not exist")
    if path.exists():
        env.update(load_env_file(path))
    env.update(os.environ)
    return env


CHECKOUT_PROJECT = Path(__file__).resolve().parents[3] / "project.yml"


def project_text(path: str | None, default: Path = CHECKOUT_PROJECT) -> str:
    """The project file (default: the checkout's project.yml, wherever the command runs from)."""
    file = Path(path) if path else default
    try:
        return file.read_text()
    except OSError as exc:
        raise ConfigError(f"cannot read the project file {file} ({exc.strerror}): run drkit from its checkout, or "
                          "name the file with --project") from None


def console() -> Any:
    from rich.console import Console

    return Console()


def size(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if abs(n) < 1000 or unit == "TB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n:.1f} TB"


def age(t: dt.datetime, now: dt.datetime) -> str:
    s = (now - t).total_seconds()
    if s < 0:
        return "in the future"
    if s < 3600:
        return f"{s / 60:.0f} min"
    if s < 172800:
        return f"{s / 3600:.1f} h"
    return f"{s / 86400:.1f} d"


# -- commands -----------------------------------------------------------------------

def write_private(out: Path, text: str) -> None:
    if out.exists():
        raise ConfigError(f"{out} exists; refusing to overwrite a key (move it away first)")
    fd = os.open(out, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(text)


def print_result(result: dict[str, Any], as_json: bool) -> int:
    if as_json:
        print(json.dumps(result, indent=2, default=str))
    else:
        con = console()
        color = "green" if result["ok"] else "red"
        status, decision = str(result.get("status")), str(result.get("decision"))
        decision = decision[len(status) + 2:] if decision.startswith(f"{status}: ") else decision  # not "failed: failed:"
        con.print(f"[{color}]{status}[/{color}]: {decision}")
        for problem in result.get("problems", []):
            con.print(f"  - {problem}")
    if result["ok"]:
        return 0  # whatever the status word (applied, pending, ok, dry_run): the run did its job
    return EXIT.get(str(result.get("status")), 1)


def open_store(env: Mapping[str, str], args: argparse.Namespace | None = None,
               role: str = "operator") -> tuple[Config, Store]:
    """The bucket as the operator (or `role`) sees it: signing with the operator's key when the .env has one
    (DRKIT_SIGNING_KEY_OPERATOR, else DRKIT_SIGNING_KEY), believing DRKIT_TRUSTED_KEYS and keys pinned in the
    identity file (`# drkit trusted key: RW…` lines, which `drkit keygen --signing` shows)."""
    from drkit.crypto import signing
    from drkit.platform import envvars, identity

    cfg = Config.from_env(env, need_databases=False, need_recipients=False)
    pinned: list[str] = []
    path = getattr(args, "identity", None) if args is not None else None
    if path and Path(path).exists():
        pinned = signing.keys_in(Path(path).read_text().splitlines())
    mine = envvars.as_deployed(role, env)
    problems: list[str] = []
    trust = identity.trust_from_env(mine, problems, pinned)
    if problems:
        raise ConfigError(problems)
    me = identity.collect(mine, role, problems, signs=bool(mine.get("DRKIT_SIGNING_KEY", "").strip()),
                          extra_trusted=pinned)
    if problems:  # a key nobody would believe as this role: read, but sign nothing (what needs it says so)
        import sys

        print("warning: " + "; ".join(problems) + "; nothing this command writes is signed", file=sys.stderr)
        me = identity.Identity.of(None, trust) if trust else me
    primary = Store(cfg.spaces, identity=me)
    if getattr(args, "repo", "primary") == "copy":
        return cfg, open_copy(env, primary, getattr(args, "as_of", None))
    if getattr(args, "as_of", None):
        raise ConfigError("--as-of reads the off-site copy's older versions: add --from copy")
    return cfg, primary


def add_repo_args(p: argparse.ArgumentParser) -> None:
    """`--from primary|copy` and `--as-of`: where a listing or a restore reads its backups."""
    p.add_argument("--from", dest="repo", choices=("primary", "copy"), default="primary",
                   help="read the primary bucket (default) or the off-site copy (DRKIT_COPY_*: its Read key "
                        "DRKIT_COPY_READ_KEY/SECRET when set)")
    p.add_argument("--as-of", metavar="TIME", help="with --from copy: the copy as it was at this UTC time "
                   "(2026-12-01T03:00Z), behind later overwrites, forged heads and delete markers")


def open_copy(env: Mapping[str, str], primary: Store, as_of_text: str | None) -> Store:
    """The off-site copy, read-only, as this operator sees it: versioned reads (storage/versioned.py) when the
    bucket keeps versions; what a restore records goes to the primary."""
    from drkit.platform.config import COPY, copy_from_env
    from drkit.storage.versioned import open_view

    reader = dict(env)
    if env.get("DRKIT_COPY_READ_KEY", "").strip():  # least privilege: a Read key is all a restore needs
        reader["DRKIT_COPY_KEY"] = env["DRKIT_COPY_READ_KEY"]
        reader["DRKIT_COPY_SECRET"] = env.get("DRKIT_COPY_READ_SECRET", "")
    problems: list[str] = []
    cfg = copy_from_env(reader, problems, COPY)
    if cfg is None:
        raise ConfigError(["--from copy needs the off-site copy's settings:", *problems])
    as_of = _utc(as_of_text) if as_of_text else None
    from drkit.core.errors import StoreError

    try:
        return open_view(cfg.spaces, primary.identity, as_of=as_of, writes_to=primary)
    except StoreError as exc:
        if as_of is not None and "keeps versions" in str(exc):
            raise ConfigError(f"--as-of needs a copy bucket that keeps versions; {cfg.spaces.bucket} does not "
                              "(enable Object Lock or versioning on the copy)") from None
        raise


def _utc(text: str, option: str = "--as-of") -> dt.datetime:
    try:
        t = dt.datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError:
        raise ConfigError(f"{option} {text!r} is not a time like 2026-12-01T03:00Z") from None
    return t if t.tzinfo else t.replace(tzinfo=dt.UTC)


utc_time = _utc


def load_identities(args: argparse.Namespace, env: Mapping[str, str]) -> list[Any]:
    if args.identity:
        path = Path(args.identity)
        if not path.exists():
            raise ConfigError(f"identity file {path} does not exist")
        text = path.read_text()
    elif env.get("DRKIT_AGE_IDENTITY"):
        text = env["DRKIT_AGE_IDENTITY"]
    else:
        raise ConfigError("say which age identity decrypts the backup: --identity FILE (or DRKIT_AGE_IDENTITY)")
    return [encryption.parse_identity(line) for line in text.split() if line.startswith("AGE-SECRET-KEY-")] or \
        [encryption.parse_identity(text)]
