"""An operator's working folder and shell for the tests that run docs/runbook.md's blocks verbatim."""

from __future__ import annotations

import os
import sys
from pathlib import Path

from conftest import PGBIN, ROOT

SHIMS = {"drkit": "drkit.cli", "doctl": "drkit_dev.doctl_shim"}  # and `fn`: doctl serverless functions invoke


def folder(tmp_path: Path, dotenv: dict[str, str], identity: str) -> Path:
    """`ops/` with the operator's `.env` and `drkit-identity.txt`, as the runbook expects."""
    work = tmp_path / "ops"
    work.mkdir()
    (work / ".env").write_text("".join(f"{k}={v}\n" for k, v in dotenv.items()))
    (work / "drkit-identity.txt").write_text(identity + "\n")
    return work


def shell(tmp_path: Path, pgpassword: str, **extra: str) -> dict[str, str]:
    """The environment of the runbook's bash: `drkit`, `doctl` and `fn` on PATH (the checkout's CLI, the doctl shim
    that invokes functions in process with project.yml's environment), the vendored PostgreSQL tools."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for name, module in SHIMS.items():
        (bin_dir / name).write_text(f'#!/bin/sh\nexec "{sys.executable}" -m {module} "$@"\n')
    (bin_dir / "fn").write_text(f'#!/bin/sh\nexec "{sys.executable}" -m drkit_dev.doctl_shim serverless functions '
                                'invoke "$@"\n')
    for f in bin_dir.iterdir():
        f.chmod(0o755)
    return {"PATH": f"{bin_dir}:{os.environ['PATH']}", "HOME": str(tmp_path), "PYTHONPATH": str(ROOT / "lib"),
            "DRKIT_PG_BIN": str(PGBIN), "PGPASSWORD": pgpassword, "LC_ALL": "C.UTF-8", **extra}
