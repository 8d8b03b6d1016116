"""A restored copy must not act: scheduled and outbound extensions are disarmed inside the restore's transaction.

A verification copy (restore-verify's scratch database) or a new project after `drkit restore` holds
what the source held: pg_cron jobs that send e-mails, pg_net requests that call webhooks, foreign
servers (Supabase `wrappers`) with the credentials of Stripe or Firebase, subscriptions that pull
from a publisher. Left armed, a copy that only had to be *proven* calls the outside world as
production did, an incident of its own. So, before the COMMIT, in the same transaction:

* `cron.job` rows the restore wrote are deactivated (`active = false`);
* `net.http_request_queue` rows queued during the restore (by the restored triggers) are deleted;
* credential-like options (key, secret, token, password, …) of foreign servers the restore created
  are dropped; user mappings (a foreign server's login) are not restored where a `Placement` decides
  (it leaves their archive entries out, and the result counts them), and dropped where the restoring
  role is a superuser (only it can see them);
* subscriptions the restore created are disabled (pg_dump writes them `connect = false` already).

"Wrote" and "created" mean rows and catalog entries whose `xmin` is the restore's own transaction, so
the target's own objects (a project's existing jobs) are never touched. The block ends with a NOTICE
that psql prints to its stderr; `parse` reads the counts from it, and the result says what was
disarmed. `--keep-jobs` (operator restore) leaves everything as restored.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass

MARK = "drkit-disarmed"
_CREDENTIAL = "(key|secret|token|passw|credential|auth|private|cert)"

# Runs inside the restore's transaction (psql, before the COMMIT) or, for a scratch database restored
# with pg_restore --jobs, as one transaction of its own before the swap (`own_xact = false`: every row
# of a scratch database is the restore's).
_BLOCK = """DO $drkit$
DECLARE
    mine constant boolean := %(own)s;
    xid8 constant bigint := txid_current() %% 4294967296;
    n_cron integer := 0; n_net integer := 0; n_opts integer := 0; n_maps integer := 0; n_subs integer := 0;
    r record;
BEGIN
    IF to_regclass('cron.job') IS NOT NULL AND has_table_privilege('cron.job', 'UPDATE')
       AND has_table_privilege('cron.job', 'SELECT') THEN
        EXECUTE 'UPDATE cron.job SET active = false WHERE active AND (NOT $1 OR xmin::text::bigint = $2)'
            USING mine, xid8;
        GET DIAGNOSTICS n_cron = ROW_COUNT;
    END IF;
    IF to_regclass('net.http_request_queue') IS NOT NULL AND has_table_privilege('net.http_request_queue', 'DELETE')
       AND has_table_privilege('net.http_request_queue', 'SELECT') THEN
        EXECUTE 'DELETE FROM net.http_request_queue WHERE NOT $1 OR xmin::text::bigint = $2' USING mine, xid8;
        GET DIAGNOSTICS n_net = ROW_COUNT;
    END IF;
    FOR r IN SELECT s.srvname, split_part(o.opt, '=', 1) AS opt FROM pg_foreign_server s,
             unnest(s.srvoptions) AS o(opt)
             WHERE (NOT mine OR s.xmin::text::bigint = xid8) AND split_part(o.opt, '=', 1) ~* '%(cred)s' LOOP
        EXECUTE format('ALTER SERVER %%I OPTIONS (DROP %%I)', r.srvname, r.opt);
        n_opts := n_opts + 1;
    END LOOP;
    IF (SELECT rolsuper FROM pg_roles WHERE rolname = current_user) THEN  -- only a superuser sees these catalogs
        FOR r IN SELECT s.srvname, CASE WHEN m.umuser = 0 THEN 'PUBLIC' ELSE quote_ident(m.umuser::regrole::text)
                 END AS who FROM pg_user_mapping m JOIN pg_foreign_server s ON s.oid = m.umserver
                 WHERE NOT mine OR m.xmin::text::bigint = xid8 LOOP
            EXECUTE format('DROP USER MAPPING FOR %%s SERVER %%I', r.who, r.srvname);
            n_maps := n_maps + 1;
        END LOOP;
        -- subscriptions: only a superuser sees their xmin (and may alter one it did not create)
        FOR r IN SELECT subname FROM pg_subscription WHERE subenabled AND (NOT mine OR xmin::text::bigint = xid8)
                 AND subdbid = (SELECT oid FROM pg_database WHERE datname = current_database()) LOOP
            EXECUTE format('ALTER SUBSCRIPTION %%I DISABLE', r.subname);
            n_subs := n_subs + 1;
        END LOOP;
    END IF;
    RAISE NOTICE '%(mark)s %%', json_build_object('cron_jobs', n_cron, 'net_requests', n_net,
        'server_credentials', n_opts, 'user_mappings', n_maps, 'subscriptions', n_subs);
END $drkit$;"""


def statement(*, own_transaction: bool = True) -> str:
    """The disarming block (one statement)."""
    return _BLOCK % {"own": "true" if own_transaction else "false", "cred": _CREDENTIAL, "mark": MARK}


def postamble() -> tuple[str, ...]:
    """What psql runs before the COMMIT: the block, its NOTICE made visible (pg_restore's script sets
    client_min_messages = warning)."""
    return ("SET client_min_messages = notice;", statement())


@dataclass(frozen=True)
class Disarmed:
    cron_jobs: int = 0
    net_requests: int = 0
    server_credentials: int = 0
    user_mappings: int = 0
    subscriptions: int = 0

    def to_dict(self) -> dict[str, int]:
        return {"cron_jobs": self.cron_jobs, "net_requests": self.net_requests,
                "server_credentials": self.server_credentials, "user_mappings": self.user_mappings,
                "subscriptions": self.subscriptions}

    def sentence(self) -> str:
        parts = [f"{self.cron_jobs} pg_cron job(s) deactivated" if self.cron_jobs else "",
                 f"{self.net_requests} queued pg_net request(s) removed" if self.net_requests else "",
                 f"{self.server_credentials} foreign-server credential option(s) dropped" if self.server_credentials
                 else "",
                 f"{self.user_mappings} user mapping(s) left out or dropped" if self.user_mappings else "",
                 f"{self.subscriptions} subscription(s) disabled" if self.subscriptions else ""]
        done = [p for p in parts if p]
        return "disarmed: " + (", ".join(done) if done else "nothing to disarm (no jobs, queued requests, "
                                                                "foreign-server credentials or subscriptions)")


_NOTICE = re.compile(re.escape(MARK) + r" (\{.*\})")


def parse(stderr: str) -> Disarmed | None:
    """The counts from the block's NOTICE in psql's stderr (None when it did not run)."""
    found = _NOTICE.findall(stderr)
    if not found:
        return None
    try:
        data = json.loads(found[-1])
        return Disarmed(**{k: int(data.get(k, 0)) for k in Disarmed().to_dict()})
    except (ValueError, TypeError):
        return None
