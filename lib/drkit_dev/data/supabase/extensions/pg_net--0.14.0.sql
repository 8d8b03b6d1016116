-- drkit test stand-in: the request queue and http_post, no background worker
CREATE TABLE @extschema@.http_request_queue (
    id bigserial NOT NULL,
    method text NOT NULL,
    url text NOT NULL,
    headers jsonb NOT NULL,
    body bytea,
    timeout_milliseconds integer NOT NULL
);
CREATE UNLOGGED TABLE @extschema@._http_response (
    id bigint, status_code integer, content_type text, headers jsonb, content text,
    timed_out boolean, error_msg text, created timestamptz NOT NULL DEFAULT now()
);
CREATE FUNCTION @extschema@.http_post(url text, body jsonb DEFAULT '{}', params jsonb DEFAULT '{}',
                                      headers jsonb DEFAULT '{"Content-Type": "application/json"}',
                                      timeout_milliseconds integer DEFAULT 5000) RETURNS bigint LANGUAGE sql
AS $$ INSERT INTO net.http_request_queue (method, url, headers, body, timeout_milliseconds)
      VALUES ('POST', url, headers, convert_to(body::text, 'utf8'), timeout_milliseconds) RETURNING id $$;
