"""A running PostgreSQL tool: argv without secrets, a bounded redacted stderr tail, and `start_dump`."""

from __future__ import annotations

import collections
import re
import subprocess
import threading
from typing import IO

from drkit.core import log
from drkit.core.errors import PgError
from drkit.platform.databases import DatabaseConfig
from drkit.postgres.binaries import tool_version
from drkit.postgres.connection import child_env, conninfo


class Process:
    """A pg tool child process: stdout as a raw pipe, stderr kept as a redacted tail."""

    def __init__(self, argv: list[str], env: dict[str, str], *, stdin: IO[bytes] | int | None = None,
                 stdout: IO[bytes] | int | None = subprocess.PIPE, tool: str):
        self.tool = tool
        self.argv = argv
        self._tail: collections.deque[str] = collections.deque(maxlen=40)
        self.killed_reason: str | None = None
        try:
            self.proc = subprocess.Popen(
                argv, stdin=stdin, stdout=stdout, stderr=subprocess.PIPE, env=env, bufsize=0
            )
        except OSError as exc:
            raise PgError(f"cannot start {argv[0]}: {exc}", tool=tool) from None
        self._stderr_thread = threading.Thread(target=self._drain_stderr, daemon=True, name=f"{tool}-stderr")
        self._stderr_thread.start()

    @property
    def stdout(self) -> IO[bytes]:
        assert self.proc.stdout is not None
        return self.proc.stdout

    def _drain_stderr(self) -> None:
        assert self.proc.stderr is not None
        for raw in iter(self.proc.stderr.readline, b""):
            line = log.redact(raw.decode("utf-8", "replace").rstrip())
            if line:
                self._tail.append(line)

    @property
    def stderr_tail(self) -> str:
        return "\n".join(self._tail)

    def stop(self, reason: str, grace: float = 5.0) -> None:
        """Terminate, then kill after `grace` seconds. Safe to call more than once."""
        if self.proc.poll() is None:
            self.killed_reason = self.killed_reason or reason
            self.proc.terminate()
            try:
                self.proc.wait(grace)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def wait(self, timeout: float | None = None) -> int:
        try:
            code = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.stop("did not exit")
            code = self.proc.returncode
        self._stderr_thread.join(timeout=5)
        for pipe in (self.proc.stdin, self.proc.stdout, self.proc.stderr):
            if pipe is not None:
                try:
                    pipe.close()
                except OSError:  # a stdin whose reader died
                    pass
        return code

    def check(self, code: int) -> None:
        if code != 0:
            why = f" ({self.killed_reason})" if self.killed_reason else ""
            raise PgError(f"{self.tool} exited with status {code}{why}: {error_text(self.stderr_tail)}", tool=self.tool,
                          exit_code=code, stderr_tail=self.stderr_tail)


def error_text(tail: str) -> str:
    """A tool's error as the operator needs it: from its ERROR (or FATAL) line on, with DETAIL and HINT,
    not only the last line (which is often the HINT)."""
    lines = tail.splitlines()
    if not lines:
        return "no error output"
    first = next((i for i, ln in enumerate(lines) if "ERROR:" in ln or "FATAL:" in ln), len(lines) - 1)
    text = " ".join(" ".join(ln.split()) for ln in lines[first:first + 6])
    return re.sub(r"^psql:<stdin>:\d+: ", "", text)


def start_dump(db: DatabaseConfig, snapshot: str | None) -> Process:
    """pg_dump --format=custom, uncompressed (drkit compresses once, with zstd), to stdout."""
    tool = tool_version("pg_dump")
    argv = [tool.path, "--format=custom", "--compress=0", "--no-password"]
    if snapshot:
        argv.append(f"--snapshot={snapshot}")
    argv += list(db.pg_dump_args)
    argv += ["--dbname", conninfo(db)]
    log.debug("starting pg_dump", argv=argv[:-1], database=db.name)
    return Process(argv, child_env(db), tool="pg_dump")
