-- The platform's roles (cluster-wide), run once as the bootstrap superuser supabase_admin.
-- :'pw' is the password of every login role.
ALTER ROLE supabase_admin WITH SUPERUSER CREATEDB CREATEROLE REPLICATION BYPASSRLS;
CREATE ROLE postgres LOGIN CREATEDB CREATEROLE REPLICATION BYPASSRLS PASSWORD :'pw';
CREATE ROLE supabase_replication_admin LOGIN REPLICATION;
CREATE ROLE supabase_read_only_user LOGIN BYPASSRLS;
GRANT pg_read_all_data TO supabase_read_only_user;
CREATE ROLE anon NOLOGIN NOINHERIT;
CREATE ROLE authenticated NOLOGIN NOINHERIT;
CREATE ROLE service_role NOLOGIN NOINHERIT BYPASSRLS;
CREATE ROLE authenticator LOGIN NOINHERIT PASSWORD :'pw';
GRANT anon, authenticated, service_role, supabase_admin TO authenticator;
CREATE ROLE supabase_auth_admin LOGIN NOINHERIT CREATEROLE NOREPLICATION PASSWORD :'pw';
CREATE ROLE supabase_storage_admin LOGIN NOINHERIT CREATEROLE NOREPLICATION PASSWORD :'pw';
CREATE ROLE dashboard_user NOSUPERUSER CREATEDB CREATEROLE REPLICATION;
CREATE ROLE pgbouncer LOGIN;
GRANT supabase_auth_admin, supabase_storage_admin TO postgres;
GRANT anon, authenticated, service_role TO postgres WITH ADMIN OPTION;  -- PostgreSQL 16+: granting needs ADMIN
GRANT pg_read_all_data, pg_signal_backend TO postgres;
GRANT authenticated, anon TO supabase_storage_admin;
ALTER ROLE anon SET statement_timeout = '3s';
ALTER ROLE authenticated SET statement_timeout = '8s';
ALTER ROLE postgres SET search_path TO "$user", public, extensions;
GRANT SET ON PARAMETER session_replication_role TO postgres;
