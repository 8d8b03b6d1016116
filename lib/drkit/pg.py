"""Every PostgreSQL touch point: binaries, versions, connections, dump processes.

* Binaries are resolved once: `DRKIT_PG_BIN`, then the function's vendored
  `pgbin/bin` (next to the `drkit` package in a built function), then PATH.
* Child processes get argv lists (no shell), `LC_ALL=C`, and the password in
  their own environment (`PGPASSWORD`), never in argv or logs.
* stderr is kept as a bounded, redacted tail for error messages.
* Client/server compatibility is data (`COMPATIBILITY`), checked before work.
"""

from __future__ import annotations

import collections
import functools
import os
import re
import shutil
import subprocess
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from drkit import log
from drkit.config import DatabaseConfig
from drkit.errors import PgError

# pg_dump/pg_restore of major N read servers from 9.2 up to major N
# (PostgreSQL docs: "pg_dump can also dump from PostgreSQL servers older than
# its own version ... currently back to 9.2"; it refuses newer servers).
COMPATIBILITY: dict[str, dict[str, int]] = {
    "pg_dump": {"min_server_num": 90200},
}

VENDORED_BIN = Path(__file__).resolve().parent.parent / "pgbin" / "bin"


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
            [str(path), "--version"], capture_output=True, text=True, timeout=20, env=_base_env(), check=True
        ).stdout
    except (subprocess.SubprocessError, OSError) as exc:
        raise PgError(f"{path} --version failed: {exc}", tool=name) from None
    m = re.search(r"(\d+)(?:\.(\d+))?", out)
    if not m:
        raise PgError(f"cannot read the version of {path} from {out!r}", tool=name)
    return ToolVersion(str(path), m.group(0), int(m.group(1)))


# libpq's TLS settings from the environment reach the tools as they reach psycopg (a PGSSLMODE=verify-full
# the operator set must not silently become `prefer` for pg_dump); every other PG* variable is dropped.
SSL_ENV = ("PGSSLMODE", "PGSSLROOTCERT", "PGSSLCERT", "PGSSLKEY", "PGSSLCRL", "PGSSLCRLDIR", "PGSSLSNI",
           "PGSSLMINPROTOCOLVERSION", "PGREQUIRESSL", "PGGSSENCMODE")


def tls_warning(db: DatabaseConfig) -> str | None:
    """A sentence when the connection to `db` would not verify the server it talks to."""
    host = str(db.params.get("host", ""))
    if not host or host.startswith("/") or host in ("localhost", "127.0.0.1", "::1"):
        return None
    mode = str(db.params.get("sslmode") or os.environ.get("PGSSLMODE") or "prefer")
    if mode in ("verify-full", "verify-ca"):
        return None
    return (f"{db.name}: sslmode={mode} does not verify the server ({'it may even fall back to plaintext' if mode in ('prefer', 'allow', 'disable') else 'a man in the middle is not noticed'}); "
            "use sslmode=verify-full&sslrootcert=<the provider's CA file> (Supabase and DigitalOcean publish theirs)")


def _base_env() -> dict[str, str]:
    # Drop inherited libpq variables but TLS ones: the connection is exactly what drkit passes.
    env = {k: v for k, v in os.environ.items() if not k.startswith("PG") or k in SSL_ENV}
    env["LC_ALL"] = "C"
    if _MEMFD_LIB:
        env["LD_LIBRARY_PATH"] = ":".join([*_MEMFD_LIB, *filter(None, [env.get("LD_LIBRARY_PATH")])])
    return env


def child_env(db: DatabaseConfig) -> dict[str, str]:
    env = _base_env()
    if db.password is not None:
        env["PGPASSWORD"] = db.password.reveal()
    env["PGAPPNAME"] = "drkit"
    env.setdefault("PGCONNECT_TIMEOUT", "15")
    return env


def conninfo(db: DatabaseConfig, dbname: str | None = None) -> str:
    """libpq conninfo without the password (safe for argv)."""
    from psycopg.conninfo import make_conninfo

    params = dict(db.params)
    if dbname is not None:
        params["dbname"] = dbname
    params.setdefault("connect_timeout", "15")
    params.setdefault("application_name", "drkit")
    return make_conninfo(**params)


def connect(db: DatabaseConfig, dbname: str | None = None, autocommit: bool = False) -> Any:
    import psycopg

    password = db.password.reveal() if db.password else None
    try:
        return psycopg.connect(conninfo(db, dbname), password=password, autocommit=autocommit)
    except psycopg.Error as exc:
        raise PgError(f"cannot connect to {db.display}: {describe_pg_error(exc)}", tool="libpq") from None


def describe_pg_error(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    if "password authentication failed" in text:
        text += " (check the password in the database URL)"
    elif "no pg_hba.conf entry" in text and "no encryption" in text:
        text += " (the server requires SSL: add ?sslmode=require to the URL)"
    elif "Connection refused" in text or "could not translate host name" in text or "timeout expired" in text:
        text += " (is the host/port right and reachable from DigitalOcean Functions? Supabase: use the direct or session-pooler connection)"
    return log.redact(text)[:600]


@dataclass
class TableInfo:
    schema: str
    name: str
    kind: str  # "table" | "partitioned" | "partition"
    estimated_rows: int | None
    exact_rows: int | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "schema": self.schema,
            "name": self.name,
            "kind": self.kind,
            "estimated_rows": self.estimated_rows,
            "exact_rows": self.exact_rows,
        }


@dataclass
class SourceInfo:
    server_version: str
    server_version_num: int
    database_size: int
    snapshot: str | None
    tables: list[TableInfo] = field(default_factory=list)
    missing_count_tables: list[str] = field(default_factory=list)


_TABLES_SQL = """
SELECT n.nspname, c.relname, c.relkind::text, c.relispartition, c.reltuples::bigint
FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE c.relkind IN ('r', 'p')
  AND n.nspname NOT IN ('pg_catalog', 'information_schema')
  AND n.nspname NOT LIKE 'pg\\_toast%' AND n.nspname NOT LIKE 'pg\\_temp%'
ORDER BY 1, 2
"""


class SnapshotSession:
    """A read-only REPEATABLE READ transaction whose snapshot pg_dump imports.

    Row counts taken here and the dump see exactly the same data, even on a
    busy database. The transaction must stay open until pg_dump has finished
    (`--snapshot` needs the exporting transaction alive), so use as a context
    manager around the whole dump. Requires a direct or session-mode
    connection (transaction-mode poolers cannot export snapshots): if export
    fails, the dump still runs with its own snapshot and `snapshot` is None.
    """

    def __init__(self, db: DatabaseConfig):
        self.db = db
        self.conn: Any = None

    def __enter__(self) -> SnapshotSession:
        self.conn = connect(self.db)
        return self

    def __exit__(self, *exc: Any) -> None:
        try:
            self.conn.rollback()
            self.conn.close()
        except Exception:  # noqa: BLE001 - closing a connection that may be broken
            log.debug("snapshot connection close failed", database=self.db.name)

    def inspect(self, count_tables: Sequence[str]) -> SourceInfo:
        import psycopg
        from psycopg import sql

        cur = self.conn.cursor()
        try:
            cur.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
            snapshot: str | None
            try:
                # Not in a savepoint: PostgreSQL cannot export from a subtransaction.
                cur.execute("SELECT pg_export_snapshot()")
                snapshot = cur.fetchone()[0]
            except psycopg.Error as exc:
                self.conn.rollback()
                cur.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
                log.warning("snapshot export failed; counts and dump use separate snapshots",
                            database=self.db.name, error=describe_pg_error(exc))
                snapshot = None
            cur.execute("SELECT current_setting('server_version'), current_setting('server_version_num')::int, "
                        "pg_database_size(current_database())")
            version, version_num, size = cur.fetchone()
            cur.execute(_TABLES_SQL)
            tables = []
            for schema, name, relkind, is_part, reltuples in cur.fetchall():
                kind = "partitioned" if relkind == "p" else ("partition" if is_part else "table")
                est = int(reltuples) if reltuples is not None and reltuples >= 0 and kind != "partitioned" else None
                tables.append(TableInfo(schema, name, kind, est))
            wanted, missing = _select_tables(tables, count_tables)
            for t in wanted:
                cur.execute(sql.SQL("SELECT count(*) FROM ONLY {}.{}").format(sql.Identifier(t.schema), sql.Identifier(t.name)))
                t.exact_rows = int(cur.fetchone()[0])
        except psycopg.Error as exc:
            raise PgError(f"inspecting {self.db.display} failed: {describe_pg_error(exc)}", tool="libpq") from None
        return SourceInfo(str(version).split()[0], int(version_num), int(size), snapshot, tables, missing)


def _select_tables(tables: list[TableInfo], wanted: Sequence[str]) -> tuple[list[TableInfo], list[str]]:
    """Tables to count exactly, and configured names that match no table.

    A configured table that no longer exists (renamed by a migration) must not
    stop the backup: it is reported in the manifest and the result instead.
    """
    countable = [t for t in tables if t.kind != "partitioned"]
    if "*" in wanted:
        return countable, []
    out: list[TableInfo] = []
    missing: list[str] = []
    for w in wanted:
        schema, _, name = w.rpartition(".")
        match = [t for t in countable if t.name == name and (t.schema == schema if schema else True)]
        if not match:
            missing.append(w)
        out.extend(t for t in match if t not in out)
    return out, missing


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
            last = self.stderr_tail.splitlines()[-1] if self.stderr_tail else "no error output"
            raise PgError(f"{self.tool} exited with status {code}{why}: {last}", tool=self.tool,
                          exit_code=code, stderr_tail=self.stderr_tail)


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


# -- restore targets ---------------------------------------------------------------------

# Session settings pg_restore 18 always sends that older servers reject, with the
# first server version that knows them. For such targets drkit restores through
# `pg_restore -f -` (a script), drops exactly these statements outside COPY data,
# and runs the script with `psql -v ON_ERROR_STOP=1`: still strict, no ignored errors.
UNKNOWN_BEFORE: dict[bytes, int] = {
    b"SET transaction_timeout = 0;\n": 170000,
}


def restore_strategy(server_version_num: int) -> tuple[str, frozenset[bytes]]:
    """("direct", {}) or ("script", statements to drop) for a target server version."""
    drop = frozenset(stmt for stmt, since in UNKNOWN_BEFORE.items() if server_version_num < since)
    return ("script", drop) if drop else ("direct", frozenset())


COMMIT = b"COMMIT;\n"
BEGIN = b"BEGIN;\n"


def gate_script(lines: Any, drop: frozenset[bytes]) -> Any:
    """A `pg_restore --single-transaction --file=-` script, with its final COMMIT withheld.

    Yields the script's lines, dropping `drop` statements outside COPY data (a row whose
    text is exactly such a statement is data, and kept), and keeps back the last top-level `COMMIT;`: the caller sends it
    only when everything upstream was verified. A `COMMIT;` line that more statements
    follow (inside a procedure's body, say) is passed on when they arrive. Raises
    PgError when the script does not open with BEGIN before its first statement, or
    ends without the COMMIT (pg_restore died, or its input was cut).
    """
    in_copy = False
    began = False
    held: list[bytes] = []  # a COMMIT line and the comments/blank lines/\unrestrict after it
    for line in lines:
        if in_copy:
            if line == b"\\.\n":
                in_copy = False
            yield line
            continue
        quiet = line.strip() == b"" or line.startswith((b"--", b"\\restrict", b"\\unrestrict"))
        if held:
            if quiet:
                held.append(line)
                continue
            yield from held  # that COMMIT was not the last statement
            held = []
        if line == COMMIT:
            held = [line]
            continue
        if not quiet and not began:
            if line != BEGIN:
                raise PgError("the restore script does not open a transaction (pg_restore --single-transaction)",
                              tool="pg_restore")
            began = True
        elif line.startswith(b"COPY ") and line.rstrip().endswith(b"FROM stdin;"):
            in_copy = True
        elif line in drop:
            continue
        yield line
    if not held:
        raise PgError("the restore script ended without its COMMIT (pg_restore stopped early)", tool="pg_restore")
    yield from held[1:]


def server_version_num(db: DatabaseConfig, dbname: str | None = None) -> int:
    with connect(db, dbname, autocommit=True) as conn:
        return int(conn.execute("SHOW server_version_num").fetchone()[0])


def database_exists(db: DatabaseConfig, name: str) -> bool:
    with connect(db, autocommit=True) as conn:
        return conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone() is not None


def user_table_count(db: DatabaseConfig, name: str) -> int:
    with connect(db, name, autocommit=True) as conn:
        return int(conn.execute(
            "SELECT count(*) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
            "WHERE c.relkind IN ('r', 'p') AND n.nspname NOT IN ('pg_catalog', 'information_schema') "
            "AND n.nspname NOT LIKE 'pg\\_toast%'").fetchone()[0])


def create_database(db: DatabaseConfig, name: str) -> None:
    import psycopg
    from psycopg import sql

    try:
        with connect(db, autocommit=True) as conn:
            conn.execute(sql.SQL("CREATE DATABASE {} TEMPLATE template0").format(sql.Identifier(name)))
    except psycopg.Error as exc:
        raise PgError(f"cannot create database {name!r} on {db.display}: {describe_pg_error(exc)}") from None


def drop_database(db: DatabaseConfig, name: str) -> None:
    """Drop a database, disconnecting its sessions (PostgreSQL 13+: WITH (FORCE))."""
    import psycopg
    from psycopg import sql

    try:
        with connect(db, autocommit=True) as conn:
            version = int(conn.execute("SHOW server_version_num").fetchone()[0])
            if version >= 130000:
                conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))
            else:
                conn.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s", (name,))
                conn.execute(sql.SQL("DROP DATABASE IF EXISTS {}").format(sql.Identifier(name)))
    except psycopg.Error as exc:
        raise PgError(f"cannot drop database {name!r} on {db.display}: {describe_pg_error(exc)}") from None


def list_databases(db: DatabaseConfig, prefix: str) -> list[str]:
    with connect(db, autocommit=True) as conn:
        rows = conn.execute("SELECT datname FROM pg_database WHERE starts_with(datname, %s) ORDER BY 1",
                            (prefix,)).fetchall()
    return [str(r[0]) for r in rows]


@dataclass(frozen=True)
class Rights:
    """What the connecting role may do to databases on a server (for a restore plan)."""
    superuser: bool
    createdb: bool
    owns: bool  # the named database (False if it does not exist)

    @property
    def can_create(self) -> bool:
        return self.superuser or self.createdb

    @property
    def can_rename(self) -> bool:  # ALTER DATABASE … RENAME: the owner with CREATEDB, or a superuser
        return self.superuser or (self.createdb and self.owns)


def rights(db: DatabaseConfig, name: str) -> Rights:
    with connect(db, autocommit=True) as conn:
        su, cdb = conn.execute("SELECT rolsuper, rolcreatedb FROM pg_roles WHERE rolname = current_user").fetchone()
        row = conn.execute("SELECT pg_has_role(current_user, datdba, 'USAGE') FROM pg_database WHERE datname = %s",
                           (name,)).fetchone()
    return Rights(bool(su), bool(cdb), bool(row and row[0]))


def swap_databases(db: DatabaseConfig, target: str, new: str, keep_as: str | None, attempts: int = 5) -> None:
    """In one transaction: `target` becomes `keep_as` (if it exists), `new` becomes `target`.

    Sessions on `target` are ended first (a renamed database must have none); if they keep
    coming back, nothing is renamed and the error says to stop the application.
    """
    import time

    import psycopg
    from psycopg import sql

    rename = sql.SQL("ALTER DATABASE {} RENAME TO {}")
    try:
        with connect(db, autocommit=True) as conn:
            for attempt in range(1, attempts + 1):
                conn.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                             "WHERE datname = ANY(%s) AND pid <> pg_backend_pid()", ([target, new],))
                try:
                    with conn.transaction():
                        if keep_as is not None:
                            conn.execute(rename.format(sql.Identifier(target), sql.Identifier(keep_as)))
                        conn.execute(rename.format(sql.Identifier(new), sql.Identifier(target)))
                    return
                except psycopg.errors.ObjectInUse:
                    if attempt == attempts:
                        raise PgError(f"sessions keep reconnecting to {target!r}: stop the application that uses "
                                      "it, then run the restore again (nothing was renamed)") from None
                    time.sleep(0.5 * attempt)
    except psycopg.Error as exc:
        raise PgError(f"cannot rename databases on {db.display}: {describe_pg_error(exc)} (nothing was renamed)") from None
