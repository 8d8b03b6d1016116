-- drkit test stand-in: cron.job is a configuration table (pg_dump carries its rows, as pg_cron's does);
-- schedule() runs with the extension owner's rights (the platform revokes direct writes from postgres)
CREATE TABLE cron.job (
    jobid bigserial PRIMARY KEY,
    schedule text NOT NULL,
    command text NOT NULL,
    nodename text NOT NULL DEFAULT 'localhost',
    nodeport integer NOT NULL DEFAULT 5432,
    database text NOT NULL DEFAULT current_database(),
    username text NOT NULL DEFAULT current_user,
    active boolean NOT NULL DEFAULT true,
    jobname text
);
CREATE UNIQUE INDEX jobname_username_uniq ON cron.job (jobname, username);
SELECT pg_catalog.pg_extension_config_dump('cron.job', '');
SELECT pg_catalog.pg_extension_config_dump('cron.job_jobid_seq', '');
CREATE TABLE cron.job_run_details (
    jobid bigint, runid bigserial PRIMARY KEY, job_pid integer, database text, username text, command text,
    status text, return_message text, start_time timestamptz, end_time timestamptz
);
CREATE FUNCTION cron.schedule(job_name text, schedule text, command text) RETURNS bigint LANGUAGE sql
SECURITY DEFINER SET search_path = '' AS $$
    INSERT INTO cron.job (jobname, schedule, command, username) VALUES (job_name, schedule, command, session_user)
    ON CONFLICT (jobname, username) DO UPDATE SET schedule = excluded.schedule, command = excluded.command
    RETURNING jobid $$;
CREATE FUNCTION cron.unschedule(job_name text) RETURNS boolean LANGUAGE sql SECURITY DEFINER SET search_path = ''
AS $$ WITH gone AS (DELETE FROM cron.job WHERE jobname = job_name RETURNING 1) SELECT count(*) > 0 FROM gone $$;
