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
                  "supabase_auth_admin", "supabase_storage_admin")
SUPABASE_SCHEMAS = ("auth", "storage")
# what a dump of a Supabase database cannot carry (said in the manifest and the restore plan)
SUPABASE_NOT_IN_DUMP = (
    "Vault and pgsodium secrets: only their ciphertext is in the database; the root key is not",
    "Storage file bytes: storage.objects holds their metadata, the files live in Supabase Storage",
    "role passwords: pg_dump and pg_roles never carry them",
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
    "roles": "SELECT r.rolname, r.rolcanlogin, r.rolsuper, r.rolbypassrls, "
             "coalesce(array_to_string(array(SELECT g.rolname FROM pg_auth_members m JOIN pg_roles g "
             "ON g.oid = m.roleid WHERE m.member = r.oid ORDER BY 1), ','), '') "
             "FROM pg_roles r WHERE r.rolname !~ '^pg_' ORDER BY 1",
    "schemas": f"SELECT nspname FROM pg_namespace WHERE nspname NOT IN {_SYSTEM} "
               "AND nspname !~ '^pg_(toast|temp)' ORDER BY 1",
}


def take(cur: Any) -> dict[str, Any]:
    """Read the catalogs with `cur` (inside the caller's transaction; psycopg errors propagate)."""
    rows = {}
    for kind, query in _QUERIES.items():
        cur.execute(query)
        rows[kind] = cur.fetchall()
    roles = [{"name": str(n), "login": bool(login), "superuser": bool(sup), "bypassrls": bool(bypass),
              "member_of": [g for g in str(member_of).split(",") if g], "platform": str(n) in SUPABASE_ROLES
              or str(n).startswith("supabase_")} for n, login, sup, bypass, member_of in rows["roles"]]
    names = {r["name"] for r in roles}
    schemas = [str(s) for (s,) in rows["schemas"]]
    supabase = {"anon", "authenticated", "service_role"} <= names and set(SUPABASE_SCHEMAS) <= set(schemas)
    out: dict[str, Any] = {
        "format": FORMAT,
        "supabase": supabase,
        "extensions": [{"name": str(n), "version": str(v), "schema": str(s)} for n, v, s in rows["extensions"]],
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
    if supabase:
        out["not_in_dump"] = list(SUPABASE_NOT_IN_DUMP)
    return out


def _policy_keys(objects: Mapping[str, Any]) -> set[str]:
    return {f"{p['table']}: {p['name']}" for p in objects.get("policies") or []}


def compare(source: Mapping[str, Any], restored: Mapping[str, Any]) -> list[checks.Outcome]:
    """What the restore lost against the backup's inventory: policies, RLS switches, triggers, publication members."""
    out = []
    for label, kind, keys in (("policies", "policies", _policy_keys),
                              ("row-level security", "rls_tables", None),
                              ("triggers", "triggers", None),
                              ("publication members", "publication_members", None)):
        if kind not in source:
            continue
        want = keys(source) if keys else set(source.get(kind) or [])
        have = keys(restored) if keys else set(restored.get(kind) or [])
        lost = sorted(want - have)
        complete = int((source.get("counts") or {}).get(kind, len(want))) == len(want)  # lists capped at LIMIT
        detail = (f"{len(want)} identical" if not lost else
                  f"{len(lost)} of {len(want)} missing after the restore: {', '.join(lost[:10])}")
        if not complete:
            detail += f" (compared the first {LIMIT} of {source['counts'][kind]})"
        out.append(checks.Outcome(label, not lost, detail, str(len(want) - len(lost))))
    return out
