"""Stream a stored backup into a PostgreSQL database, strictly.

Spaces object -> size/SHA-256 check against the manifest -> age decrypt ->
zstd decompress -> the restore tool. No temporary files. age authenticates
every 64 KiB chunk, so corrupted ciphertext never reaches PostgreSQL; after a
decryption failure the rest of the object is read so that the report can say
whether the stored bytes differ from the manifest (storage corruption) or the
identity is wrong.

Targets: PostgreSQL 17+ get `pg_restore --exit-on-error --single-transaction`
directly. Older targets reject a session setting pg_restore 18 always sends,
so they get `pg_restore -f -` (a script), filtered of exactly those
statements outside COPY data, into `psql -v ON_ERROR_STOP=1
--single-transaction` (see pg.UNKNOWN_BEFORE). Either way no error is ignored.
(restore-verify and `drkit restore` build on this module.)
"""

from __future__ import annotations

import io
import subprocess
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import zstandard

from . import crypto, log, pg
from .catalog import Entry, read_manifest
from .config import DatabaseConfig
from .deadline import Deadline
from .errors import CryptoError, DeadlineExceeded, DrkitError, IntegrityError, PgError
from .store import Store, VerifyingReader

ABORT_MARGIN_S = 20.0


@dataclass(frozen=True)
class RestoreResult:
    backup_id: str
    bytes_read: int
    bytes_restored: int
    duration_s: float
    pg_restore_version: str
    target_version_num: int
    strategy: str

    @property
    def throughput_mb_s(self) -> float:
        return round(self.bytes_restored / 1e6 / max(self.duration_s, 1e-3), 1)


class _PipeWriter(io.RawIOBase):
    """Writes into a child's stdin; counts; a closed pipe becomes a PgError naming the child."""

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
            raise PgError(f"{self.proc.tool} stopped reading its input", tool=self.proc.tool) from None
        self.count += len(b)
        return len(b)


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


def _filter_pump(source: pg.Process, dest: pg.Process, drop: frozenset[bytes], errors: list[BaseException]) -> None:
    """Copy the script from pg_restore to psql, dropping statements the target rejects."""
    stdin = dest.proc.stdin
    assert stdin is not None
    try:
        reader = io.BufferedReader(source.stdout, buffer_size=1 << 20)  # type: ignore[type-var]
        for line in pg.filter_script(iter(reader.readline, b""), drop):
            stdin.write(line)
    except BrokenPipeError:
        errors.append(PgError("psql stopped reading the restore script", tool="psql"))
    except BaseException as exc:  # noqa: BLE001 - handed to the main thread
        errors.append(exc)
    finally:
        try:
            stdin.close()
        except OSError:
            pass


def _start(target: DatabaseConfig, dbname: str, strategy: str, drop: frozenset[bytes], options: Sequence[str],
           pg_restore_args: Sequence[str], archive: str | None) -> tuple[list[pg.Process], threading.Thread | None,
                                                                    list[BaseException]]:
    """The restore processes: pg_restore alone, or pg_restore -f - | filter | psql for older targets.

    `archive`: a local file (pg_restore reads it; no stdin), or None (the archive arrives on stdin).
    """
    tool = pg.tool_version("pg_restore")
    env = pg.child_env(target)
    conninfo = pg.conninfo(target, dbname)
    stdin = subprocess.PIPE if archive is None else None
    source = [archive] if archive else []
    errors: list[BaseException] = []
    if strategy == "direct":
        proc = pg.Process([tool.path, "--no-password", "--exit-on-error", *pg_restore_args, *options,
                           "--dbname", conninfo, *source], env, stdin=stdin, stdout=subprocess.DEVNULL,
                          tool="pg_restore")
        return [proc], None, errors
    psql = pg.tool_version("psql")
    script = pg.Process([tool.path, "--file=-", *options, *source], env, stdin=stdin, tool="pg_restore")
    sink = pg.Process([psql.path, "--no-psqlrc", "--quiet", "--no-password", "-v", "ON_ERROR_STOP=1",
                       "--single-transaction", "--dbname", conninfo], env, stdin=subprocess.PIPE,
                      stdout=subprocess.DEVNULL, tool="psql")
    pump = threading.Thread(target=_filter_pump, args=(script, sink, drop, errors), daemon=True)
    pump.start()
    return [script, sink], pump, errors


def restore(store: Store, entry: Entry, identities: Sequence[Any], target: DatabaseConfig, dbname: str, *,
            manifest: dict[str, Any] | None = None, deadline: Deadline | None = None,
            options: Sequence[str] = ("--no-owner",), progress: Callable[[int], None] | None = None) -> RestoreResult:
    """Restore `entry` into the existing, empty database `dbname` on `target`'s server."""
    manifest = manifest or read_manifest(store, entry)
    deadline = deadline or Deadline(None)
    tool = pg.tool_version("pg_restore")
    need = int(manifest.get("restore", {}).get("min_pg_restore_major", 0))
    if tool.major < need:
        raise PgError(f"pg_restore {tool.version} cannot read this archive; it needs {need} or newer", tool="pg_restore")
    target_num = pg.server_version_num(target, dbname)
    strategy, drop = pg.restore_strategy(target_num)
    procs, pump, pump_errors = _start(target, dbname, strategy, drop, options, ["--single-transaction"], None)
    log.info("restore starting", backup_id=entry.id, target=target.display, database=dbname,
             target_version=target_num, strategy=strategy)

    timed_out = threading.Event()

    def on_deadline() -> None:
        timed_out.set()
        for p in procs:
            p.stop("deadline reached")

    watchdog = None
    if deadline.remaining() != float("inf"):
        watchdog = threading.Timer(max(0.0, deadline.remaining() - ABORT_MARGIN_S), on_deadline)
        watchdog.daemon = True
        watchdog.start()

    t0 = time.monotonic()
    raw = store.open_read(entry.data_key)
    reader = VerifyingReader(raw, int(manifest["bytes_out"]), str(manifest["sha256"]))
    sink = _PipeWriter(procs[0])
    source: Any = _Progress(reader, progress) if progress else reader
    try:
        try:
            decompressor = zstandard.ZstdDecompressor().stream_writer(sink, closefd=False)  # type: ignore[arg-type]
            crypto.decrypt_stream(source, decompressor, identities)
            decompressor.flush()  # type: ignore[no-untyped-call]
        except CryptoError:
            explain_crypto_failure(reader)
            raise
        except zstandard.ZstdError as exc:
            raise IntegrityError(f"backup is not a valid zstd stream after decryption: {exc}") from None
        first_stdin = procs[0].proc.stdin
        assert first_stdin is not None
        first_stdin.close()
        if pump is not None:
            pump.join()  # ends at pg_restore's EOF (or psql's broken pipe); only then close pipes
        codes = [p.wait() for p in procs]
        if timed_out.is_set():
            raise DeadlineExceeded(f"restore stopped {ABORT_MARGIN_S:.0f}s before the function deadline "
                                   f"after {reader.size / 1e6:.0f} MB")
        for p, code in zip(procs, codes, strict=True):
            p.check(code)
        if pump_errors:
            raise pump_errors[0]
    except BaseException as exc:
        for p in procs:
            p.stop("restore aborted")
        if pump is not None:
            pump.join(10)
        for p in procs:
            p.wait()
        if timed_out.is_set() and not isinstance(exc, DeadlineExceeded):
            raise DeadlineExceeded(f"restore stopped {ABORT_MARGIN_S:.0f}s before the function deadline") from None
        if isinstance(exc, PgError):
            failing = next((p for p in procs if p.proc.returncode not in (0, None) and p.stderr_tail), None)
            if failing is not None and exc.tool != failing.tool:
                raise PgError(f"{failing.tool} failed: {failing.stderr_tail.splitlines()[-1]}", tool=failing.tool,
                              stderr_tail=failing.stderr_tail) from None
        if isinstance(exc, (DrkitError, KeyboardInterrupt)):
            raise
        raise PgError(f"restore failed: {type(exc).__name__}: {exc}") from None
    finally:
        if watchdog is not None:
            watchdog.cancel()
        raw.close()
    duration = round(time.monotonic() - t0, 3)
    log.info("restore finished", backup_id=entry.id, bytes_read=reader.size, duration_s=duration)
    return RestoreResult(entry.id, reader.size, sink.count, duration, tool.version, target_num, strategy)


def explain_crypto_failure(reader: VerifyingReader, reached: str = "PostgreSQL") -> None:
    """After a decryption failure, read the rest: a checksum mismatch means corrupted storage."""
    try:
        while reader.read(1 << 20):
            pass
    except IntegrityError as exc:
        raise IntegrityError(f"{exc} (detected before any of it reached {reached})") from None
    raise CryptoError("decryption failed although the stored bytes match the manifest: "
                      "wrong age identity (DRKIT_AGE_IDENTITY) for this backup's recipients")


def download(store: Store, entry: Entry, identities: Sequence[Any], path: str, *,
             manifest: dict[str, Any] | None = None, progress: Callable[[int], None] | None = None) -> int:
    """Verify, decrypt and decompress a backup into a local pg_dump archive file (for `pg_restore --jobs`).

    Written to `<path>.partial` and renamed only when the checksum matched, so a
    file at `path` is always complete. Returns the archive's size.
    """
    import os

    manifest = manifest or read_manifest(store, entry)
    partial = f"{path}.partial"
    raw = store.open_read(entry.data_key)
    reader = VerifyingReader(raw, int(manifest["bytes_out"]), str(manifest["sha256"]))
    source: Any = _Progress(reader, progress) if progress else reader
    try:
        with open(partial, "wb") as f:
            decompressor = zstandard.ZstdDecompressor().stream_writer(f, closefd=False)
            try:
                crypto.decrypt_stream(source, decompressor, identities)
            except CryptoError:
                explain_crypto_failure(reader)
                raise
            decompressor.flush()  # type: ignore[no-untyped-call]
        os.replace(partial, path)
    except BaseException:
        if os.path.exists(partial):
            os.unlink(partial)
        raise
    finally:
        raw.close()
    return os.path.getsize(path)


def restore_file(path: str, target: DatabaseConfig, dbname: str, *, jobs: int = 4,
                 options: Sequence[str] = ("--no-owner",)) -> tuple[float, str]:
    """pg_restore a local archive: in parallel for PostgreSQL 17+, through psql (one job) for older targets."""
    strategy, drop = pg.restore_strategy(pg.server_version_num(target, dbname))
    t0 = time.monotonic()
    procs, pump, errors = _start(target, dbname, strategy, drop, options, [f"--jobs={jobs}"], path)
    if pump is not None:
        pump.join()
    codes = [p.wait() for p in procs]
    for p, code in sorted(zip(procs, codes, strict=True), key=lambda pc: pc[0].tool != "psql"):
        p.check(code)  # psql's error first: it names the failing statement
    if errors:
        raise errors[0]
    return round(time.monotonic() - t0, 3), strategy
