-- drkit test stand-in: the shape of pg_graphql's SQL interface, no GraphQL engine
CREATE FUNCTION @extschema@.resolve(query text, variables jsonb DEFAULT '{}', "operationName" text DEFAULT NULL,
                                    extensions jsonb DEFAULT NULL) RETURNS jsonb LANGUAGE sql STABLE
AS $$ SELECT jsonb_build_object('data', NULL, 'errors',
        jsonb_build_array(jsonb_build_object('message', 'pg_graphql stand-in'))) $$;
CREATE FUNCTION @extschema@.comment_directive(comment_ text) RETURNS jsonb LANGUAGE sql IMMUTABLE
AS $$ SELECT NULL::jsonb $$;
CREATE TYPE @extschema@.field_meta_kind AS ENUM ('Constant', 'Query.collection', 'Column', 'Relationship.toMany');
