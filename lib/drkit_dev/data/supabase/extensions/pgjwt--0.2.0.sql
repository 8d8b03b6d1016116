-- drkit test stand-in: pgjwt's url_encode/url_decode and an unsigned "sign" (the real one uses pgcrypto's hmac)
CREATE FUNCTION @extschema@.url_encode(data bytea) RETURNS text LANGUAGE sql IMMUTABLE
AS $$ SELECT translate(encode(data, 'base64'), E'+/=\n', '-_') $$;
CREATE FUNCTION @extschema@.url_decode(data text) RETURNS bytea LANGUAGE sql IMMUTABLE
AS $$ SELECT decode(rpad(translate(data, '-_', '+/'), 4 * ((length(data) + 3) / 4), '='), 'base64') $$;
CREATE FUNCTION @extschema@.sign(payload json, secret text, algorithm text DEFAULT 'HS256') RETURNS text
LANGUAGE sql IMMUTABLE
AS $$ SELECT @extschema@.url_encode(convert_to('{"alg":"none","typ":"JWT"}', 'utf8')) || '.'
          || @extschema@.url_encode(convert_to(payload::text, 'utf8')) || '.' $$;
