"""Which entries of a backup a restore takes into a given target, and what it creates first (pure decisions).

A backup's archive entries (as `pg_restore --file=-` heads them: kind, schema, name) meet a
target whose facts `inventory.target` read. Two kinds of target:

* **supabase** — a new Supabase project, restored into as its `postgres` role. The project
  already has the platform: its roles, schemas (`auth`, `storage`, `realtime`, `vault`, …),
  extensions, event triggers and the `supabase_realtime` publication. The restore creates the
  source's *custom* roles (never the platform's), takes user schemas in full, and from platform
  schemas only the user's rows (auth except its migration history; storage except its
  migrations) with their sequences, and the user's own triggers, policies, RLS switches and
  functions there. Data loads with `session_replication_role = replica`, so the platform's
  foreign keys and triggers neither reject nor rewrite rows loaded in archive order.
* **plain** — a PostgreSQL server (restore-verify's staging). Missing roles are created
  `NOLOGIN` (existing roles are never altered), and whatever needs an extension the server
  does not have is skipped *by name*: the extension, its configuration tables' rows, and the
  views or tables that depend on its objects. Everything else restores strictly.

Every skip has a reason; the caller reports the list and fails a verification when it grows.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from drkit.core.errors import ConfigError
from drkit.postgres import platform
from drkit.postgres.inventory import platform_role
from drkit.postgres.platform import PLATFORM_SCHEMAS

# entry kinds whose name starts with the table's name ("todos todos_touch")
_ON_TABLE = frozenset({"TRIGGER", "POLICY", "CONSTRAINT", "FK CONSTRAINT", "RULE"})
_RELATION = frozenset({"TABLE", "TABLE DATA", "VIEW", "MATERIALIZED VIEW", "SEQUENCE", "SEQUENCE SET",
                       "SEQUENCE OWNED BY", "ROW SECURITY", "DEFAULT", "FOREIGN TABLE"})
_FOR_ROLE = re.compile(r'FOR ROLE ("(?:[^"]|"")+"|\S+)')
PROJECT_HAS_IT = "the project has its own"
USER_MAPPING = ("a foreign server's login (credentials): a restored copy calls no external service; create it "
                "again, or restore with --keep-jobs")
SUBSCRIPTION = ("only a superuser or a member of pg_create_subscription may create subscriptions: create it again "
                "on the new primary once its publisher is checked (a copy must not pull from production)")
_DEFACL_KINDS = {"r": "TABLES", "S": "SEQUENCES", "f": "FUNCTIONS", "T": "TYPES", "n": "SCHEMAS"}


@dataclass(frozen=True)
class Entry:
    """One archive entry, as the restore script heads it."""
    kind: str
    schema: str | None
    name: str
    statement: str = ""  # its first statement line

    @property
    def label(self) -> str:
        return f"{self.kind} {self.schema + '.' if self.schema else ''}{self.name}"

    @property
    def relation(self) -> str | None:
        """`schema.table` the entry belongs to, where that is plain from its heading."""
        if self.schema is None:
            return None
        if self.kind in _RELATION:
            return f"{self.schema}.{self.name}"
        if self.kind in _ON_TABLE:
            return f"{self.schema}.{self.name.split(' ', 1)[0]}"
        if self.kind in ("ACL", "COMMENT") and " " in self.name:
            what, _, rest = self.name.partition(" ")
            if what in ("TABLE", "VIEW", "SEQUENCE", "COLUMN", "MATERIALIZED"):
                rel = rest.split(" ", 1)[-1] if what == "MATERIALIZED" else rest
                return f"{self.schema}.{rel.split('.', 1)[0]}"
        return None


def _ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


@dataclass
class Placement:
    mode: str  # "supabase" | "plain"
    source: Mapping[str, Any]  # the manifest's `objects` (inventory.take of the source)
    target: Mapping[str, Any]  # inventory.target of the target database
    source_tables: tuple[str, ...] = ()  # the manifest's tables, `schema.name`
    keep_jobs: bool = False  # restore user mappings too (a restored copy calls no external service otherwise)
    skip_relations: dict[str, str] = field(default_factory=dict)
    unavailable: dict[str, str] = field(default_factory=dict)
    roles_created: list[str] = field(default_factory=list)
    user_data: list[str] = field(default_factory=list)  # platform tables whose rows this restore writes
    skip_servers: dict[str, str] = field(default_factory=dict)  # foreign servers whose wrapper is unavailable

    def __post_init__(self) -> None:
        available, installed = set(self.target["available_extensions"]), set(self.target["installed_extensions"])
        for ext in self.source.get("extensions") or []:
            name = ext["name"]
            if name in installed or name in available:
                continue
            why = f"needs extension {name}, which this server does not have"
            self.unavailable[name] = why
            for rel in [*ext.get("config_tables", []), *ext.get("dependents", []), *ext.get("relations", [])]:
                self.skip_relations.setdefault(rel, why)
        for server in self.source.get("foreign_servers") or []:
            if server.get("extension") in self.unavailable:
                self.skip_servers[str(server["name"])] = self.unavailable[server["extension"]]
        if self.mode == "supabase" and self.unavailable:
            raise ConfigError(f"the target project does not offer the extension(s) {', '.join(sorted(self.unavailable))} "
                              "that this backup uses: enable them in the project (Database > Extensions) or restore "
                              "into a project that has them. Nothing was changed.")
        if self.mode == "supabase":
            self._place_platform_tables()
        missing = self._roles_to_create()
        if missing and not (self.target["superuser"] or self.target["createrole"]):
            raise ConfigError(f"the backup's policies and grants name roles this server lacks "
                              f"({', '.join(missing[:10])}), and {self.target['user']} may not create roles: create "
                              "them NOLOGIN, or grant CREATEROLE. Nothing was changed.")
        self.roles_created = missing

    # -- what exists -------------------------------------------------------------------------
    @property
    def platform_schemas(self) -> set[str]:
        return set(PLATFORM_SCHEMAS & set(self.target["schemas"])) if self.mode == "supabase" else set()

    def _platform_user_data(self, schema: str, name: str) -> bool:
        return f"{schema}.{name}" in self.user_data

    def _place_platform_tables(self) -> None:
        """Rows of platform tables: the declared user data is restored (the project role must be able to
        write every such table: checked here, before anything starts); every other table is skipped by name."""
        missing, unwritable = [], []
        for rel in self.source_tables:
            schema, name = rel.split(".", 1)
            if schema not in self.platform_schemas:
                continue
            why = platform.skip_reason(rel)
            if why is not None:
                self.skip_relations.setdefault(rel, "platform data: " + why)
            elif f"{schema}|{name}" not in self.target["tables"]:
                missing.append(rel)
            elif f"{schema}|{name}" not in self.target.get("writable", set()):
                unwritable.append(rel)
            else:
                self.user_data.append(rel)
        owned = self.target.get("owned_sequences") or {}
        writable_seqs = self.target.get("writable_sequences", set())
        unwritable += [seq.replace("|", ".") for seq, table in sorted(owned.items())
                       if table in self.user_data and seq not in writable_seqs]
        user = self.target["user"]
        if missing:
            raise ConfigError(f"the target project has no {', '.join(missing)}, which hold(s) the users' data in this "
                              "backup: the project runs an older platform version than the source. Upgrade the "
                              "project (Settings > Infrastructure) or restore into a new one. Nothing was changed.")
        if unwritable:
            raise ConfigError(f"{user} may not write {', '.join(unwritable)} in the target project, and the backup "
                              "holds the users' rows there: grant INSERT on them to "
                              f"{user} (or restore as a role that may), then run the restore again. Checked before "
                              "the restore started: nothing was changed.")

    def _source_roles(self) -> list[dict[str, Any]]:
        return [r for r in self.source.get("roles") or [] if not str(r["name"]).startswith("pg_")]

    def _roles_to_create(self) -> list[str]:
        have = set(self.target["roles"])
        return [r["name"] for r in self._source_roles() if r["name"] not in have
                and not (self.mode == "supabase" and r.get("platform"))]

    # -- what runs first -----------------------------------------------------------------------
    def preamble(self) -> list[str]:
        """Statements sent inside the restore's transaction, before the archive's first entry."""
        out = []
        created = set(self.roles_created)
        by_name = {r["name"]: r for r in self._source_roles()}
        for name in self.roles_created:
            r = by_name[name]
            if self.mode == "supabase":  # the source's attributes a project's postgres may give
                attrs = ["LOGIN" if r.get("login") else "NOLOGIN", "INHERIT" if r.get("inherit", True) else "NOINHERIT"]
                attrs += ["CREATEDB"] if r.get("createdb") else []
                attrs += ["CREATEROLE"] if r.get("createrole") else []
                limit = int(r.get("connection_limit", -1))
                attrs += [f"CONNECTION LIMIT {limit}"] if limit >= 0 else []
            else:  # staging: a name for policies and grants to point at, no more
                attrs = ["NOLOGIN"]
            out.append(f"CREATE ROLE {_ident(name)} {' '.join(attrs)};")
        exists = set(self.target["roles"]) | created
        for name in self.roles_created:
            for group in by_name[name].get("member_of") or []:
                if group in exists and (group in created or self.mode == "supabase"):
                    out.append(f"GRANT {_ident(group)} TO {_ident(name)};")
        if self.mode == "supabase":
            out.append("SET session_replication_role = replica;")
            # The project's default privileges for the restoring role would grant anon/authenticated
            # access to every object the restore creates, beyond what the archive's ACLs say (a view the
            # source kept from anon would be readable). Cleared here; the archive's own DEFAULT ACL
            # entries, restored last, set the source's again.
            user = _ident(str(self.target["user"]))
            for schema, objtype, grantees in self.target.get("default_acls") or []:
                kind = _DEFACL_KINDS.get(objtype)
                if kind and grantees:
                    where = f" IN SCHEMA {_ident(schema)}" if schema else ""
                    out.append(f"ALTER DEFAULT PRIVILEGES FOR ROLE {user}{where} REVOKE ALL ON {kind} FROM "
                               + ", ".join(g if g == "PUBLIC" else g for g in grantees) + ";")
        return out

    # -- what each entry does -------------------------------------------------------------------
    def decide(self, e: Entry) -> str | None:
        """None to restore the entry, or why it is skipped."""
        if e.kind == "EXTENSION":
            if e.name in self.unavailable:
                return self.unavailable[e.name]
            if self.mode == "supabase" and e.name in self.target["installed_extensions"]:
                return "installed in the project"
            return None
        if e.kind == "COMMENT" and e.schema is None and e.name.startswith("EXTENSION "):
            ext = e.name.split(" ", 1)[1]
            if ext in self.unavailable:
                return self.unavailable[ext]
            if self.mode == "supabase" and ext in self.target["installed_extensions"]:
                return "the project's own extension"
            return None
        rel = e.relation
        if rel is not None and rel in self.skip_relations:
            if self.mode == "supabase" and e.kind in ("TRIGGER", "POLICY", "ROW SECURITY"):
                pass  # the user's own objects on platform tables are decided below
            else:
                return self.skip_relations[rel]
        if e.kind == "EVENT TRIGGER":
            if e.name in self.target["event_triggers"]:
                return PROJECT_HAS_IT
            if not self.target["superuser"]:
                return "only a superuser can create event triggers"
            return None
        if e.kind == "PUBLICATION" and e.name in self.target["publications"]:
            return PROJECT_HAS_IT
        if e.kind == "SERVER" and e.name in self.skip_servers:
            return self.skip_servers[e.name]
        if e.kind == "USER MAPPING":
            server = e.name.rsplit(" SERVER ", 1)[-1]
            if server in self.skip_servers:
                return self.skip_servers[server]
            if not self.keep_jobs:
                return USER_MAPPING
        if e.kind in ("SUBSCRIPTION", "SUBSCRIPTION TABLE") and not (
                self.target["superuser"] or self.target.get("create_subscription")):
            return SUBSCRIPTION
        if self.mode != "supabase":
            return None
        if e.kind == "DEFAULT ACL":
            m = _FOR_ROLE.search(e.statement)
            role = m.group(1).strip('"') if m else ""
            platform = platform_role(role, True) or any(r["name"] == role and r.get("platform")
                                                        for r in self._source_roles())
            if platform and role != self.target["user"]:
                return "default privileges of a platform role: " + PROJECT_HAS_IT
        if e.schema is None:
            if e.kind == "SCHEMA" and e.name in self.target["schemas"]:
                return PROJECT_HAS_IT
            if e.kind in ("ACL", "COMMENT") and e.name.startswith("SCHEMA ") and e.name[7:] in self.platform_schemas:
                return PROJECT_HAS_IT
            return None
        if e.schema not in self.platform_schemas:
            return None
        key = f"{e.schema}|{e.name}"
        if e.kind == "TABLE DATA":
            return None if self._platform_user_data(e.schema, e.name) else "platform data: " + PROJECT_HAS_IT
        if e.kind == "SEQUENCE SET":  # with its table's rows (an id the restored rows use is never handed out again)
            owner = (self.target.get("owned_sequences") or {}).get(key)
            return None if owner in self.user_data else "platform data: " + PROJECT_HAS_IT
        existing = {"TRIGGER": "triggers", "POLICY": "policies", "ROW SECURITY": "rls_tables", "FUNCTION": "functions"}
        if e.kind in existing:
            return PROJECT_HAS_IT if key in self.target[existing[e.kind]] else None
        return "platform object: " + PROJECT_HAS_IT

    def not_restored(self) -> dict[str, str]:
        """Tables whose rows this restore does not bring (row counts are not compared for them)."""
        return dict(self.skip_relations)

    def lines(self) -> list[str]:
        """What the plan says before anything runs."""
        out = []
        if self.mode == "supabase":
            out.append("into a Supabase project: custom roles, user schemas in full; from platform schemas only the "
                       "user's rows (auth without its migration history, storage buckets and objects) and the user's "
                       "triggers and policies; data loaded with session_replication_role = replica, in one transaction")
            if self.user_data:
                out.append(f"writes the users' rows of {len(self.user_data)} platform tables ({self.target['user']} may "
                           "write each: checked)")
            platform_skips = sorted(r for r, why in self.skip_relations.items() if why.startswith("platform data: "))
            if platform_skips:
                out.append(f"skips by name the rows of {len(platform_skips)} platform tables: "
                           + ", ".join(platform_skips[:8]) + (" …" if len(platform_skips) > 8 else "")
                           + " (the result says why for each)")
        jobs = int((self.source.get("counts") or {}).get("cron_jobs", 0) or 0)
        slots = self.source.get("replication_slots") or []
        subs = self.source.get("subscriptions") or []
        if self.keep_jobs:
            out.append("keeps jobs armed (--keep-jobs): pg_cron jobs, foreign-server credentials and user mappings "
                       "are restored as they were")
        else:
            out.append("disarms the copy inside the transaction: restored pg_cron jobs inactive, pg_net queue "
                       "emptied, foreign-server credentials dropped, user mappings left out"
                       + (f" ({jobs} pg_cron jobs in the backup)" if jobs else ""))
        if subs and self.source.get("subscriptions_dumped"):
            out.append(f"subscriptions in the backup ({', '.join(subs[:5])}): restored disabled when "
                       f"{self.target['user']} may create them, else skipped by name")
        elif subs:
            out.append(f"subscriptions of the source ({', '.join(subs[:5])}) are not in this backup (pg_dump leaves "
                       "them out for a role that is not a superuser): create them again on the new primary once "
                       "their publisher is checked")
        if slots:
            out.append(f"replication slots of the source ({', '.join(slots[:5])}) are not in any dump: create them "
                       "again on the new primary for the consumers that need them")
        if self.roles_created:
            out.append(f"creates roles {', '.join(self.roles_created)}"
                       + (" (NOLOGIN)" if self.mode == "plain" else " (no passwords: set them before use)"))
        for ext, why in sorted(self.unavailable.items()):
            rels = sorted(r for r, w in self.skip_relations.items() if w == why)
            out.append(f"skips extension {ext} ({why.split(',')[0]})" + (f" and {', '.join(rels)}" if rels else ""))
        return out
