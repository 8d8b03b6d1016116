"""Rebuilding a Supabase project from its config backup, step by step (pure: saved files in, steps out).

`drkit supabase recreate --from latest --region R` reads the files a `supabase` source of
config-backup saved (configbackup/supabase_source.py) and lays out what rebuilds the project in
region R: the project itself (same organization and plan), its Auth settings, API settings and
network restrictions, its Edge Functions from their saved bundles, then what only a person can do
(secret values, which were never stored) and the commands that bring the data back (the database
restore, the Storage files). `--apply` runs the API steps in order, recording each one, so a rerun
continues where the last one stopped and never creates a second project.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

# Auth and API settings whose values are secrets: redacted in the archive, re-entered by a person
SECRET_SETTINGS = re.compile(r"(_secret|_secrets|_pass|_password|_auth_token|_api_key|_api_secret|_access_key|"
                             r"^jwt_secret|^sms_test_otp|_client_secret|_private_key)$")
# Auth settings the API reports but does not take back (GET's fields that PATCH's body does not name, in
# the API document drkit_dev/data/supabase/management-api.json; its fake refuses any other field, so a
# newer document that moves one is a red test)
READ_ONLY_AUTH = frozenset({"custom_oauth_max_providers", "nimbus_oauth_email_optional",
                            "saml_allow_encrypted_assertions"})
_NOT_SETTINGS = frozenset({"id", "created_at", "updated_at"}) | READ_ONLY_AUTH
PROJECT_READY = "ACTIVE_HEALTHY"


@dataclass(frozen=True)
class Step:
    key: str          # stable name, recorded when done ("project", "auth", "function:hello", …)
    title: str
    method: str = ""  # "" for a step a person does
    path: str = ""    # with {ref} for the new project's reference
    body: Any = None
    params: Mapping[str, Any] = field(default_factory=dict)
    bundle: str = ""  # archive path of an Edge Function bundle (its bytes are the request body)
    note: str = ""

    @property
    def manual(self) -> bool:
        return not self.method


@dataclass(frozen=True)
class Saved:
    """The files of one `supabase` source in a config archive, parsed."""

    project: Mapping[str, Any]
    organization: Mapping[str, Any]
    auth: Mapping[str, Any]
    auth_secrets: list[str]
    api: Mapping[str, Any]
    network: Mapping[str, Any]
    buckets: list[Mapping[str, Any]]
    secret_names: list[str]
    functions: list[Mapping[str, Any]]
    provider_backups: Mapping[str, Any]


def build(saved: Saved, *, region: str, name: str, database: str | None, files_source: str | None,
          backup_id: str) -> list[Step]:
    """Every step that rebuilds the saved project as `name` in `region`."""
    org = saved.project.get("organization_slug") or saved.organization.get("id")
    steps = [Step("project", f"create project {name} in {region} (organization {org}, plan "
                             f"{saved.organization.get('plan') or 'as the organization has'})",
                  "POST", "/v1/projects", {"name": name, "organization_slug": org, "region": region,
                                           **({"plan": saved.organization["plan"]} if saved.organization.get("plan")
                                              else {})},
                  note="the database password goes to --db-pass-file (0600), never to the screen")]
    auth = {k: v for k, v in saved.auth.items() if k not in _NOT_SETTINGS and k not in saved.auth_secrets
            and not SECRET_SETTINGS.search(k)}
    steps.append(Step("auth", f"Auth settings: {len(auth)} settings (site URL {saved.auth.get('site_url')})",
                      "PATCH", "/v1/projects/{ref}/config/auth", auth))
    api = {k: saved.api[k] for k in ("db_schema", "max_rows", "db_extra_search_path", "db_pool") if k in saved.api}
    steps.append(Step("api", f"API settings: schemas {api.get('db_schema')}, max rows {api.get('max_rows')}",
                      "PATCH", "/v1/projects/{ref}/postgrest", api))
    config = saved.network.get("config") or {}
    cidrs = {k: list(config.get(k) or []) for k in ("dbAllowedCidrs", "dbAllowedCidrsV6") if k in config}
    if cidrs:
        steps.append(Step("network", "network restrictions: " + ", ".join(
            f"{len(v)} {k}" for k, v in cidrs.items()), "POST", "/v1/projects/{ref}/network-restrictions/apply",
            cidrs))
    for fn in saved.functions:
        slug = str(fn.get("slug"))
        if not fn.get("bundle"):
            steps.append(Step(f"function:{slug}", f"Edge Function {slug}: no bundle was saved (functions: false); "
                                                  "deploy it from its repository: supabase functions deploy " + slug))
            continue
        params = {"slug": slug, "name": fn.get("name") or slug, "verify_jwt": str(bool(fn.get("verify_jwt"))).lower(),
                  "entrypoint_path": fn.get("entrypoint_path"), "import_map_path": fn.get("import_map_path"),
                  "ezbr_sha256": fn.get("ezbr_sha256")}
        steps.append(Step(f"function:{slug}", f"Edge Function {slug} version {fn.get('version')} from its saved "
                                              f"bundle ({fn.get('bundle_bytes')} bytes)", "POST",
                          "/v1/projects/{ref}/functions", None, {k: v for k, v in params.items() if v is not None},
                          bundle=str(fn["bundle"])))
    if saved.secret_names:
        steps.append(Step("secrets", f"Edge Function secrets ({len(saved.secret_names)}): their values were never "
                                     "stored; set each: supabase secrets set --project-ref NEW_REF "
                                     + " ".join(f"{n}=…" for n in saved.secret_names)))
    if saved.auth_secrets:
        steps.append(Step("auth-secrets", f"Auth secrets ({len(saved.auth_secrets)}), redacted in the backup: "
                                          f"re-enter {', '.join(saved.auth_secrets)} (Dashboard > Authentication)"))
    target = "\"postgresql://postgres:$(cat DB_PASS_FILE)@db.NEW_REF.supabase.co:5432/postgres\""
    steps.append(Step("database", f"the database: ./scripts/drkit restore --db {database or 'DB'} --target {target} "
                                  "(a new project is restored into in place; see docs/runbook.md)"))
    buckets = ", ".join(str(b.get("name")) for b in saved.buckets) or "none"
    steps.append(Step("storage", f"Storage buckets ({buckets}) come back with the database (storage.buckets); the "
                                 "files (S3 keys of the new project in DRKIT_RESTORE_S3_KEY/SECRET): ./scripts/drkit "
                                 "files restore --source " + (files_source or "STORAGE_SOURCE")
                                 + f" --to-endpoint https://NEW_REF.supabase.co/storage/v1/s3 --region {region}"))
    steps.append(Step("clients", "point the apps at the new project: its URL and API keys (Dashboard > Settings > "
                                 "API), then DNS (docs/runbook.md)"))
    steps.append(Step("source", f"(rebuilt from config backup {backup_id}: project {saved.project.get('ref')}, "
                                f"region {saved.project.get('region')})"))
    return steps


def provider_summary(backups: Mapping[str, Any], now: dt.datetime | None = None) -> dict[str, Any]:
    """What Supabase's own backups say, as one small record: counts, newest, PITR window."""
    items = [b for b in backups.get("backups") or [] if isinstance(b, Mapping)]
    done = sorted(str(b.get("inserted_at")) for b in items if b.get("status") == "COMPLETED")
    physical = backups.get("physical_backup_data") or {}

    def unix(key: str) -> str | None:
        value = physical.get(key)
        return dt.datetime.fromtimestamp(int(value), dt.UTC).isoformat() if isinstance(value, int) else None

    return {"region": backups.get("region"), "pitr_enabled": bool(backups.get("pitr_enabled")),
            "walg_enabled": bool(backups.get("walg_enabled")), "completed": len(done),
            "failed": sum(1 for b in items if b.get("status") == "FAILED"),
            "newest": done[-1] if done else None, "oldest": done[0] if done else None,
            "pitr_earliest": unix("earliest_physical_backup_date_unix"),
            "pitr_latest": unix("latest_physical_backup_date_unix")}
