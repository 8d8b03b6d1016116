"""Reading a config archive back: decrypt, verify every file against the manifest, extract safely (no traversal)."""

from __future__ import annotations

import hashlib
import os
import posixpath
import shutil
import tarfile
import threading
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

import zstandard

from drkit.configbackup.archive import CHUNK, SourceError, safe_path
from drkit.core.errors import ConfigError, CryptoError, IntegrityError
from drkit.crypto import encryption

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
        try:
            _decrypt()
        except BrokenPipeError:  # closing flushed into a reader that stopped: its error is the one to report
            pass

    def _decrypt() -> None:
        with os.fdopen(write_fd, "wb") as pipe_out:
            try:
                decompressor = zstandard.ZstdDecompressor().stream_writer(pipe_out, closefd=False)
                encryption.decrypt_stream(ciphertext, decompressor, identities)
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
