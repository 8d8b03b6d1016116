-- drkit test stand-in: the key table (a configuration table: pg_dump carries key ids, never the root key)
CREATE TABLE @extschema@.key (
    id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    status text DEFAULT 'valid',
    created timestamptz NOT NULL DEFAULT CURRENT_TIMESTAMP,
    expires timestamptz,
    key_type text,
    key_id bigint,
    key_context bytea DEFAULT '\x7067736f6469756d',
    name text UNIQUE,
    comment text
);
SELECT pg_catalog.pg_extension_config_dump('@extschema@.key', '');
CREATE FUNCTION @extschema@.crypto_aead_det_keygen() RETURNS bytea LANGUAGE sql VOLATILE
AS $$ SELECT decode(md5(random()::text) || md5(random()::text), 'hex') $$;
