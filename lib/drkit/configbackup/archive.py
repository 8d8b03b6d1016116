"""Config archives: a tar stream, zstd-compressed, age-encrypted, written and read without staging.

Writing (`ArchiveWriter`): tar headers and file data are produced in the
caller's thread and pass through zstd into a pipe; a second thread runs
`pyrage.encrypt_io` from the pipe into the Spaces upload. Memory stays bounded
(a pipe buffer, zstd's window, the upload's parts) whatever the archive size:
nothing is held whole, nothing goes to /tmp (a tmpfs that counts against the
function's memory).

A tar header carries the file's size, so a file whose source fails half-way
(a dropped connection) cannot be taken back: its remaining bytes are written
as zeros to keep the tar valid and the file is listed `incomplete` in the
manifest; `extract` skips it. Every other file is listed with its size and
SHA-256, computed while it streams.

Reading (`extract`): Spaces object -> size/SHA-256 check against the
manifest -> age (authenticates every 64 KiB chunk) -> zstd -> tar, into a
staging directory beside the destination. Every file is checked against the
manifest; only when all of it checked out is the staging directory moved into
place. A tampered, truncated or foreign archive leaves nothing behind.
"""

from __future__ import annotations

import hashlib
import os
import tarfile
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import PurePosixPath
from typing import Any

import zstandard

from drkit.core.deadline import Deadline
from drkit.core.errors import DeadlineExceeded, DrkitError
from drkit.crypto import encryption

CHUNK = 1 << 20
RECORD = tarfile.RECORDSIZE
STREAM_MARGIN_S = 30.0  # a source stream is cut this long before the deadline: finishing the archive must fit


class SourceError(DrkitError):
    """One source failed (unreachable, rejected token, bad answer). The run goes on without it."""


class ArchiveBroken(DrkitError):
    """The archive itself (compression, encryption, upload) failed: nothing of this run can be kept."""


def safe_path(path: str) -> str:
    """A relative POSIX path inside the archive, or SourceError (no absolute paths, no `..`)."""
    p = PurePosixPath(path)
    parts = [x for x in p.parts if x not in ("", ".")]
    if p.is_absolute() or not parts or any(x == ".." for x in parts) or any("\x00" in x for x in parts):
        raise SourceError(f"unsafe path {path[:200]!r} in a source")
    return "/".join(parts)


@dataclass
class FileEntry:
    path: str
    size: int
    sha256: str
    source: str
    kind: str = "file"  # file | symlink
    target: str | None = None  # symlink target
    incomplete: bool = False

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"path": self.path, "size": self.size, "sha256": self.sha256, "source": self.source}
        if self.kind != "file":
            out["type"] = self.kind
            out["target"] = self.target
        if self.incomplete:
            out["incomplete"] = True
        return out


class _PipeSink:
    """The write end of the pipe to the encryptor; a dead encryptor surfaces as its own error."""

    def __init__(self, fd: int, writer: ArchiveWriter):
        self.f = os.fdopen(fd, "wb", buffering=0)
        self.writer = writer

    def write(self, data: Any) -> int:
        view = memoryview(data)
        try:
            while view:
                n = self.f.write(view)
                view = view[n or 0:]
        except BrokenPipeError:
            self.writer.raise_encryptor_error()
            raise
        return len(data)

    def flush(self) -> None:
        pass

    def close(self) -> None:
        if not self.f.closed:
            try:
                self.f.close()
            except BrokenPipeError:
                pass


class ArchiveWriter:
    """Push-style tar writer into `sink` (any `.write`), through zstd and age.

    Use as a context manager; call `finish()` on success. Leaving the block
    without `finish()` stops the encryptor; the caller then aborts the upload.
    """

    def __init__(self, sink: Any, recipients: Sequence[Any], *, zstd_level: int = 3,
                 deadline: Deadline | None = None, mtime: float | None = None):
        self.deadline = deadline or Deadline(None)
        self.mtime = int(mtime if mtime is not None else time.time())
        self.files: list[FileEntry] = []
        self._paths: set[str] = set()
        self.bytes_in = 0  # tar bytes (before compression)
        self._error: BaseException | None = None
        self.broken: BaseException | None = None  # set once the archive itself failed: the run must stop
        read_fd, write_fd = os.pipe()
        self._reader = os.fdopen(read_fd, "rb", buffering=0)
        self._pipe = _PipeSink(write_fd, self)
        self._thread = threading.Thread(target=self._encrypt, args=(sink, list(recipients)),
                                        name="drkit-archive-encrypt", daemon=True)
        self._thread.start()
        self._zstd = zstandard.ZstdCompressor(level=zstd_level).stream_writer(self._pipe, closefd=False)  # type: ignore[arg-type]
        self._closed = False

    def _encrypt(self, sink: Any, recipients: list[Any]) -> None:
        try:
            encryption.encrypt_stream(self._reader, sink, recipients)
        except BaseException as exc:  # noqa: BLE001 - handed to the producer thread
            self._error = exc
        finally:
            self._reader.close()  # the producer now gets EPIPE instead of blocking forever

    def raise_encryptor_error(self) -> None:
        self._thread.join(5)
        if self._error is not None:
            raise self._error

    def _write(self, data: bytes) -> None:
        if self.broken is not None:
            raise self.broken
        try:
            self._zstd.write(data)
        except BaseException as exc:  # noqa: BLE001 - recorded, then re-raised
            self.broken = exc if isinstance(exc, DrkitError) else ArchiveBroken(
                f"writing the archive failed: {type(exc).__name__}: {exc}")
            raise self.broken from None
        self.bytes_in += len(data)

    def _header(self, info: tarfile.TarInfo) -> None:
        if info.name in self._paths:  # checked before anything is written: the tar stays valid
            raise SourceError(f"{info.name}: a source produced this path twice")
        self._paths.add(info.name)
        info.mtime = self.mtime
        info.uname = info.gname = "drkit"
        info.uid = info.gid = 0
        self._write(info.tobuf(tarfile.PAX_FORMAT, "utf-8", "surrogateescape"))

    def add_bytes(self, path: str, data: bytes, source: str, mode: int = 0o644) -> FileEntry:
        info = tarfile.TarInfo(safe_path(path))
        info.size = len(data)
        info.mode = mode
        self._header(info)
        self._write(data)
        self._pad(len(data))
        entry = FileEntry(info.name, len(data), hashlib.sha256(data).hexdigest(), source)
        self.files.append(entry)
        return entry

    def add_stream(self, path: str, size: int, reader: Any, source: str, mode: int = 0o644) -> FileEntry:
        """Copy exactly `size` bytes from `reader`. A reader failure (or a short read) marks the file
        incomplete, pads it with zeros and raises SourceError; a failure of the archive itself propagates."""
        info = tarfile.TarInfo(safe_path(path))
        info.size = size
        info.mode = 0o755 if mode & 0o111 else 0o644
        self._header(info)
        digest = hashlib.sha256()
        copied = 0
        failure: BaseException | None = None
        while copied < size:
            if self.deadline.remaining() < STREAM_MARGIN_S:
                failure = DeadlineExceeded(f"stopped reading {info.name} at {copied} of {size} bytes: the function "
                                           "deadline is near")
                break
            try:
                chunk = reader.read(min(CHUNK, size - copied))
            except Exception as exc:  # noqa: BLE001 - the source's failure, not the archive's
                failure = exc
                break
            if not chunk:
                failure = SourceError(f"{info.name}: the source ended after {copied} of {size} bytes")
                break
            digest.update(chunk)
            self._write(chunk)
            copied += len(chunk)
        if failure is not None:
            zeros = bytes(min(CHUNK, size - copied))
            while copied < size:
                n = min(len(zeros), size - copied)
                self._write(zeros[:n])
                copied += n
        self._pad(size)
        entry = FileEntry(info.name, size, digest.hexdigest(), source, incomplete=failure is not None)
        self.files.append(entry)
        if failure is not None:
            if isinstance(failure, DrkitError):
                raise failure
            raise SourceError(f"{info.name}: reading failed after part of it was archived: "
                              f"{type(failure).__name__}: {str(failure)[:200]}") from None
        return entry

    def add_symlink(self, path: str, target: str, source: str) -> FileEntry:
        info = tarfile.TarInfo(safe_path(path))
        info.type = tarfile.SYMTYPE
        info.linkname = target
        info.mode = 0o777
        self._header(info)
        entry = FileEntry(info.name, 0, hashlib.sha256(target.encode()).hexdigest(), source, "symlink", target)
        self.files.append(entry)
        return entry

    def _pad(self, size: int) -> None:
        rest = (-size) % tarfile.BLOCKSIZE
        if rest:
            self._write(bytes(rest))

    def finish(self) -> None:
        """End the tar (two zero blocks, padded to a record), flush zstd, wait for the encryptor."""
        end = bytes(2 * tarfile.BLOCKSIZE)
        self._write(end)
        self._write(bytes((-self.bytes_in) % RECORD))
        self._zstd.flush(zstandard.FLUSH_FRAME)
        self._close()
        if self._error is not None:
            raise self._error

    def _close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._pipe.close()
        self._thread.join()

    def __enter__(self) -> ArchiveWriter:
        return self

    def __exit__(self, *exc: Any) -> None:
        self._close()
