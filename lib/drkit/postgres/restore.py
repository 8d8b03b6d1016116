"""Stream a stored backup into a PostgreSQL database, strictly.

Spaces object -> size/SHA-256 check against the manifest -> age decrypt ->
zstd decompress -> the restore tool. No temporary files.

One commit point, decided by drkit, on every route (`_Script`): pg_restore
writes the archive as one transaction (`--single-transaction --file=-`: a
BEGIN, everything, large objects included, and a COMMIT), `script.Gate`
passes it to `psql -v ON_ERROR_STOP=1` but withholds the final COMMIT, and drkit
sends that COMMIT only when the whole object arrived, its size and SHA-256
matched the manifest, age authenticated every chunk, zstd ended its frame
cleanly and pg_restore exited 0. Anything else ends psql's session without
it, and PostgreSQL rolls everything back: a cut or tampered stream cannot
commit, even when the cut falls exactly at a row boundary. Targets older than
17 also lose the one session setting pg_restore 18 sends that they reject
(script.UNKNOWN_BEFORE), outside COPY data only.

After a decryption failure the rest of the object is read so that the report
can say whether the stored bytes differ from the manifest (storage corruption)
or the identity is wrong. (restore-verify and `drkit restore` build on this.)
"""

from __future__ import annotations

import io
import re
import subprocess
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import zstandard

from drkit.core import log
from drkit.core.deadline import Deadline
from drkit.core.errors import CryptoError, DeadlineExceeded, DrkitError, IntegrityError, PgError
from drkit.crypto import encryption
from drkit.platform.databases import DatabaseConfig
from drkit.postgres import binaries, connection, disarm, dump, hints, script
from drkit.postgres.placement import Placement
from drkit.storage.catalog import Entry
from drkit.storage.store import Store
from drkit.storage.transfer import VerifyingReader, explain_crypto_failure

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
    skipped: tuple[tuple[str, str], ...] = ()  # (entry, why) left out by a placement
    disarmed: disarm.Disarmed | None = None  # what was disarmed in the copy (None: --keep-jobs)

    @property
    def throughput_mb_s(self) -> float:
        return round(self.bytes_restored / 1e6 / max(self.duration_s, 1e-3), 1)


class _PipeWriter(io.RawIOBase):
    """Writes into a child's stdin; counts; a closed pipe becomes a PgError naming the child."""

    def __init__(self, proc: dump.Process):
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
            # the child stopped reading: why is in its exit status and stderr (a refused password, ...)
            try:
                code = self.proc.wait(timeout=10)
            except Exception as exc:  # noqa: BLE001 - it did not exit in time: the plain message below
                log.warning("a restore tool stopped reading and did not exit", tool=self.proc.tool, error=str(exc))
            else:
                try:
                    self.proc.check(code)
                except PgError as exc:
                    raise PgError(f"{self.proc.tool} stopped reading its input: {exc}", tool=self.proc.tool) from None
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


class _Unzstd(io.RawIOBase):
    """zstd decompression into `sink` that knows whether the frame ended (a cut stream does not)."""

    def __init__(self, sink: Any):
        super().__init__()
        self.sink = sink
        self.dobj = zstandard.ZstdDecompressor().decompressobj()

    def writable(self) -> bool:
        return True

    def write(self, b: Any) -> int:
        try:
            out = self.dobj.decompress(bytes(b))
        except zstandard.ZstdError as exc:
            raise IntegrityError(f"backup is not a valid zstd stream after decryption: {exc}") from None
        if out:
            self.sink.write(out)
        return len(b)

    def finish(self) -> None:
        if not self.dobj.eof:
            raise IntegrityError("the zstd stream ends before its frame does: the backup is truncated")
        if self.dobj.unused_data:
            raise IntegrityError("data follows the end of the zstd frame: the backup is not what was written")


def unpack(reader: VerifyingReader, source: Any, sink: Any, identities: Sequence[Any], *, note: str) -> None:
    """Decrypt and decompress the whole object into `sink`; return only when every upstream check passed:
    the object read to its end with the manifest's size and SHA-256, age authenticated every chunk, and
    zstd ended its frame. `note` says, in a failure, what became of what was already written."""
    unzstd = _Unzstd(sink)
    try:
        try:
            encryption.decrypt_stream(source, unzstd, identities)
        except CryptoError as exc:
            explain_crypto_failure(reader, note, exc)
            raise
        while reader.read(1 << 16):  # whatever follows age's last chunk is part of the object too
            pass
        if not reader.verified:
            raise IntegrityError("the object was not read to its end")
        unzstd.finish()
    except IntegrityError as exc:  # say what became of what was already written
        raise exc if note in str(exc) else IntegrityError(f"{exc} ({note})") from None


class _Script:
    """`pg_restore --single-transaction --file=-` | gate | `psql`: one transaction that only drkit commits."""

    def __init__(self, target: DatabaseConfig, dbname: str, drop: frozenset[bytes], options: Sequence[str],
                 archive: str | None, placement: Placement | None = None, postamble: Sequence[str] = ()):
        self.postamble = [f"{stmt}\n".encode() for stmt in postamble]
        tool, psql = binaries.tool_version("pg_restore"), binaries.tool_version("psql")
        env = connection.child_env(target)
        self.gate = script.Gate(drop, placement.decide if placement else None,
                                placement.preamble() if placement else ())
        self.script = dump.Process([tool.path, "--single-transaction", "--file=-", *options, *([archive] if archive else [])],
                                 env, stdin=subprocess.PIPE if archive is None else None, tool="pg_restore")
        self.psql = dump.Process([psql.path, "--no-psqlrc", "--quiet", "--no-password", "-v", "ON_ERROR_STOP=1", "--file=-",
                                "--dbname", connection.conninfo(target, dbname)], env, stdin=subprocess.PIPE,
                               stdout=subprocess.DEVNULL, tool="psql")
        self.errors: list[BaseException] = []
        self.complete = threading.Event()
        self.pump = threading.Thread(target=self._pump, daemon=True, name="restore-gate")
        self.pump.start()

    @property
    def procs(self) -> list[dump.Process]:
        return [self.script, self.psql]

    def _pump(self) -> None:
        stdin = self.psql.proc.stdin
        assert stdin is not None
        try:
            reader = io.BufferedReader(self.script.stdout, buffer_size=1 << 20)  # type: ignore[type-var]
            for line in self.gate.run(iter(reader.readline, b"")):
                stdin.write(line)
            stdin.flush()
            self.complete.set()
        except BrokenPipeError:
            self.errors.append(PgError("psql stopped reading the restore script", tool="psql"))
            self.script.stop("psql stopped")  # nobody reads pg_restore any more: end it, so its writer sees it
        except BaseException as exc:  # noqa: BLE001 - handed to the main thread
            self.errors.append(exc)
            self.script.stop("restore script refused")

    def commit(self) -> None:
        """Called when everything upstream was verified: the script must be whole, then COMMIT."""
        if self.script.proc.stdin is not None:
            self.script.proc.stdin.close()
        self.pump.join()
        code = self.script.wait()
        if self.errors:
            raise self.errors[0]
        self.script.check(code)
        if not self.complete.is_set():
            raise PgError("the restore script did not arrive whole", tool="pg_restore")
        stdin = self.psql.proc.stdin
        assert stdin is not None
        try:
            for stmt in self.postamble:  # inside the transaction, after the whole archive, before the COMMIT
                stdin.write(stmt)
            stdin.write(script.COMMIT)
            stdin.close()
        except BrokenPipeError:
            raise PgError("psql ended before the COMMIT", tool="psql") from None
        self.psql.check(self.psql.wait())

    def abort(self, reason: str) -> None:
        """End psql's session first (PostgreSQL rolls the open transaction back), then pg_restore."""
        self.psql.stop(reason)
        self.script.stop(reason)
        self.pump.join(10)
        for p in self.procs:
            p.wait()

    def failure(self, exc: BaseException) -> BaseException:
        """The error to report: a PostgreSQL tool's own words where one failed first."""
        if isinstance(exc, PgError):
            failing = next((p for p in (self.psql, self.script)
                            if p.proc.returncode not in (0, None) and p.stderr_tail and not p.killed_reason), None)
            if failing is self.psql:
                text = dump.error_text(failing.stderr_tail)
                fix = hints.advice(failing.stderr_tail)
                return PgError(f"psql failed{self.where(failing.stderr_tail)}: {text}" + (f". Next: {fix}" if fix else ""),
                               tool="psql", stderr_tail=failing.stderr_tail)
            if failing is not None and exc.tool != failing.tool:
                return PgError(f"{failing.tool} failed: {dump.error_text(failing.stderr_tail)}", tool=failing.tool,
                               stderr_tail=failing.stderr_tail)
        return exc

    def where(self, tail: str) -> str:
        """` at script line N, in <entry>` for psql's `psql:<stdin>:N: ERROR:` (the statement that failed)."""
        m = re.search(r"psql:<stdin>:(\d+): (?:ERROR|FATAL)", tail)
        if not m:
            return ""
        entry = self.gate.entry_at(int(m.group(1)))
        return f" at script line {m.group(1)}" + (f", restoring {entry}" if entry else "")


NOT_COMMITTED = "nothing was committed: the restore transaction was rolled back"


def restore(store: Store, entry: Entry, identities: Sequence[Any], target: DatabaseConfig, dbname: str, *,
            manifest: dict[str, Any], deadline: Deadline | None = None,
            options: Sequence[str] = ("--no-owner",), progress: Callable[[int], None] | None = None,
            placement: Placement | None = None, keep_jobs: bool = False) -> RestoreResult:
    """Restore `entry` into the existing, empty database `dbname` on `target`'s server, in one transaction
    committed only after every check passed (see the module's docstring). `manifest`: as
    `catalog.read_manifest` returns it, its signature verified. Unless `keep_jobs`, the copy is disarmed
    inside that transaction (`disarm`)."""
    deadline = deadline or Deadline(None)
    tool = binaries.tool_version("pg_restore")
    need = int(manifest.get("restore", {}).get("min_pg_restore_major", 0))
    if tool.major < need:
        raise PgError(f"pg_restore {tool.version} cannot read this archive; it needs {need} or newer", tool="pg_restore")
    target_num = connection.server_version_num(target, dbname)
    _, drop = script.restore_strategy(target_num)
    run = _Script(target, dbname, drop, options, None, placement, () if keep_jobs else disarm.postamble())
    log.info("restore starting", backup_id=entry.id, target=target.display, database=dbname,
             target_version=target_num, strategy="script")

    timed_out = threading.Event()

    def on_deadline() -> None:
        timed_out.set()
        run.abort("deadline reached")

    watchdog = None
    if deadline.remaining() != float("inf"):
        watchdog = threading.Timer(max(0.0, deadline.remaining() - ABORT_MARGIN_S), on_deadline)
        watchdog.daemon = True
        watchdog.start()

    t0 = time.monotonic()
    raw = store.open_read(entry.data_key)
    reader = VerifyingReader(raw, int(manifest["bytes_out"]), str(manifest["sha256"]))
    sink = _PipeWriter(run.script)
    source: Any = _Progress(reader, progress) if progress else reader
    try:
        unpack(reader, source, sink, identities, note=NOT_COMMITTED)
        if watchdog is not None:
            watchdog.cancel()  # from here on the outcome is the COMMIT's, never a kill half-way through it
        if timed_out.is_set():
            raise DeadlineExceeded("deadline reached")
        run.commit()
    except BaseException as exc:
        run.abort("restore aborted")
        if timed_out.is_set():
            raise DeadlineExceeded(f"restore stopped {ABORT_MARGIN_S:.0f}s before the function deadline after "
                                   f"{reader.size / 1e6:.0f} MB; {NOT_COMMITTED}") from None
        exc = run.failure(exc)
        if isinstance(exc, PgError) and NOT_COMMITTED not in str(exc):
            raise PgError(f"{exc}; {NOT_COMMITTED}", tool=exc.tool, stderr_tail=exc.stderr_tail) from None
        if isinstance(exc, (DrkitError, KeyboardInterrupt, SystemExit)):
            raise exc from None
        raise PgError(f"restore failed: {type(exc).__name__}: {exc}; {NOT_COMMITTED}") from None
    finally:
        if watchdog is not None:
            watchdog.cancel()
        raw.close()
    duration = round(time.monotonic() - t0, 3)
    log.info("restore finished", backup_id=entry.id, bytes_read=reader.size, duration_s=duration)
    if run.gate.skipped:
        log.info("restore left entries out", skipped=len(run.gate.skipped))
    return RestoreResult(entry.id, reader.size, sink.count, duration, tool.version, target_num, "script",
                         tuple(run.gate.skipped), _disarmed(run, keep_jobs))


def _disarmed(run: _Script, keep_jobs: bool) -> disarm.Disarmed | None:
    if keep_jobs:
        return None
    from dataclasses import replace

    done = disarm.parse(run.psql.stderr_tail)
    if done is None:  # the block ran (ON_ERROR_STOP, and the COMMIT succeeded) but its NOTICE was not seen
        log.warning("the disarm block's counts were not in psql's output")
        done = disarm.Disarmed()
    mappings = sum(1 for _label, why in run.gate.skipped if why.startswith("a foreign server's login"))
    return replace(done, user_mappings=done.user_mappings + mappings)



def download(store: Store, entry: Entry, identities: Sequence[Any], path: str, *,
             manifest: dict[str, Any], progress: Callable[[int], None] | None = None) -> int:
    """Verify, decrypt and decompress a backup into a local pg_dump archive file (for `pg_restore --jobs`).

    Written (mode 0600: it is the database in plaintext) to `<path>.partial` and renamed only when every
    upstream check passed (see `unpack`), so a file at `path` is always complete. Returns its size.
    """
    import os

    partial = f"{path}.partial"
    raw = store.open_read(entry.data_key)
    reader = VerifyingReader(raw, int(manifest["bytes_out"]), str(manifest["sha256"]))
    source: Any = _Progress(reader, progress) if progress else reader
    try:
        if os.path.lexists(partial):
            os.unlink(partial)
        fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as f:
            unpack(reader, source, f, identities, note=f"nothing was restored; {path} was not written")
        os.replace(partial, path)
    except BaseException:
        if os.path.exists(partial):
            os.unlink(partial)
        raise
    finally:
        raw.close()
    return os.path.getsize(path)


def restore_file(path: str, target: DatabaseConfig, dbname: str, *, jobs: int = 4,
                 options: Sequence[str] = ("--no-owner",), keep_jobs: bool = False) -> tuple[float, str, int]:
    """pg_restore a verified local archive into the new, empty database `dbname`: (seconds, strategy, jobs used).

    PostgreSQL 17+ with jobs > 1: `pg_restore --jobs` straight into it (parallel, so not one transaction:
    callers restore into a scratch database and drop it on failure). Otherwise one transaction, through
    the same gate as the streamed restore.
    """
    target_num = connection.server_version_num(target, dbname)
    strategy, drop = script.restore_strategy(target_num)
    t0 = time.monotonic()
    if strategy == "direct" and jobs > 1:
        tool = binaries.tool_version("pg_restore")
        proc = dump.Process([tool.path, "--no-password", "--exit-on-error", f"--jobs={jobs}", *options, "--dbname",
                           connection.conninfo(target, dbname), path], connection.child_env(target), stdout=subprocess.DEVNULL,
                          tool="pg_restore")
        proc.check(proc.wait())
        if not keep_jobs:  # the scratch database is not swapped in yet: every row in it is the restore's
            with connection.connect(target, dbname) as conn:
                conn.execute(disarm.statement(own_transaction=False))
                conn.commit()
        return round(time.monotonic() - t0, 3), "parallel", jobs
    run = _Script(target, dbname, drop, options, path, None, () if keep_jobs else disarm.postamble())
    try:
        run.commit()
    except BaseException as exc:  # noqa: BLE001 - always re-raised, in the failing tool's words
        run.abort("restore aborted")
        raise run.failure(exc) from None
    return round(time.monotonic() - t0, 3), "script", 1
