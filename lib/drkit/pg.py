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

from . import log
from .config import DatabaseConfig
from .errors import PgError

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


def _base_env() -> dict[str, str]:
    # Drop inherited libpq variables: the connection is exactly what drkit passes.
    env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
    env["LC_ALL"] = "C"
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


def filter_script(lines: Any, drop: frozenset[bytes]) -> Any:
    """Yield script lines, dropping `drop` statements outside COPY ... FROM stdin data."""
    in_copy = False
    for line in lines:
        if in_copy:
            if line == b"\\.\n":
                in_copy = False
        elif line.startswith(b"COPY ") and line.rstrip().endswith(b"FROM stdin;"):
            in_copy = True
        elif line in drop:
            continue
        yield line


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
