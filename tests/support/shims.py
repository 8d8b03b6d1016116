"""Wrappers around the vendored pg_dump that misbehave on purpose."""

from __future__ import annotations

import os
import stat
import sys
from pathlib import Path

KILL_AFTER = '''#!{python}
# Runs the real pg_dump, passes through N bytes of its output, then dies by SIGKILL.
import os, signal, subprocess, sys
if "--version" in sys.argv:
    os.execv({real!r}, [{real!r}, "--version"])
real = subprocess.Popen([{real!r}] + sys.argv[1:], stdout=subprocess.PIPE)
left = {limit}
while left > 0:
    chunk = real.stdout.read(min(65536, left))
    if not chunk:
        break
    os.write(1, chunk)
    left -= len(chunk)
real.kill()
os.kill(os.getpid(), signal.SIGKILL)
'''

SLOW_START = '''#!{python}
# Sleeps before becoming the real pg_dump (for deadline tests).
import os, sys, time
if "--version" not in sys.argv:
    time.sleep({delay})
os.execv({real!r}, [{real!r}] + sys.argv[1:])
'''


def make_shim(directory: Path, real_bin: Path, template: str, **values: object) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    shim = directory / "pg_dump"
    shim.write_text(template.format(python=sys.executable, real=str(real_bin / "pg_dump"), **values))
    shim.chmod(shim.stat().st_mode | stat.S_IEXEC | stat.S_IXGRP | stat.S_IXOTH)
    # pg_restore stays the real one
    restore = directory / "pg_restore"
    if not restore.exists():
        os.symlink(real_bin / "pg_restore", restore)
    return shim
