-- drkit test stand-in: id_encode's signature, hexadecimal instead of hashids
CREATE FUNCTION id_encode(bigint) RETURNS text LANGUAGE sql IMMUTABLE STRICT AS $$ SELECT to_hex($1) $$;
