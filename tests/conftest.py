"""Shared fixtures: real PostgreSQL, real S3 server (moto over HTTP), age keys.

Servers are started once per session; each test gets its own bucket and its
own databases, so tests never see each other's state.
"""

from __future__ import annotations

import os
import threading
import uuid
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import boto3
import pytest

from drkit.core import log
from drkit.crypto import encryption
from drkit_dev.keys import signing_env
from drkit_dev.pgserver import PgServer, installed_bindirs
from drkit_dev.s3server import S3Server
from support.offsite import copy_env

ROOT = Path(__file__).resolve().parents[1]
PGBIN = ROOT / "build" / "pgbin" / "bin"
SPACES_SECRET = "spaces-Secret-Value-123"


@pytest.fixture(scope="session", autouse=True)
def vendored_pg_bin() -> Path:
    """The tests run the same pg_dump/pg_restore the functions ship."""
    if not (PGBIN / "pg_dump").exists():
        pytest.exit("build/pgbin is missing: run ./scripts/test (it vendors pg_dump/pg_restore first)", 2)
    os.environ["DRKIT_PG_BIN"] = str(PGBIN)
    return PGBIN


@pytest.fixture(scope="session")
def s3_server() -> Iterator[S3Server]:
    with S3Server() as server:
        yield server


@pytest.fixture(scope="session")
def pg() -> Iterator[PgServer]:
    with PgServer() as server:
        yield server


@pytest.fixture(scope="session")
def ssl_pg() -> Iterator[PgServer]:
    """An SSL-only (hostssl + SCRAM) PostgreSQL 15 server, like Supabase's."""
    dirs = installed_bindirs()
    if 15 not in dirs:
        pytest.skip("Debian's postgresql-15 server is not installed (scripts/test installs it when run as root)")
    with PgServer(dirs[15], ssl_only=True) as server:
        yield server


@pytest.fixture(scope="session")
def age_keys() -> tuple[str, str]:
    """(identity, recipient)"""
    return encryption.generate_identity()


@pytest.fixture
def s3_client(s3_server: S3Server) -> Any:
    return boto3.client("s3", endpoint_url=s3_server.endpoint, aws_access_key_id="test-key",
                        aws_secret_access_key=SPACES_SECRET, region_name="us-east-1")


@pytest.fixture
def bucket(s3_client: Any) -> str:
    name = f"drkit-{uuid.uuid4().hex[:12]}"
    s3_client.create_bucket(Bucket=name)
    return name


def keys(s3_client: Any, bucket: str, prefix: str = "") -> list[str]:
    out: list[str] = []
    for page in s3_client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        out += [o["Key"] for o in page.get("Contents", [])]
    return sorted(out)


def open_uploads(s3_client: Any, bucket: str) -> list[str]:
    return [u["Key"] for u in s3_client.list_multipart_uploads(Bucket=bucket).get("Uploads", [])]


@pytest.fixture
def make_env(s3_server: S3Server, bucket: str, age_keys: tuple[str, str]) -> Any:
    def make(databases: dict[str, str], **extra: str) -> dict[str, str]:
        env = {
            "DRKIT_SPACES_BUCKET": bucket,
            "DRKIT_SPACES_ENDPOINT": s3_server.endpoint,
            "DRKIT_SPACES_KEY": "test-key",
            "DRKIT_SPACES_SECRET": SPACES_SECRET,
            "DRKIT_AGE_RECIPIENTS": age_keys[1],
            **signing_env(),
            "DRKIT_DATABASES": ",".join(databases),
            "DRKIT_PART_SIZE_MB": "5",
            **copy_env(s3_server.endpoint, bucket, SPACES_SECRET),  # the off-site copy (its bucket: copy_bucket())
        }
        for name, url in databases.items():
            env[f"DRKIT_DB_{name.upper().replace('-', '_')}_URL"] = url
        env.update(extra)
        return env

    return make


@pytest.fixture
def dbname(pg: PgServer) -> Iterator[str]:
    """A fresh, empty database on the session server; dropped afterwards."""
    name = f"t_{uuid.uuid4().hex[:10]}"
    pg.create_database(name)
    yield name
    pg.drop_database(name)


@pytest.fixture(autouse=True)
def _quiet_logs(capsys: pytest.CaptureFixture[str]) -> Iterator[None]:
    log.configure("info", None)
    yield


RICH_SCHEMA = """
CREATE TYPE mood AS ENUM ('sad', 'ok', 'happy');
CREATE SEQUENCE invoice_no START 1000;
CREATE TABLE customers (
    id bigserial PRIMARY KEY,
    name text NOT NULL,
    mood mood NOT NULL DEFAULT 'ok',
    tags text[] NOT NULL DEFAULT '{}',
    profile jsonb,
    avatar bytea,
    created_at timestamptz NOT NULL DEFAULT now()
);
CREATE TABLE events (
    id bigint GENERATED ALWAYS AS IDENTITY,
    happened date NOT NULL,
    payload jsonb NOT NULL,
    PRIMARY KEY (id, happened)
) PARTITION BY RANGE (happened);
CREATE TABLE events_2025 PARTITION OF events FOR VALUES FROM ('2025-01-01') TO ('2026-01-01');
CREATE TABLE events_2026 PARTITION OF events FOR VALUES FROM ('2026-01-01') TO ('2027-01-01');
CREATE TABLE audit_log (id serial PRIMARY KEY, customer_id bigint, note text);
CREATE FUNCTION log_customer() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN INSERT INTO audit_log (customer_id, note) VALUES (NEW.id, 'created ' || NEW.name); RETURN NEW; END $$;
CREATE TRIGGER customers_audit AFTER INSERT ON customers FOR EACH ROW EXECUTE FUNCTION log_customer();
CREATE FUNCTION happy_count() RETURNS bigint LANGUAGE sql STABLE AS $$ SELECT count(*) FROM customers WHERE mood = 'happy' $$;
CREATE VIEW happy_customers AS SELECT id, name FROM customers WHERE mood = 'happy';
CREATE SCHEMA "Odd Schema";
CREATE TABLE "Odd Schema"."Mixed Case" ("Key" text PRIMARY KEY, "Value" numeric(12,4));
INSERT INTO customers (name, mood, tags, profile, avatar, created_at)
SELECT 'customer ' || g,
       (ARRAY['sad','ok','happy']::mood[])[1 + g % 3],
       ARRAY['t' || g % 7, 'x'],
       jsonb_build_object('n', g, 'h', md5(g::text), 'nested', jsonb_build_object('a', ARRAY[g, g * 2])),
       decode(md5(g::text), 'hex') || '\\x00ff'::bytea,
       timestamptz '2026-01-01 00:00+00' + g * interval '1 minute'
FROM generate_series(1, 3000) g;
INSERT INTO events (happened, payload)
SELECT date '2025-06-01' + (g % 400), jsonb_build_object('g', g, 's', repeat(md5(g::text), 3))
FROM generate_series(1, 5000) g;
INSERT INTO "Odd Schema"."Mixed Case" VALUES ('a', 1.5), ('b''quote', -2.25), ('ünïcode ✓', NULL);
SELECT nextval('invoice_no') FROM generate_series(1, 17);
ANALYZE;
"""


def fill_rich(pg: PgServer, dbname: str) -> None:
    pg.execute(RICH_SCHEMA, dbname)


def table_fingerprints(pg: PgServer, dbname: str) -> dict[str, Any]:
    """Content fingerprint of every table plus sequences, views, functions and triggers."""
    out: dict[str, Any] = {}
    with pg.connect(dbname) as conn:
        tables = conn.execute(
            "SELECT format('%I.%I', n.nspname, c.relname) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
            "WHERE c.relkind = 'r' AND n.nspname NOT IN ('pg_catalog', 'information_schema') ORDER BY 1").fetchall()
        for (t,) in tables:
            out[t] = conn.execute(
                f"SELECT count(*), md5(coalesce(string_agg(x::text, '|' ORDER BY x::text), '')) FROM {t} x").fetchone()
        out["seq"] = conn.execute("SELECT last_value FROM invoice_no").fetchone()
        out["view"] = conn.execute("SELECT count(*) FROM happy_customers").fetchone()
        out["fn"] = conn.execute("SELECT happy_count()").fetchone()
        out["triggers"] = conn.execute("SELECT tgname FROM pg_trigger WHERE NOT tgisinternal ORDER BY 1").fetchall()
        out["enum"] = conn.execute("SELECT enum_range(NULL::mood)::text").fetchone()
    return out


@pytest.fixture
def webhook() -> Iterator[tuple[str, list[tuple[str, dict[str, str], bytes]]]]:
    received: list[tuple[str, dict[str, str], bytes]] = []

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: object) -> None:
            pass

        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers["Content-Length"]))
            received.append((self.path, dict(self.headers), body))
            self.send_response(200)
            self.send_header("Content-Length", "0")
            self.end_headers()

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}", received
    server.shutdown()


@pytest.fixture
def account(make_env: Any, pg: PgServer, dbname: str, age_keys: tuple[str, str]) -> Iterator[Any]:
    """A deployment's evidence made by drkit's own functions on the stand-ins (tests/support/evidence.py)."""
    from drkit_dev.probeservers import Behaviour, serve, stop
    from support import evidence

    behaviour = Behaviour()
    server, port = serve(behaviour)
    acc = evidence.make_account(make_env, pg, dbname, age_keys, behaviour, port)
    try:
        yield acc
    finally:
        stop(server)
        acc.fake.stop()
