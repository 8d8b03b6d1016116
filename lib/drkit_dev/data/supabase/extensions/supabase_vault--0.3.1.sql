-- drkit test stand-in: vault.secrets is a configuration table (pg_dump carries its rows, which hold
-- only ciphertext); "encryption" here is base64, a stand-in for pgsodium's AEAD with a root key
-- that lives outside the database
CREATE TABLE @extschema@.secrets (
    id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    name text,
    description text NOT NULL DEFAULT '',
    secret text NOT NULL,
    key_id uuid,
    nonce bytea DEFAULT decode(md5(random()::text), 'hex'),
    created_at timestamptz NOT NULL DEFAULT CURRENT_TIMESTAMP,
    updated_at timestamptz NOT NULL DEFAULT CURRENT_TIMESTAMP
);
CREATE UNIQUE INDEX secrets_name_idx ON @extschema@.secrets (name) WHERE name IS NOT NULL;
SELECT pg_catalog.pg_extension_config_dump('@extschema@.secrets', '');
CREATE VIEW @extschema@.decrypted_secrets AS
SELECT id, name, description, secret, convert_from(decode(secret, 'base64'), 'utf8') AS decrypted_secret,
       key_id, nonce, created_at, updated_at
FROM @extschema@.secrets;
CREATE FUNCTION @extschema@.create_secret(new_secret text, new_name text DEFAULT NULL, new_description text DEFAULT '',
                                          new_key_id uuid DEFAULT NULL) RETURNS uuid LANGUAGE sql
AS $$ INSERT INTO vault.secrets (secret, name, description, key_id)
      VALUES (encode(convert_to(new_secret, 'utf8'), 'base64'), new_name, new_description, new_key_id) RETURNING id $$;
