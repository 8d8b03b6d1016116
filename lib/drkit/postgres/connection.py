"""Connections: libpq parameters for psycopg and the tools (password only in the child's environment), TLS warnings."""

from __future__ import annotations

import os
from typing import Any

from drkit.core import log
from drkit.core.errors import PgError
from drkit.platform.databases import DatabaseConfig
from drkit.postgres.binaries import tool_env


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



def child_env(db: DatabaseConfig) -> dict[str, str]:
    env = tool_env()
    if db.password is not None:
        env["PGPASSWORD"] = db.password.reveal()
    elif os.environ.get("PGPASSWORD"):  # an operator's libpq environment (the CLI): the tools get what psycopg gets
        env["PGPASSWORD"] = os.environ["PGPASSWORD"]
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
        where = "DigitalOcean Functions" if os.environ.get("__OW_ACTION_NAME") else "this machine"  # DO sets it
        text += (f" (is the host/port right and reachable from {where}? Supabase: use the direct or session-pooler "
                 "connection)")
    return log.redact(text)[:600]


def server_version_num(db: DatabaseConfig, dbname: str | None = None) -> int:
    with connect(db, dbname, autocommit=True) as conn:
        return int(conn.execute("SHOW server_version_num").fetchone()[0])
