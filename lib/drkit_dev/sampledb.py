"""Odoo-like sample data that compresses like real data (not pgbench's blank filler).

Partners, journal entries and their lines: names from a small vocabulary
(compresses well), md5 hex and uuids (compress ~2x), numbers, dates and jsonb.
Measured on PostgreSQL 18: zstd -3 shrinks the dump about 2.5-3x, close to
the operators' production ratio (476 MB -> 155-172 MB).
"""

from __future__ import annotations

from .pgserver import PgServer

SCHEMA = """
CREATE TABLE res_partner (
    id serial PRIMARY KEY, name text NOT NULL, email text, street text, city text,
    country_code char(2), vat text, create_date timestamptz NOT NULL, meta jsonb);
CREATE TABLE account_move (
    id bigserial PRIMARY KEY, name text NOT NULL, partner_id int REFERENCES res_partner,
    date date NOT NULL, state text NOT NULL, amount_total numeric(14,2), narration text,
    create_date timestamptz NOT NULL);
CREATE TABLE account_move_line (
    id bigserial PRIMARY KEY, move_id bigint NOT NULL REFERENCES account_move, account_code text,
    name text, debit numeric(14,2), credit numeric(14,2), analytic jsonb, create_date timestamptz);
CREATE INDEX ON account_move (partner_id);
CREATE INDEX ON account_move_line (move_id);
CREATE VIEW open_moves AS SELECT id, name, amount_total FROM account_move WHERE state = 'posted';
"""

WORDS = "ARRAY['office','supplies','consulting','hosting','invoice','refund','travel','licence','support','hardware']"


def fill(pg: PgServer, dbname: str, size_mb: int) -> None:
    """Create and fill the tables so that the database is roughly size_mb on disk."""
    lines = max(1000, int(size_mb * 1e6 / 330))
    moves = max(200, lines // 4)
    partners = max(50, moves // 20)
    sql = SCHEMA + f"""
INSERT INTO res_partner (name, email, street, city, country_code, vat, create_date, meta)
SELECT 'Partner ' || g || ' ' || ({WORDS})[1 + g % 10], 'p' || g || '@example.com',
       g || ' ' || md5(g::text) || ' street', ({WORDS})[1 + g % 7] || 'ville',
       (ARRAY['BE','FR','DE','NL','US'])[1 + g % 5], 'VAT' || (g * 7919 % 1000000),
       timestamptz '2024-01-01' + g * interval '17 minutes',
       jsonb_build_object('lang', 'en_US', 'tags', ARRAY[g % 3, g % 5], 'ref', md5((g * 3)::text))
FROM generate_series(1, {partners}) g;
INSERT INTO account_move (name, partner_id, date, state, amount_total, narration, create_date)
SELECT 'INV/2026/' || lpad(g::text, 6, '0'), 1 + g % {partners}, date '2025-01-01' + g % 600,
       (ARRAY['draft','posted','posted','posted','cancel'])[1 + g % 5], round((random() * 10000)::numeric, 2),
       CASE WHEN g % 3 = 0 THEN 'Payment terms: 30 days. ' || md5(random()::text) END,
       timestamptz '2025-01-01' + g * interval '3 minutes'
FROM generate_series(1, {moves}) g;
INSERT INTO account_move_line (move_id, account_code, name, debit, credit, analytic, create_date)
SELECT 1 + g % {moves}, (ARRAY['400000','440000','451000','600000','700000'])[1 + g % 5],
       ({WORDS})[1 + g % 10] || ' ' || md5(random()::text),
       CASE WHEN g % 2 = 0 THEN round((random() * 5000)::numeric, 2) ELSE 0 END,
       CASE WHEN g % 2 = 1 THEN round((random() * 5000)::numeric, 2) ELSE 0 END,
       jsonb_build_object('account', (g % 40)::text, 'share', 100, 'uuid', gen_random_uuid()),
       timestamptz '2025-01-01' + g * interval '45 seconds'
FROM generate_series(1, {lines}) g;
ANALYZE;
"""
    pg.execute(sql, dbname)


def database_size(pg: PgServer, dbname: str) -> int:
    with pg.connect(dbname) as conn:
        return int(conn.execute("SELECT pg_database_size(current_database())").fetchone()[0])


def fingerprint(pg: PgServer, dbname: str) -> dict[str, tuple[int, str]]:
    """Row count and an order-independent content hash for every user table."""
    out: dict[str, tuple[int, str]] = {}
    with pg.connect(dbname) as conn:
        tables = conn.execute(
            "SELECT format('%I.%I', n.nspname, c.relname) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
            "WHERE c.relkind = 'r' AND n.nspname NOT IN ('pg_catalog', 'information_schema') ORDER BY 1").fetchall()
        for (t,) in tables:
            row = conn.execute(f"SELECT count(*), md5(coalesce(string_agg(md5(x::text), '' ORDER BY md5(x::text)), '')) "
                               f"FROM {t} x").fetchone()
            out[t] = (int(row[0]), str(row[1]))
    return out
