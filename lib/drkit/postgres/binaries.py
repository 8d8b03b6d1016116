"""PostgreSQL client tools: where they are (DRKIT_PG_BIN, vendored pgbin, PATH), their versions, their environment.

* Binaries are resolved once: `DRKIT_PG_BIN`, then the function's vendored
  `pgbin/bin` (next to the `drkit` package in a built function), then PATH;
  on a noexec mount they run from an in-memory copy (`memfd_bin`).
* Child processes get argv lists (no shell), `LC_ALL=C`, no inherited PG*
  variables but libpq's TLS ones (`tool_env`).
* Client/server compatibility is data (`COMPATIBILITY`), checked before work."""

from __future__ import annotations

import functools
import os
import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from drkit.core import log
from drkit.core.errors import PgError

# pg_dump/pg_restore of major N read servers from 9.2 up to major N
# (PostgreSQL docs: "pg_dump can also dump from PostgreSQL servers older than
# its own version ... currently back to 9.2"; it refuses newer servers).
COMPATIBILITY: dict[str, dict[str, int]] = {
    "pg_dump": {"min_server_num": 90200},
}

VENDORED_BIN = Path(__file__).resolve().parents[2] / "pgbin" / "bin"  # <function>/drkit/postgres/binaries.py


def find_binary(name: str) -> Path:
    candidates: list[Path] = []
    env_dir = os.environ.get("DRKIT_PG_BIN", "").strip()
    if env_dir:
        candidates.append(Path(env_dir) / name)
    candidates.append(VENDORED_BIN / name)
    for c in candidates:
        if c.is_file() and noexec_mount(c):
            # Unpacked on a noexec mount: run the same bytes from memory instead.
            return memfd_bin(c.parent) / name
        if c.is_file() and not os.access(c, os.X_OK):
            # A zip may lose exec bits; the function's unpacked folder is writable.
            try:
                c.chmod(0o755)
            except OSError:
                log.warning("vendored binary is not executable", path=str(c))
        if c.is_file() and os.access(c, os.X_OK):
            return c
    found = shutil.which(name)
    if found:
        return Path(found)
    raise PgError(
        f"{name} not found (looked in DRKIT_PG_BIN, {VENDORED_BIN}, PATH): "
        "run scripts/build, which vendors PostgreSQL 18 client tools",
        tool=name,
    )


def noexec_mount(path: Path) -> bool:
    try:
        return bool(os.statvfs(path).f_flag & os.ST_NOEXEC)
    except OSError:
        return False


_MEMFD: dict[str, Path] = {}  # vendored bin dir -> its in-memory twin (kept for the process's life)
_MEMFD_LIB: list[str] = []    # LD_LIBRARY_PATH entries for tools started from memory
_MFD_EXEC = 0x0010            # MFD_EXEC (Linux 6.3+: say so explicitly; older kernels refuse the flag)


def memfd_bin(bin_dir: Path) -> Path:
    """A twin of `<pgbin>/bin` + `<pgbin>/lib` whose files live in memfds, for a noexec mount.

    The kernel refuses to exec (or to map executable) a file on a noexec mount, but a
    memfd is not on that mount. The twin is a folder of symlinks to /proc/<pid>/fd/<n>;
    the tools find their libraries through LD_LIBRARY_PATH (their $ORIGIN rpath points
    nowhere when started from a memfd). Costs the tools' size in memory, once.
    """
    key = str(bin_dir.resolve())
    if key in _MEMFD:
        return _MEMFD[key]
    import atexit
    import tempfile

    twin = Path(tempfile.mkdtemp(prefix="drkit-pgbin-"))
    atexit.register(shutil.rmtree, twin, True)
    lib_dir = bin_dir.parent / "lib"
    try:
        for sub, src_dir in (("bin", bin_dir), ("lib", lib_dir)):
            (twin / sub).mkdir()
            for src in sorted(src_dir.iterdir()) if src_dir.is_dir() else []:
                if not src.is_file():
                    continue
                try:
                    fd = os.memfd_create(src.name, os.MFD_CLOEXEC | _MFD_EXEC)
                except OSError:
                    fd = os.memfd_create(src.name, os.MFD_CLOEXEC)
                with open(src, "rb") as f, os.fdopen(os.dup(fd), "wb") as out:
                    shutil.copyfileobj(f, out)
                os.fchmod(fd, 0o755)
                # exec refuses a file open for writing (ETXTBSY): keep a read-only descriptor only
                ro = os.open(f"/proc/self/fd/{fd}", os.O_RDONLY | os.O_CLOEXEC)
                os.close(fd)
                (twin / sub / src.name).symlink_to(f"/proc/{os.getpid()}/fd/{ro}")
    except OSError as exc:
        raise PgError(f"{bin_dir} is on a noexec mount and its tools cannot be run from memory either "
                      f"({exc}); unpack the function where execution is allowed", tool="pg") from None
    _MEMFD[key] = twin / "bin"
    _MEMFD_LIB.append(str(twin / "lib"))
    log.info("vendored PostgreSQL tools run from memory (their folder is mounted noexec)", folder=str(bin_dir))
    return twin / "bin"


@dataclass(frozen=True)
class ToolVersion:
    path: str
    version: str  # "18.6"
    major: int


def tool_version(name: str) -> ToolVersion:
    """Version of the binary `name` resolves to now (cached per path)."""
    return _version_of(str(find_binary(name)), name)


@functools.lru_cache(maxsize=16)
def _version_of(path: str, name: str) -> ToolVersion:
    try:
        out = subprocess.run(
            [str(path), "--version"], capture_output=True, text=True, timeout=20, env=tool_env(), check=True
        ).stdout
    except (subprocess.SubprocessError, OSError) as exc:
        raise PgError(f"{path} --version failed: {exc}", tool=name) from None
    m = re.search(r"(\d+)(?:\.(\d+))?", out)
    if not m:
        raise PgError(f"cannot read the version of {path} from {out!r}", tool=name)
    return ToolVersion(str(path), m.group(0), int(m.group(1)))


def check_compatible(tool: ToolVersion, server_version_num: int) -> None:
    server_major = server_version_num // 10000
    if server_major > tool.major:
        raise PgError(
            f"server is PostgreSQL {server_major} but {tool.path} is {tool.version}: "
            "pg_dump must be at least the server's major version; rebuild with newer vendored binaries",
            tool="pg_dump",
        )
    if server_version_num < COMPATIBILITY["pg_dump"]["min_server_num"]:
        raise PgError(f"server version {server_version_num} is older than pg_dump {tool.major} supports (9.2)")


# libpq's TLS settings from the environment reach the tools as they reach psycopg (a PGSSLMODE=verify-full
# the operator set must not silently become `prefer` for pg_dump); every other PG* variable is dropped but the
# password file (CREDENTIAL_FILES), and child_env passes an operator's PGPASSWORD when the URL has none.
SSL_ENV = ("PGSSLMODE", "PGSSLROOTCERT", "PGSSLCERT", "PGSSLKEY", "PGSSLCRL", "PGSSLCRLDIR", "PGSSLSNI",
           "PGSSLMINPROTOCOLVERSION", "PGREQUIRESSL", "PGGSSENCMODE")

# where libpq looks up a password the URL does not carry (~/.pgpass by default: HOME is kept too)
CREDENTIAL_FILES = ("PGPASSFILE",)


def tool_env() -> dict[str, str]:
    """The environment every PostgreSQL tool starts with (no inherited PG* but TLS and the password file;
    C locale)."""
    # Drop inherited libpq variables but those: the connection is exactly what drkit passes.
    env = {k: v for k, v in os.environ.items() if not k.startswith("PG") or k in SSL_ENV or k in CREDENTIAL_FILES}
    env["LC_ALL"] = "C"
    if _MEMFD_LIB:
        env["LD_LIBRARY_PATH"] = ":".join([*_MEMFD_LIB, *filter(None, [env.get("LD_LIBRARY_PATH")])])
    return env
