"""A `doctl` stand-in for running docs/runbook.md verbatim on the local stand-ins (tests/integration/test_runbook.py).

`doctl serverless functions invoke dr/<fn> [-p key:value]...` runs the function in this process, through
`handle`, with the environment project.yml gives it from `./.env` (as `./scripts/deploy` would deploy
it), and prints its result as doctl does. `doctl serverless activations|triggers ...` have nothing to
show locally: it says so and succeeds. Anything else is refused, so a runbook command the stand-ins
cannot honour fails the test instead of passing silently.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

from drkit.cli import envfile
from drkit.cli.functions import RUNS
from drkit.platform import envvars
from drkit.platform.runtime import handle, without_unset

ROOT = Path(__file__).resolve().parents[2]


def invoke(function: str, params: dict[str, str]) -> int:
    values = {**envfile.read(Path(".env")), **{k: v for k, v in os.environ.items() if k.startswith("DRKIT_")}}
    env = without_unset(envvars.function_environment((ROOT / "project.yml").read_text(), function, values))
    result = handle(function, RUNS[function], params, None, env)
    print(json.dumps(result, indent=2, default=str))
    return 0 if result.get("ok") else 1


def main(argv: list[str]) -> int:
    if argv[:3] == ["serverless", "functions", "invoke"] and len(argv) >= 4 and argv[3].startswith("dr/"):
        params: dict[str, str] = {}
        rest = argv[4:]
        while rest:
            flag, *rest = rest
            if flag not in ("-p", "--param") or not rest:
                print(f"doctl stand-in: unsupported argument {flag!r}", file=sys.stderr)
                return 2
            key, _, value = rest.pop(0).partition(":")
            params[key] = value
        return invoke(argv[3][3:], params)
    if argv[:2] in (["serverless", "activations"], ["serverless", "triggers"]):
        print(f"(doctl stand-in: `doctl {' '.join(argv)}` has nothing to show on the local stand-ins)")
        return 0
    print(f"doctl stand-in: `doctl {' '.join(argv)}` is not something the runbook's stand-ins can run",
          file=sys.stderr)
    return 2


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
