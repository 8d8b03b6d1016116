"""What of a Supabase project's platform schemas is the user's data, and what the platform owns (pure tables).

A new project already has the platform: its schemas, tables, functions and migration history,
written by the platform's own services (auth, storage, realtime, …) and changed every month.
A restore into a project takes **data** from a platform schema only for the tables declared
here as user data, each with its reason; every other platform table is skipped *by name* and
reported, so a table the platform adds next month is skipped (and named) rather than written
into with a privilege the project role does not have. `classify` says which is which, and
tests/unit/test_supabase_platform.py fails for any table in the fixture (built from the newest
upstream migrations) that neither list names: the next platform change is a red test, not a
failed restore.

The schema lists mirror the Supabase CLI's own dump exclusions, supabase/cli
`apps/cli-go/pkg/migration/dump.go` (`InternalSchemas`, `excludedSchemas`) and
`apps/cli-go/pkg/migration/scripts/dump_data.sh` (the migration tables it leaves out of a data
dump), as of supabase/cli 1d1e719 (2026-06-01).
"""

from __future__ import annotations

import fnmatch
from collections.abc import Iterable
from dataclasses import dataclass

# Schemas the platform (or an extension it installs) owns: CLI `InternalSchemas`, without the
# pg_* and information_schema patterns (never user data, never dumped by drkit either).
PLATFORM_SCHEMAS = frozenset({
    "_analytics", "_realtime", "_supavisor", "auth", "etl", "extensions", "pgbouncer", "realtime", "storage",
    "supabase_functions", "supabase_migrations", "cron", "dbdev", "graphql", "graphql_public", "net", "pgmq",
    "pgsodium", "pgsodium_masks", "pgtle", "repack", "tiger", "tiger_data", "topology", "vault", "storage_vectors",
})
PLATFORM_SCHEMA_PATTERNS = ("timescaledb_*", "_timescaledb_*")

# The user's rows in platform schemas: restored into a new project (the project role must be able
# to write each one; `Placement` checks that before anything starts).
_AUTH_USERS = "the project's users and their sign-in state: without them nobody can log in"
USER_DATA: dict[str, str] = {
    "auth.users": "the project's users (every profile, todo and invoice points at one)",
    "auth.identities": "how each user signs in (email, OAuth providers)",
    "auth.sessions": _AUTH_USERS,
    "auth.refresh_tokens": _AUTH_USERS,
    "auth.mfa_factors": "users' second factors (TOTP, phone, WebAuthn): without them MFA users are locked out",
    "auth.mfa_challenges": _AUTH_USERS,
    "auth.mfa_amr_claims": _AUTH_USERS,
    "auth.one_time_tokens": "pending confirmation, recovery and magic-link tokens",
    "auth.flow_state": "OAuth/PKCE sign-ins in progress",
    "auth.sso_providers": "the project's SAML single sign-on providers",
    "auth.sso_domains": "the domains routed to each SSO provider",
    "auth.saml_providers": "SAML metadata of each SSO provider",
    "auth.saml_relay_states": "SAML sign-ins in progress",
    "auth.audit_log_entries": "the auth audit trail (evidence after an incident)",
    "auth.instances": "the auth server's instance row, which users point at",
    "auth.oauth_clients": "OAuth apps registered with the project (Supabase as an OAuth server)",
    "auth.oauth_authorizations": "OAuth authorizations granted by users",
    "auth.oauth_consents": "the scopes users consented to",
    "auth.oauth_client_states": "OAuth client state in progress",
    "auth.custom_oauth_providers": "the project's own OAuth/OIDC providers",
    "auth.webauthn_credentials": "users' passkeys: without them passkey users are locked out",
    "auth.webauthn_challenges": "passkey ceremonies in progress",
    "storage.buckets": "the project's Storage buckets (their settings and policies' subject)",
    "storage.objects": "the metadata of every stored file (the bytes are in Storage: drkit files restore)",
}

# Platform tables skipped by name, with the reason the plan and the result give (fnmatch patterns).
PLATFORM_DATA: dict[str, str] = {
    "auth.schema_migrations": "the auth server's migration history: the new project has its own (restoring it "
                              "fails on duplicate keys)",
    "storage.migrations": "the storage server's migration history: the new project has its own (restoring it fails "
                          "on duplicate keys)",
    "supabase_functions.migrations": "the webhooks schema's migration history: the new project has its own",
    "supabase_migrations.*": "the Supabase CLI's migration history of the source project (`supabase db push` "
                             "writes the new project's); the CLI leaves it out of data dumps too",
    "realtime.*": "Realtime's own state (migrations, subscriptions, broadcast messages): the new project's "
                  "Realtime server keeps its own",
    "_realtime.*": "Realtime's own state: the new project's Realtime server keeps its own",
    "storage.buckets_vectors": "vector buckets: provisioned by the platform's vector service, the project role "
                               "may not write them (permission denied); create them again in the new project",
    "storage.vector_indexes": "indexes of vector buckets: provisioned by the platform's vector service, the "
                              "project role may not write them; create them again with their buckets",
    "storage.buckets_analytics": "analytics (Iceberg) buckets: provisioned by the platform's catalog service; "
                                 "create them again in the new project",
    "storage.iceberg_*": "the Iceberg catalog of analytics buckets: kept by the platform's catalog service",
    "storage.s3_multipart_uploads": "unfinished S3 multipart uploads: transient, their parts never were files",
    "storage.s3_multipart_uploads_parts": "parts of unfinished S3 multipart uploads: transient",
    "storage.prefixes": "folder prefixes the storage server derives from storage.objects",
    "storage_vectors.*": "the pgvector tables behind vector buckets: provisioned by the platform's vector service",
    "vault.secrets": "Vault secrets are ciphertext under the source project's root key, which no dump carries; "
                     "create them again with vault.create_secret()",
    "pgsodium.*": "pgsodium's keys are derived from the source project's root key, which no dump carries",
    "net.*": "pg_net's request queue and responses: transient, and sending them again from a copy would call "
             "every webhook a second time",
    "cron.job": "pg_cron's jobs: the project role may not write cron.job (the platform revoked it); the "
                "result lists the backup's jobs to schedule again with cron.schedule()",
    "cron.job_run_details": "pg_cron's run history",
    "supabase_functions.hooks": "the request log of database webhooks (pg_net calls already made)",
    "graphql.*": "pg_graphql's internal state: rebuilt from the schema",
    "pgmq.*": "queue tables of pgmq: the new project's queues start empty (their messages were in flight)",
    "pgbouncer.*": "the connection pooler's own objects",
    "extensions.*": "extension-owned tables (their configuration rows come with CREATE EXTENSION)",
    "_analytics.*": "the platform's log analytics",
    "_supavisor.*": "the platform's connection pooler state",
    "etl.*": "the platform's replication (ETL) state",
    "pgtle.*": "pg_tle's registered extensions: installed again through database.dev",
    "dbdev.*": "database.dev's package index",
    "repack.*": "pg_repack's work tables",
}

USER = "user data"
SKIP = "platform data"


@dataclass(frozen=True)
class Class:
    kind: str  # USER | SKIP
    why: str


def is_platform_schema(schema: str, present: Iterable[str] | None = None) -> bool:
    """A schema the platform owns (`present`: only those the target project has)."""
    known = schema in PLATFORM_SCHEMAS or any(fnmatch.fnmatchcase(schema, p) for p in PLATFORM_SCHEMA_PATTERNS)
    return known and (present is None or schema in set(present))


def classify(relation: str) -> Class | None:
    """User data or platform data (with the reason) for a table `schema.name` of a platform schema;
    None for a table neither list names (restores skip it, and the fixture test fails)."""
    if relation in USER_DATA:
        return Class(USER, USER_DATA[relation])
    if relation in PLATFORM_DATA:
        return Class(SKIP, PLATFORM_DATA[relation])
    for pattern, why in PLATFORM_DATA.items():
        if "*" in pattern and fnmatch.fnmatchcase(relation, pattern):
            return Class(SKIP, why)
    return None


UNKNOWN = ("a platform table drkit does not classify yet (a platform change newer than this drkit): skipped; "
           "if it holds your data, restore it by hand and report it")


def skip_reason(relation: str) -> str | None:
    """Why the rows of a platform table are not restored into a project, or None when they are the user's."""
    c = classify(relation)
    if c is None:
        return UNKNOWN
    return None if c.kind == USER else c.why
