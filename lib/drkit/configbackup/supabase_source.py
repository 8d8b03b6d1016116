"""The rest of a Supabase project, outside its database, through the Management API (a `supabase` source).

A database backup brings back tables, policies and the users' rows; a project also has settings that
live only in Supabase's control plane, and an operator rebuilding it in another region needs them
all. Daily, into the encrypted config archive under the source's name:

| file | from | what |
|---|---|---|
| `project.json`, `organization.json` | `GET /v1/projects/{ref}`, `/v1/organizations/{slug}` | name, region, Postgres version, plan |
| `auth-config.json` | `GET …/config/auth` | every Auth setting (providers, SMTP, hooks, MFA, rate limits); secret values redacted |
| `auth-secrets.json` | the same | the names of the Auth settings that held a secret (to re-enter) |
| `api-settings.json` | `GET …/postgrest` | exposed schemas, max rows, pool (the JWT secret redacted) |
| `network-restrictions.json` | `GET …/network-restrictions` | allowed CIDRs |
| `storage-buckets.json` | `GET …/storage/buckets` | the Storage bucket list |
| `secret-names.json` | `GET …/secrets` | Edge Function secret *names* (values are never stored) |
| `functions.json`, `functions/<slug>.eszip` | `GET …/functions`, `…/functions/{slug}/body` | each Edge Function's settings and its deployed bundle, with SHA-256 |
| `provider-backups.json` | `GET …/database/backups` | Supabase's own backups and PITR window (evidence: "their copy") |

`drkit supabase recreate` reads these back (lib/drkit/supabase/plan.py). The provider's backups also
go into a signed record (`state/provider/<source>.json`) that the DR report shows beside drkit's own.
"""

from __future__ import annotations

import hashlib
from typing import Any

from drkit.configbackup.archive import SourceError, safe_path
from drkit.configbackup.inventory import doc
from drkit.configbackup.sources import Source
from drkit.core.deadline import Deadline
from drkit.core.errors import SupabaseApiError
from drkit.supabase.api import SupabaseApi
from drkit.supabase.plan import SECRET_SETTINGS, provider_summary

REDACTED = "<redacted: re-enter it>"


def redact(settings: dict[str, Any]) -> tuple[dict[str, Any], list[str]]:
    """Settings with every secret value replaced, and the names of those that held one."""
    out, held = {}, []
    for key, value in settings.items():
        if SECRET_SETTINGS.search(key) and value not in (None, "", [], {}):
            out[key] = REDACTED
            held.append(key)
        else:
            out[key] = value
    return out, sorted(held)


def collect(source: Source, sink: Any, deadline: Deadline) -> dict[str, Any]:
    ref = str(source.options["project_ref"])
    api = SupabaseApi(source.secrets["token_env"], url=str(source.opt("api_url")), deadline=deadline,
                      ca_file=source.options.get("ca_file"), token_label=str(source.opt("token_env")))
    base = f"/v1/projects/{ref}"
    try:
        project = api.project(ref)
        sink.add_bytes("project.json", doc(project))
        details: dict[str, Any] = {"project": ref, "name": project.get("name"), "region": project.get("region"),
                                   "postgres": (project.get("database") or {}).get("version")}
        slug = project.get("organization_slug")
        if slug:
            org = api.organization(str(slug))
            sink.add_bytes("organization.json", doc({k: org.get(k) for k in ("id", "name", "plan")}))
            details["plan"] = org.get("plan")
        auth, held = redact(dict(api.get(f"{base}/config/auth", f"Auth settings of {ref}")))
        sink.add_bytes("auth-config.json", doc(auth))
        sink.add_bytes("auth-secrets.json", doc(held))
        postgrest, _ = redact(dict(api.get(f"{base}/postgrest", f"API settings of {ref}")))
        sink.add_bytes("api-settings.json", doc(postgrest))
        sink.add_bytes("network-restrictions.json", doc(api.get(f"{base}/network-restrictions",
                                                                f"network restrictions of {ref}")))
        buckets = list(api.get(f"{base}/storage/buckets", f"Storage buckets of {ref}") or [])
        sink.add_bytes("storage-buckets.json", doc(buckets))
        secrets = list(api.get(f"{base}/secrets", f"Edge Function secrets of {ref}") or [])
        sink.add_bytes("secret-names.json", doc(sorted(({"name": s.get("name"), "updated_at": s.get("updated_at")}
                                                        for s in secrets), key=lambda s: str(s["name"]))))
        functions = list(api.get(f"{base}/functions", f"Edge Functions of {ref}") or [])
        listed = []
        limit, total = int(source.opt("max_bytes")), 0
        for fn in sorted(functions, key=lambda f: str(f.get("slug"))):
            entry = {k: fn.get(k) for k in ("slug", "name", "status", "version", "verify_jwt", "import_map",
                                            "entrypoint_path", "import_map_path", "ezbr_sha256", "updated_at")}
            if source.opt("functions"):
                body, ctype = api.function_body(ref, str(fn["slug"]))
                total += len(body)
                if total > limit:
                    raise SourceError(f"Supabase {ref}: Edge Function bundles over max_bytes ({limit}); raise it")
                path = f"functions/{safe_path(str(fn['slug']))}.eszip"
                sink.add_bytes(path, body)
                entry.update(bundle=path, bundle_bytes=len(body), bundle_sha256=hashlib.sha256(body).hexdigest(),
                             content_type=ctype)
            listed.append(entry)
        sink.add_bytes("functions.json", doc(listed))
        backups = dict(api.get(f"{base}/database/backups", f"Supabase backups of {ref}"))
        sink.add_bytes("provider-backups.json", doc(backups))
    except SupabaseApiError as exc:
        raise SourceError(f"Supabase {ref}: {exc}") from None
    details.update(auth_secrets=len(held), buckets=len(buckets), secrets=len(secrets), functions=len(listed),
                   provider_backups=provider_summary(backups), api_calls=api.calls)
    return details
