"""The deployed artifact as DigitalOcean runs it: project.yml's env, the deployer's zip, the real loader.

* `function_env(name, dotenv)`: exactly the environment project.yml gives one function,
  with `${VAR}` substituted the way `scripts/deploy` does it (`envvars.deploy_env`:
  unset optional variables become `unset`).
* `deployer_zip` / `run_under_loader`: `../shared/do-runtime/zip_like_deployer.py` and
  `run_function.py` (DigitalOcean's own prelauncher/launcher). They live beside the
  checkout, not in it: `do_runtime()` is None on a plain clone, and callers skip with
  that reason.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml

from drkit.platform import envvars

ROOT = Path(__file__).resolve().parents[2]
NO_RUNTIME = ("DigitalOcean's Python loader (../shared/do-runtime) is not beside this checkout; "
              "CI has it and runs these tests")


def do_runtime() -> Path | None:
    explicit = os.environ.get("DRKIT_DO_RUNTIME", "").strip()
    candidates = [Path(explicit)] if explicit else [ROOT.parent / "shared" / "do-runtime"]
    return next((c for c in candidates if (c / "run_function.py").is_file()), None)


def project() -> dict[str, Any]:
    return dict(yaml.safe_load((ROOT / "project.yml").read_text()))


def function_spec(name: str) -> dict[str, Any]:
    return dict(next(f for f in project()["packages"][0]["functions"] if f["name"] == name))


def function_env(name: str, dotenv: dict[str, str]) -> dict[str, str]:
    """project-level + function-level `environment`, substituted from `dotenv` as deployed."""
    text = (ROOT / "project.yml").read_text()
    values, _ = envvars.deploy_env(text, dotenv)
    raw = {**(project().get("environment") or {}), **(function_spec(name).get("environment") or {})}
    return {k: re.sub(r"\$\{([A-Za-z0-9_]+)\}", lambda m: values[m.group(1)], str(v)) for k, v in raw.items()}


def deployer_zip(function: str, out: Path) -> Path:
    runtime = do_runtime()
    assert runtime is not None, NO_RUNTIME
    proc = subprocess.run([sys.executable, str(runtime / "zip_like_deployer.py"), str(ROOT / "packages" / "dr" / function),
                           "--out", str(out)], capture_output=True, text=True, cwd=ROOT)
    if proc.returncode != 0:
        raise AssertionError(f"the deployer would refuse dr/{function}: {proc.stdout[-1500:]}{proc.stderr[-1500:]}")
    return out


def run_under_loader(archive: Path, function: str, env: dict[str, str], event: dict[str, Any], *,
                     repeat: int = 1, cache_dir: Path | None = None) -> dict[str, Any]:
    """One container's life under DO's loader: the JSON report (activations, inits, memory, exit_code)."""
    runtime = do_runtime()
    assert runtime is not None, NO_RUNTIME
    spec = function_spec(function)
    argv = [sys.executable, str(runtime / "run_function.py"), "--zip", str(archive), "--function-name",
            f"dr/{function}", "--event", json.dumps(event), "--timeout-ms", str(spec["limits"]["timeout"]),
            "--memory-mb", str(spec["limits"]["memory"]), "--repeat", str(repeat), "--json"]
    if cache_dir is not None:
        argv += ["--cache-dir", str(cache_dir)]
    for k, v in env.items():
        argv += ["--env", f"{k}={v}"]
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=spec["limits"]["timeout"] / 1000 * repeat + 120)
    try:
        report = json.loads(proc.stdout)
    except json.JSONDecodeError:
        raise AssertionError(f"run_function.py exited {proc.returncode} without a report: "
                             f"{proc.stdout[-2000:]}{proc.stderr[-2000:]}") from None
    report["stderr"] = proc.stderr
    return dict(report)


def footprint_mb(report: dict[str, Any]) -> float:
    """Peak RSS + bytes under the stand-in /tmp, in MiB (both count against the limit on DO)."""
    mem = report["memory"]
    return float((mem["peak_rss_kb"] * 1024 + mem["tmp_bytes"]) / 2**20)
