"""What a faithful restore must bring back besides rows, read from the catalogs, and what a restore lost (pure compare).

Policies, the tables that enforce row-level security, triggers, event triggers, publication
members, extensions and roles, and whether the database is a Supabase project's. Taken by
db-backup in the dump's own snapshot and kept in the manifest (`objects`); restore-verify takes it
again on the restored copy and compares. A restore that loses row-level security policies or
triggers is a failed restore, even when every row arrived.
"""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from drkit.policy import checks

FORMAT = 1
LIMIT = 5000  # names kept per kind (counts are always exact)
# what a Supabase project's database has that a plain PostgreSQL database has not
SUPABASE_ROLES = ("anon", "authenticated", "service_role", "authenticator", "supabase_admin",
                  "supabase_auth_admin", "supabase_storage_admin", "dashboard_user", "pgbouncer",
                  "supabase_functions_admin", "supabase_realtime_admin", "pgsodium_keyholder", "pgsodium_keyiduser",
                  "pgsodium_keymaker", "postgres")
SUPABASE_SCHEMAS = ("auth", "storage")
# what a dump of a Supabase database cannot carry (said in the manifest and the restore plan)
SUPABASE_NOT_IN_DUMP = (
    "Vault and pgsodium secrets: only their ciphertext is in the database; the root key is not",
    "Storage file bytes: storage.objects holds their metadata, the files live in Supabase Storage "
    "(a storage source of config-backup copies them daily; drkit files restore)",
    "role passwords: pg_dump and pg_roles never carry them",
    "replication slots: no dump carries them (create them again on the new primary)",
    "Auth and project settings outside the database (JWT secret, providers, SMTP, API keys)",
)

_SYSTEM = "('pg_catalog', 'information_schema')"
_QUERIES = {
    "extensions": "SELECT e.extname, e.extversion, n.nspname FROM pg_extension e "
                  "JOIN pg_namespace n ON n.oid = e.extnamespace ORDER BY 1",
    "policies": f"SELECT schemaname, tablename, policyname, cmd, roles::text FROM pg_policies "
                f"WHERE schemaname NOT IN {_SYSTEM} ORDER BY 1, 2, 3",
    "triggers": f"SELECT n.nspname, c.relname, t.tgname FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid "
                f"JOIN pg_namespace n ON n.oid = c.relnamespace WHERE NOT t.tgisinternal "
                f"AND n.nspname NOT IN {_SYSTEM} ORDER BY 1, 2, 3",
    "event_triggers": "SELECT evtname, evtevent FROM pg_event_trigger ORDER BY 1",
    "publication_members": "SELECT pubname, schemaname, tablename FROM pg_publication_tables ORDER BY 1, 2, 3",
    "rls_tables": f"SELECT n.nspname, c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
                  f"WHERE c.relrowsecurity AND n.nspname NOT IN {_SYSTEM} ORDER BY 1, 2",
    # what `pg_dumpall --roles-only --no-role-passwords` reads (pg_roles, pg_auth_members), as data
    "roles": "SELECT r.rolname, r.rolcanlogin, r.rolsuper, r.rolbypassrls, "
             "coalesce(array_to_string(array(SELECT g.rolname FROM pg_auth_members m JOIN pg_roles g "
             "ON g.oid = m.roleid WHERE m.member = r.oid ORDER BY 1), ','), ''), "
             "r.rolinherit, r.rolcreatedb, r.rolcreaterole, r.rolreplication, r.rolconnlimit "
             "FROM pg_roles r WHERE r.rolname !~ '^pg_' ORDER BY 1",
    # objects that belong to an extension (pg_dump writes only CREATE EXTENSION for them, and the
    # rows of its configuration tables), and objects of the database that need one of them
    "extension_members": "SELECT e.extname, n.nspname, c.relname, c.relkind::text, "
                         "c.oid = ANY(coalesce(e.extconfig, '{}')) FROM pg_depend d "
                         "JOIN pg_extension e ON d.refclassid = 'pg_extension'::regclass AND d.refobjid = e.oid "
                         "JOIN pg_class c ON d.classid = 'pg_class'::regclass AND d.objid = c.oid "
                         "JOIN pg_namespace n ON n.oid = c.relnamespace WHERE d.deptype = 'e' ORDER BY 1, 2, 3",
    "extension_dependents": "WITH dep AS (SELECT CASE WHEN d.classid = 'pg_rewrite'::regclass THEN "
                            "(SELECT w.ev_class FROM pg_rewrite w WHERE w.oid = d.objid) ELSE d.objid END AS rel, "
                            "x.refobjid AS ext FROM pg_depend d JOIN pg_depend x ON x.classid = d.refclassid "
                            "AND x.objid = d.refobjid AND x.deptype = 'e' AND x.refclassid = 'pg_extension'::regclass "
                            "WHERE d.deptype = 'n' AND d.classid IN ('pg_rewrite'::regclass, 'pg_class'::regclass)) "
                            "SELECT DISTINCT e.extname, n.nspname, c.relname, c.relkind::text FROM dep "
                            "JOIN pg_class c ON c.oid = dep.rel JOIN pg_namespace n ON n.oid = c.relnamespace "
                            "JOIN pg_extension e ON e.oid = dep.ext WHERE NOT EXISTS (SELECT 1 FROM pg_depend m "
                            "WHERE m.classid = 'pg_class'::regclass AND m.objid = c.oid AND m.deptype = 'e') "
                            "ORDER BY 1, 2, 3",
    "schemas": f"SELECT nspname FROM pg_namespace WHERE nspname NOT IN {_SYSTEM} "
               "AND nspname !~ '^pg_(toast|temp)' ORDER BY 1",
    # not carried by any dump: said in the plan (slots), restored disabled or skipped (subscriptions)
    "replication_slots": "SELECT slot_name || ' (' || slot_type || coalesce(', ' || plugin, '') || ')' "
                         "FROM pg_replication_slots ORDER BY 1",
    # foreign servers and the extension that provides their wrapper (a server cannot exist without it)
    "foreign_servers": "SELECT s.srvname, w.fdwname, coalesce(e.extname, '') FROM pg_foreign_server s "
                       "JOIN pg_foreign_data_wrapper w ON w.oid = s.srvfdw LEFT JOIN pg_depend d ON d.classid = "
                       "'pg_foreign_data_wrapper'::regclass AND d.objid = w.oid AND d.deptype = 'e' "
                       "LEFT JOIN pg_extension e ON e.oid = d.refobjid ORDER BY 1",
    "subscriptions": "SELECT subname FROM pg_subscription WHERE subdbid = (SELECT oid FROM pg_database "
                     "WHERE datname = current_database()) ORDER BY 1",
}
# pg_cron's jobs (name and schedule only: a job's command may hold a secret), when the role may read them
_CRON_READABLE = "SELECT to_regclass('cron.job') IS NOT NULL AND has_table_privilege('cron.job', 'SELECT')"
_CRON_JOBS = "SELECT coalesce(jobname, 'job ' || jobid), schedule, active FROM cron.job ORDER BY jobid"


def take(cur: Any) -> dict[str, Any]:
    """Read the catalogs with `cur` (inside the caller's transaction; psycopg errors propagate)."""
    rows = {}
    for kind, query in _QUERIES.items():
        cur.execute(query)
        rows[kind] = cur.fetchall()
    names = {str(r[0]) for r in rows["roles"]}
    schemas = [str(s) for (s,) in rows["schemas"]]
    supabase = {"anon", "authenticated", "service_role"} <= names and set(SUPABASE_SCHEMAS) <= set(schemas)
    roles = [{"name": str(n), "login": bool(login), "superuser": bool(sup), "bypassrls": bool(bypass),
              "member_of": [g for g in str(member_of).split(",") if g], "inherit": bool(inherit),
              "createdb": bool(createdb), "createrole": bool(createrole), "replication": bool(replication),
              "connection_limit": int(connlimit), "platform": platform_role(str(n), supabase)}
             for n, login, sup, bypass, member_of, inherit, createdb, createrole, replication, connlimit in rows["roles"]]
    members: dict[str, dict[str, Any]] = {}
    for ext, schema, name, _relkind, config in rows["extension_members"]:
        entry = members.setdefault(str(ext), {"relations": [], "config_tables": [], "dependents": []})
        entry["relations"].append(f"{schema}.{name}")
        if config:
            entry["config_tables"].append(f"{schema}.{name}")
    for ext, schema, name, _relkind in rows["extension_dependents"]:
        members.setdefault(str(ext), {"relations": [], "config_tables": [], "dependents": []})["dependents"].append(
            f"{schema}.{name}")
    out: dict[str, Any] = {
        "format": FORMAT,
        "supabase": supabase,
        "extensions": [{"name": str(n), "version": str(v), "schema": str(s),
                        **{k: v[:LIMIT] for k, v in members.get(str(n), {}).items()}} for n, v, s in rows["extensions"]],
        "policies": [{"table": f"{s}.{t}", "name": str(p), "command": str(c), "roles": str(r)}
                     for s, t, p, c, r in rows["policies"]][:LIMIT],
        "triggers": [f"{s}.{t}.{n}" for s, t, n in rows["triggers"]][:LIMIT],
        "event_triggers": [f"{n} ({e})" for n, e in rows["event_triggers"]],
        "publication_members": [f"{p}: {s}.{t}" for p, s, t in rows["publication_members"]][:LIMIT],
        "rls_tables": [f"{s}.{t}" for s, t in rows["rls_tables"]][:LIMIT],
        "roles": roles[:LIMIT],
        "schemas": schemas[:LIMIT],
        "counts": {kind: len(rows[kind]) for kind in ("policies", "triggers", "event_triggers",
                                                      "publication_members", "rls_tables", "roles")},
    }
    cur.execute(_CRON_READABLE)
    jobs: list[Any] = []
    if cur.fetchone()[0]:
        cur.execute(_CRON_JOBS)
        jobs = cur.fetchall()
    out["cron_jobs"] = [{"name": str(n), "schedule": str(s), "active": bool(a)} for n, s, a in jobs][:LIMIT]
    out["counts"]["cron_jobs"] = len(jobs)
    out["replication_slots"] = [str(r[0]) for r in rows["replication_slots"]][:LIMIT]
    out["subscriptions"] = [str(r[0]) for r in rows["subscriptions"]][:LIMIT]
    cur.execute("SELECT rolsuper FROM pg_roles WHERE rolname = current_user")
    out["subscriptions_dumped"] = bool(cur.fetchone()[0])  # pg_dump leaves them out for anyone else
    out["foreign_servers"] = [{"name": str(n), "wrapper": str(w), "extension": str(e)}
                              for n, w, e in rows["foreign_servers"]][:LIMIT]
    if supabase:
        out["not_in_dump"] = list(SUPABASE_NOT_IN_DUMP)
    return out


def platform_role(name: str, supabase: bool) -> bool:
    """A role the platform (Supabase) creates in every project: never restored, never altered."""
    return supabase and (name in SUPABASE_ROLES or name.startswith(("supabase_", "pgsodium_")))


def _policy_keys(objects: Mapping[str, Any]) -> set[str]:
    return {f"{p['table']}: {p['name']}" for p in objects.get("policies") or []}


def _table_of(kind: str, item: str) -> str:
    """The table a compared item is on: policies `s.t: name`, rls_tables `s.t`, triggers `s.t.name`,
    publication members `pub: s.t`."""
    if kind == "publication_members":
        return item.split(": ", 1)[-1]
    if kind == "policies":
        return item.split(": ", 1)[0]
    if kind == "triggers":
        return item.rsplit(".", 1)[0]
    return item


def compare(source: Mapping[str, Any], restored: Mapping[str, Any],
            exclude: set[str] | None = None) -> list[checks.Outcome]:
    """What the restore lost against the backup's inventory: policies, RLS switches, triggers, publication
    members; those on `exclude` tables (left out on purpose) are not expected."""
    exclude = exclude or set()
    out = []
    for label, kind, keys in (("policies", "policies", _policy_keys),
                              ("row-level security", "rls_tables", None),
                              ("triggers", "triggers", None),
                              ("publication members", "publication_members", None)):
        if kind not in source:
            continue
        want = keys(source) if keys else set(source.get(kind) or [])
        have = keys(restored) if keys else set(restored.get(kind) or [])
        lost = sorted(x for x in want - have if _table_of(kind, x) not in exclude)
        complete = int((source.get("counts") or {}).get(kind, len(want))) == len(want)  # lists capped at LIMIT
        detail = (f"{len(want)} identical" if not lost else
                  f"{len(lost)} of {len(want)} missing after the restore: {', '.join(lost[:10])}")
        if not complete:
            detail += f" (compared the first {LIMIT} of {source['counts'][kind]})"
        out.append(checks.Outcome(label, not lost, detail, str(len(want) - len(lost))))
    return out


_TARGET_QUERIES = {
    "available_extensions": "SELECT name FROM pg_available_extensions",
    "installed_extensions": "SELECT extname FROM pg_extension",
    "roles": "SELECT rolname FROM pg_roles",
    "schemas": "SELECT nspname FROM pg_namespace",
    "triggers": "SELECT n.nspname || '|' || c.relname || ' ' || t.tgname FROM pg_trigger t JOIN pg_class c "
                "ON c.oid = t.tgrelid JOIN pg_namespace n ON n.oid = c.relnamespace WHERE NOT t.tgisinternal",
    "policies": "SELECT schemaname || '|' || tablename || ' ' || policyname FROM pg_policies",
    "functions": "SELECT n.nspname || '|' || p.proname || '(' || oidvectortypes(p.proargtypes) || ')' "
                 "FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace",
    "rls_tables": "SELECT n.nspname || '|' || c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
                  "WHERE c.relrowsecurity",
    "tables": "SELECT n.nspname || '|' || c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
              "WHERE c.relkind IN ('r', 'p', 'v', 'm', 'S', 'f')",
    "event_triggers": "SELECT evtname FROM pg_event_trigger",
    "publications": "SELECT pubname FROM pg_publication",
}


def target(cur: Any) -> dict[str, Any]:
    """What a restore target already has and who connects to it: the facts `placement` decides on."""
    out: dict[str, Any] = {}
    for kind, query in _TARGET_QUERIES.items():
        cur.execute(query)
        out[kind] = {str(r[0]) for r in cur.fetchall()}
    cur.execute("SELECT rolsuper, rolcreaterole FROM pg_roles WHERE rolname = current_user")
    out["superuser"], out["createrole"] = (bool(v) for v in cur.fetchone())
    cur.execute("SELECT current_user")
    out["user"] = str(cur.fetchone()[0])
    # the connecting role's own default privileges: they would add grants to every object the restore creates
    cur.execute("SELECT coalesce(n.nspname, ''), d.defaclobjtype::text, array(SELECT CASE WHEN a.grantee = 0 "
                "THEN 'PUBLIC' ELSE a.grantee::regrole::text END FROM aclexplode(d.defaclacl) a ORDER BY 1) "
                "FROM pg_default_acl d LEFT JOIN pg_namespace n ON n.oid = d.defaclnamespace "
                "WHERE d.defaclrole = (SELECT oid FROM pg_roles WHERE rolname = current_user) ORDER BY 1, 2")
    out["default_acls"] = [(str(s), str(t), sorted(set(g))) for s, t, g in cur.fetchall()]
    out["supabase"] = {"anon", "authenticated", "service_role"} <= out["roles"] and set(SUPABASE_SCHEMAS) <= out["schemas"]
    # what the connecting role may write where a project's platform owns the tables (checked before a restore)
    cur.execute(f"SELECT n.nspname || '|' || c.relname, c.relkind::text FROM pg_class c JOIN pg_namespace n "
                f"ON n.oid = c.relnamespace WHERE c.relkind IN ('r', 'p', 'S') AND n.nspname NOT IN {_SYSTEM} "
                "AND n.nspname !~ '^pg_' AND CASE WHEN c.relkind = 'S' THEN has_sequence_privilege(c.oid, 'UPDATE') "
                "ELSE has_table_privilege(c.oid, 'INSERT') END")
    writable = cur.fetchall()
    out["writable"] = {str(k) for k, kind in writable if kind != "S"}
    out["writable_sequences"] = {str(k) for k, kind in writable if kind == "S"}
    # each sequence a table owns (serial, identity): its SEQUENCE SET goes with the table's rows
    cur.execute("SELECT sn.nspname || '|' || s.relname, tn.nspname || '.' || t.relname FROM pg_depend d "
                "JOIN pg_class s ON s.oid = d.objid AND s.relkind = 'S' JOIN pg_namespace sn ON sn.oid = s.relnamespace "
                "JOIN pg_class t ON t.oid = d.refobjid JOIN pg_namespace tn ON tn.oid = t.relnamespace "
                "WHERE d.classid = 'pg_class'::regclass AND d.refclassid = 'pg_class'::regclass "
                f"AND d.deptype IN ('a', 'i') AND sn.nspname NOT IN {_SYSTEM}")
    out["owned_sequences"] = {str(k): str(v) for k, v in cur.fetchall()}
    cur.execute("SELECT pg_has_role(current_user, 'pg_create_subscription', 'USAGE') FROM pg_roles "
                "WHERE rolname = 'pg_create_subscription'")
    row = cur.fetchone()
    out["create_subscription"] = bool(row and row[0])
    return out
