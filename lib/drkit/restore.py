"""Stream a stored backup into a PostgreSQL database.

Spaces object -> size/SHA-256 check (against the manifest) -> age decrypt ->
zstd decompress -> `pg_restore` reading stdin. No temporary files. The
checksum is verified as the bytes arrive; a mismatch raises before the stream
ends cleanly, so pg_restore never sees a "complete" corrupt archive.
(restore-verify and the operator CLI build on this module.)
"""

from __future__ import annotations

import io
import subprocess
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import zstandard

from . import crypto, log, pg
from .catalog import Entry, read_manifest
from .config import DatabaseConfig
from .errors import CryptoError, DrkitError, IntegrityError, PgError
from .store import Store, VerifyingReader


@dataclass(frozen=True)
class RestoreResult:
    backup_id: str
    bytes_read: int
    bytes_restored: int
    duration_s: float
    pg_restore_version: str


class _PipeWriter(io.RawIOBase):
    """Writes into pg_restore's stdin; counts; turns a closed pipe into a PgError."""

    def __init__(self, proc: pg.Process):
        super().__init__()
        self.proc = proc
        self.count = 0

    def writable(self) -> bool:
        return True

    def write(self, b: Any) -> int:
        stdin = self.proc.proc.stdin
        assert stdin is not None
        try:
            stdin.write(b)
        except BrokenPipeError:
            raise PgError("pg_restore stopped reading its input", tool="pg_restore") from None
        self.count += len(b)
        return len(b)


def restore(store: Store, entry: Entry, identities: Sequence[Any], target: DatabaseConfig, dbname: str, *,
            extra_args: Sequence[str] = (), progress: Callable[[int], None] | None = None) -> RestoreResult:
    """Restore `entry` into database `dbname` on `target`'s server (it must exist and be empty)."""
    manifest = read_manifest(store, entry)
    tool = pg.tool_version("pg_restore")
    need = int(manifest.get("restore", {}).get("min_pg_restore_major", 0))
    if tool.major < need:
        raise PgError(f"pg_restore {tool.version} cannot read this archive; it needs {need} or newer", tool="pg_restore")
    t0 = time.monotonic()
    argv = [tool.path, "--no-password", "--exit-on-error", "--no-owner", *extra_args,
            "--dbname", pg.conninfo(target, dbname)]
    proc = pg.Process(argv, pg.child_env(target), stdin=subprocess.PIPE, tool="pg_restore")
    raw = store.open_read(entry.data_key)
    reader = VerifyingReader(raw, int(manifest["bytes_out"]), str(manifest["sha256"]))
    sink = _PipeWriter(proc)
    counted = _Progress(reader, progress) if progress else reader
    try:
        decompressor = zstandard.ZstdDecompressor().stream_writer(sink, closefd=False)  # type: ignore[arg-type]
        crypto.decrypt_stream(counted, decompressor, identities)
        decompressor.flush()  # type: ignore[no-untyped-call]
        assert proc.proc.stdin is not None
        proc.proc.stdin.close()
        code = proc.wait()
        proc.check(code)
    except (DrkitError, OSError, zstandard.ZstdError) as exc:
        proc.stop("restore aborted")
        proc.wait()
        if isinstance(exc, PgError) and proc.stderr_tail:
            raise PgError(f"{exc}: {proc.stderr_tail.splitlines()[-1]}", tool="pg_restore",
                          stderr_tail=proc.stderr_tail) from None
        if isinstance(exc, (IntegrityError, CryptoError, PgError)):
            raise
        raise IntegrityError(f"backup stream is not a valid zstd/pg_dump archive: {exc}") from None
    finally:
        raw.close()
    duration = round(time.monotonic() - t0, 3)
    log.info("restore finished", backup_id=entry.id, bytes_read=reader.size, duration_s=duration)
    return RestoreResult(entry.id, reader.size, sink.count, duration, tool.version)


class _Progress(io.RawIOBase):
    def __init__(self, inner: Any, callback: Callable[[int], None]):
        super().__init__()
        self.inner = inner
        self.callback = callback

    def readable(self) -> bool:
        return True

    def readinto(self, b: Any) -> int:
        n = int(self.inner.readinto(b))
        if n:
            self.callback(n)
        return n
