"""Database settings from `DRKIT_DB_<NAME>_*`: URLs, pg_dump options, counted tables, retention."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from drkit.core import log
from drkit.core.errors import ConfigError
from drkit.core.secret import Secret
from drkit.policy.retention import Policy, parse_policy

DEFAULT_RETENTION = "keep_within_hourly=7d keep_within_daily=30d"
NAME_RE = re.compile(r"^[a-z0-9][a-z0-9_-]{0,62}$")

# pg_dump options an operator may add per database. An allow-list, not a
# deny-list: output format, compression, connection and snapshot options are
# drkit's to set, and anything unknown is refused before work starts.
PG_DUMP_ALLOWED = (
    "--exclude-table-data=",
    "--exclude-table=",
    "--exclude-schema=",
    "--exclude-extension=",
    "--extension=",
    "--schema=",
    "--table=",
    "--lock-wait-timeout=",
    "--no-owner",
    "--no-privileges",
    "--no-comments",
    "--no-publications",
    "--no-subscriptions",
    "--no-security-labels",
    "--no-tablespaces",
    "--no-table-access-method",
    "--no-large-objects",
    "--large-objects",
)


@dataclass(frozen=True)
class DatabaseConfig:
    name: str
    url: Secret
    params: Mapping[str, str]  # libpq connection parameters, password removed
    password: Secret | None
    count_tables: tuple[str, ...] = ()  # ("*",) = every table
    pg_dump_args: tuple[str, ...] = ()
    retention: Policy = field(default_factory=lambda: parse_policy(DEFAULT_RETENTION))

    @property
    def display(self) -> str:
        """host:port/dbname as user: safe to log."""
        p = self.params
        return f"{p.get('user', '?')}@{p.get('host', '?')}:{p.get('port', '5432')}/{p.get('dbname', '?')}"


def database_names(environ: Mapping[str, str]) -> list[str]:
    """DRKIT_DATABASES, validated, without needing each database's URL."""
    names = [n for n in re.split(r"[\s,]+", environ.get("DRKIT_DATABASES", "").strip()) if n]
    bad = [n for n in names if not NAME_RE.match(n)]
    if bad:
        raise ConfigError(f"DRKIT_DATABASES: {', '.join(map(repr, bad))} must be lower-case a-z 0-9 _ -")
    return list(dict.fromkeys(names))


def env_name(db_name: str, suffix: str) -> str:
    return f"DRKIT_DB_{db_name.upper().replace('-', '_')}_{suffix}"


def databases_from_env(environ: Mapping[str, str], problems: list[str], *, required: bool) -> dict[str, DatabaseConfig]:
    raw = environ.get("DRKIT_DATABASES", "").strip()
    names = [n for n in re.split(r"[\s,]+", raw) if n]
    if not names:
        if required:
            problems.append(
                "DRKIT_DATABASES is not set (comma-separated names, e.g. 'odoo,superset'; "
                "each needs DRKIT_DB_<NAME>_URL)"
            )
        return {}
    default_retention = environ.get("DRKIT_RETENTION", DEFAULT_RETENTION)
    out: dict[str, DatabaseConfig] = {}
    for name in names:
        if not NAME_RE.match(name):
            problems.append(f"database name {name!r} in DRKIT_DATABASES must be lower-case a-z 0-9 _ - (max 63)")
            continue
        if name in out:
            problems.append(f"database {name!r} is listed twice in DRKIT_DATABASES")
            continue
        db = _database(environ, name, default_retention, problems)
        if db is not None:
            out[name] = db
    return out


def _database(
    environ: Mapping[str, str], name: str, default_retention: str, problems: list[str]
) -> DatabaseConfig | None:
    url_var = env_name(name, "URL")
    url = environ.get(url_var, "").strip()
    before = len(problems)
    params: dict[str, str] = {}
    password: str | None = None
    if not url:
        problems.append(f"database {name!r}: {url_var} is not set")
    else:
        params, password = parse_db_url(name, url, problems)
    count_raw = environ.get(env_name(name, "COUNT_TABLES"), "").strip()
    count_tables = tuple(t.strip() for t in count_raw.split(",") if t.strip())
    for t in count_tables:
        if t != "*" and not re.match(r"^[A-Za-z_][A-Za-z0-9_$]*(\.[A-Za-z_][A-Za-z0-9_$]*)?$", t):
            problems.append(f"database {name!r}: {env_name(name, 'COUNT_TABLES')} entry {t!r} is not a table name")
    args_raw = environ.get(env_name(name, "PG_DUMP_ARGS"), "").strip()
    pg_args = tuple(a for a in args_raw.split() if a)
    for a in pg_args:
        if not any(a == ok or (ok.endswith("=") and a.startswith(ok) and len(a) > len(ok)) for ok in PG_DUMP_ALLOWED):
            problems.append(
                f"database {name!r}: pg_dump option {a!r} is not allowed in {env_name(name, 'PG_DUMP_ARGS')} "
                "(allowed: exclude/include tables and schemas, --no-owner, --no-privileges, --lock-wait-timeout=…)"
            )
    retention_raw = environ.get(env_name(name, "RETENTION"), default_retention)
    try:
        retention = parse_policy(retention_raw)
    except ValueError as exc:
        problems.append(f"database {name!r}: retention {retention_raw!r}: {exc}")
        retention = parse_policy(DEFAULT_RETENTION)
    if len(problems) > before:
        return None
    return DatabaseConfig(
        name=name,
        url=Secret(url),
        params=params,
        password=Secret(password) if password else None,
        count_tables=count_tables,
        pg_dump_args=pg_args,
        retention=retention,
    )


def parse_db_url(name: str, url: str, problems: list[str]) -> tuple[dict[str, str], str | None]:
    """Parse a libpq URL or key=value string with libpq's own parser.

    Returns the parameters without the password, and the password, so that the
    password can be handed to child processes through their environment only.
    """
    import psycopg
    from psycopg.conninfo import conninfo_to_dict

    try:
        raw: dict[str, Any] = conninfo_to_dict(url)
    except psycopg.Error as exc:  # the text may echo the URL: redacted below
        problems.append(f"database {name!r}: URL cannot be parsed ({log.redact(str(exc)).strip()})")
        return {}, None
    params = {k: str(v) for k, v in raw.items() if v is not None}
    password = params.pop("password", None)
    if not params.get("host") and not params.get("hostaddr"):
        problems.append(f"database {name!r}: URL has no host")
    if "port" in params and not re.match(r"^\d{1,5}(,\d{1,5})*$", params["port"]):
        problems.append(f"database {name!r}: URL port {params['port']!r} is not a number")
    if not params.get("user"):
        problems.append(f"database {name!r}: URL has no user")
    params.setdefault("dbname", params.get("user", ""))
    return params, password
