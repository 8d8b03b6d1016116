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
import posixpath
import shutil
import tarfile
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

import zstandard

from drkit import crypto
from drkit.deadline import Deadline
from drkit.errors import ConfigError, CryptoError, DeadlineExceeded, DrkitError, IntegrityError

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
            crypto.encrypt_stream(self._reader, sink, recipients)
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


# -- reading -----------------------------------------------------------------------------------

@dataclass
class ExtractResult:
    files: int = 0
    bytes: int = 0
    skipped: list[str] = field(default_factory=list)  # incomplete or not selected


def read_tar(ciphertext: Any, identities: Sequence[Any], consume: Callable[[tarfile.TarFile], None], *,
             explain: Callable[[], None] | None = None) -> None:
    """Decrypt and decompress `ciphertext` in a thread; hand the tar stream to `consume`.

    Returns only when the whole archive was read and authenticated (age's last chunk, and the
    object's size and SHA-256 when `ciphertext` is a store.VerifyingReader); raises otherwise.
    Whatever `consume` did must be treated as untrusted until this returns.
    `explain`: called after a decryption failure to tell tampering from a wrong identity.
    """
    read_fd, write_fd = os.pipe()
    errors: list[BaseException] = []

    def decrypt() -> None:
        with os.fdopen(write_fd, "wb") as pipe_out:
            try:
                decompressor = zstandard.ZstdDecompressor().stream_writer(pipe_out, closefd=False)
                crypto.decrypt_stream(ciphertext, decompressor, identities)
                decompressor.flush()  # type: ignore[no-untyped-call]
            except CryptoError as exc:
                errors.append(exc)
                if explain is not None:
                    try:
                        explain()
                    except BaseException as better:  # noqa: BLE001
                        errors[-1] = better
            except zstandard.ZstdError as exc:
                errors.append(IntegrityError(f"the archive is not a valid zstd stream after decryption: {exc}"))
            except BrokenPipeError:
                pass  # the reader stopped: its error is the one to report
            except BaseException as exc:  # noqa: BLE001
                errors.append(exc)

    thread = threading.Thread(target=decrypt, name="drkit-archive-decrypt", daemon=True)
    thread.start()
    try:
        with os.fdopen(read_fd, "rb") as pipe_in:
            try:
                with tarfile.open(fileobj=pipe_in, mode="r|") as tar:
                    consume(tar)
                while pipe_in.read(CHUNK):  # to the end: the last chunk's authentication and the checksum
                    pass
            except tarfile.TarError as exc:
                thread.join()
                if errors:
                    raise errors[0] from None
                raise IntegrityError(f"the archive is not a valid tar stream: {exc}") from None
            except BaseException:
                if errors:  # the decryptor failed first: its error explains the reader's
                    raise errors[0] from None
                raise
    finally:
        thread.join(10)
    if errors:
        raise errors[0]


def extract(ciphertext: Any, manifest_files: Iterable[dict[str, Any]], identities: Sequence[Any], dest: Path, *,
            only: Sequence[str] = (), explain: Callable[[], None] | None = None) -> ExtractResult:
    """Decrypt and unpack into `dest` (new or empty), checking every file against the manifest.

    `only`: path prefixes to extract (default: everything). Files go to a staging directory
    beside `dest`, moved into place only after the whole archive checked out.
    """
    dest = Path(dest)
    if dest.exists() and (not dest.is_dir() or any(dest.iterdir())):
        raise ConfigError(f"{dest} exists and is not an empty directory: extract into a new or empty directory")
    expected = {f["path"]: f for f in manifest_files}
    wanted = [p.strip("/") for p in only if p.strip("/")]
    dest.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(dest.parent / f".{dest.name}.drkit-extract-{os.getpid()}")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(mode=0o700)
    result = ExtractResult()
    seen: set[str] = set()

    def consume(tar: tarfile.TarFile) -> None:
        for member in tar:
            _extract_member(tar, member, expected, wanted, staging, seen, result)

    try:
        read_tar(ciphertext, identities, consume, explain=explain)
        missing = [p for p, f in expected.items() if p not in seen and not f.get("incomplete")
                   and (not wanted or _selected(p, wanted))]
        if missing:
            raise IntegrityError(f"{len(missing)} file(s) listed in the manifest are not in the archive "
                                 f"(first: {missing[0]})")
        if wanted and not any(_selected(p, wanted) for p in seen):
            raise ConfigError(f"no file in this backup is under {', '.join(wanted)}")
        for folder in [p for p in staging.rglob("*") if p.is_dir() and not p.is_symlink()]:
            folder.chmod(0o700)  # parents made on the way down took the umask's mode
        if dest.exists():
            dest.rmdir()
        os.replace(staging, dest)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return result


def _selected(path: str, wanted: Sequence[str]) -> bool:
    return any(path == w or path.startswith(w + "/") for w in wanted)


def _safe_target(member: tarfile.TarInfo, staging: Path) -> Path:
    """Where `member` may go inside `staging`, or IntegrityError.

    The checks of tarfile's `data` filter, written out: that filter only exists from
    Python 3.11.4, and neither CI's nor the runtime's 3.11 patch level is guaranteed.
    Regular files and symlinks only; relative names without `..`; a symlink's target
    stays inside; nothing is written through a symlink extracted earlier.
    """
    try:
        name = safe_path(member.name)
    except SourceError:
        raise IntegrityError(f"refusing an unsafe archive entry {member.name[:200]!r}") from None
    if not (member.isfile() or member.issym()):
        raise IntegrityError(f"{name}: unexpected archive entry type")
    if member.issym():
        link = PurePosixPath(member.linkname)
        joined = posixpath.normpath(posixpath.join(posixpath.dirname(name), member.linkname))
        if link.is_absolute() or joined == ".." or joined.startswith("../"):
            raise IntegrityError(f"refusing symlink {name} -> {member.linkname[:200]}: it points outside")
    target = staging / name
    root = os.path.realpath(staging)
    parent = os.path.realpath(target.parent) if target.parent.exists() else None
    if parent is not None and parent != root and not parent.startswith(root + os.sep):
        raise IntegrityError(f"refusing {name}: a directory on its path leads outside")
    if target.is_symlink():
        raise IntegrityError(f"refusing {name}: it would replace a symlink")
    return target


def _extract_member(tar: tarfile.TarFile, member: tarfile.TarInfo, expected: dict[str, dict[str, Any]],
                    wanted: Sequence[str], staging: Path, seen: set[str], result: ExtractResult) -> None:
    if member.name not in expected:
        raise IntegrityError(f"the archive holds {member.name[:200]!r}, which its manifest does not list")
    info = expected[member.name]
    seen.add(member.name)
    if info.get("incomplete") or (wanted and not _selected(member.name, wanted)):
        result.skipped.append(member.name)
        return
    target = _safe_target(member, staging)
    target.parent.mkdir(parents=True, exist_ok=True)  # made 0700 before the staging folder is moved into place
    if member.issym():
        if info.get("type") != "symlink" or info.get("target") != member.linkname:
            raise IntegrityError(f"{member.name}: symlink does not match the manifest")
        os.symlink(member.linkname, target)
        result.files += 1
        return
    if not member.isfile():
        raise IntegrityError(f"{member.name}: unexpected archive entry type")
    source = tar.extractfile(member)
    assert source is not None
    digest = hashlib.sha256()
    size = 0
    with os.fdopen(os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600), "wb") as out:
        while chunk := source.read(CHUNK):
            digest.update(chunk)
            out.write(chunk)
            size += len(chunk)
    if size != int(info["size"]) or digest.hexdigest() != info["sha256"]:
        raise IntegrityError(f"{member.name}: content does not match the manifest (size or SHA-256)")
    os.chmod(target, 0o700 if (member.mode or 0) & 0o100 else 0o600)  # yours only: it may hold secrets
    result.files += 1
    result.bytes += size
