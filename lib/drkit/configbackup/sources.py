"""What config-backup collects: `DRKIT_CONFIG_SOURCES`, parsed and checked up front (pure).

A JSON list; every source has a `type` and a unique `name` (its directory in
the archive). Secrets never appear in the JSON: a source names the
environment variable that holds its token (`token_env`), and that variable
must be set. See docs/config-backup.md for the full format.

    [{"type": "digitalocean"},
     {"type": "github", "name": "infra", "repo": "acme/infra", "ref": "main"},
     {"type": "s3", "name": "tfstate", "bucket": "acme-terraform", "prefix": "prod/"},
     {"type": "grafana", "name": "grafana", "url": "https://grafana.example.net"},
     {"type": "http", "name": "prometheus-rules", "url": "https://prom.example.net/rules.yml"},
     {"type": "storage", "name": "supabase-files", "endpoint": "https://REF.supabase.co/storage/v1/s3",
      "region": "eu-central-1", "buckets": ["avatars"], "database_env": "DRKIT_STORAGE_DB_URL"},
     {"type": "supabase", "name": "supabase", "project_ref": "abcdefghijklmnopqrst"}]
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from drkit.core.errors import ConfigError
from drkit.core.secret import Secret
from drkit.platform.config import json_list, secure_url

NAME_RE = re.compile(r"^[a-z0-9][a-z0-9._-]{0,62}$")
REPO_RE = re.compile(r"^[A-Za-z0-9_.-]+/[A-Za-z0-9_.-]+$")
ENV_RE = re.compile(r"^[A-Z][A-Z0-9_]{0,100}$")
DO_KINDS = ("apps", "domains", "firewalls", "load_balancers", "droplets", "volumes", "reserved_ips", "vpcs",
            "databases", "projects")
MAX_SOURCES = 50
DEFAULTS: dict[str, dict[str, Any]] = {
    "github": {"token_env": "DRKIT_GITHUB_TOKEN", "api_url": "https://api.github.com", "max_bytes": 4 << 30},
    "grafana": {"token_env": "DRKIT_GRAFANA_TOKEN"},
    "digitalocean": {"token_env": "DRKIT_DO_TOKEN"},
    "s3": {"key_env": "DRKIT_SPACES_KEY", "secret_env": "DRKIT_SPACES_SECRET", "max_objects": 1000,
           "max_bytes": 4 << 30},
    "http": {"max_bytes": 64 << 20},
    "storage": {"key_env": "DRKIT_STORAGE_S3_KEY", "secret_env": "DRKIT_STORAGE_S3_SECRET", "max_objects": 200_000,
                "max_bytes": 100 << 30},
    "supabase": {"token_env": "DRKIT_SUPABASE_TOKEN", "api_url": "https://api.supabase.com", "functions": True,
                 "max_bytes": 512 << 20},
}
FIELDS: dict[str, tuple[str, ...]] = {
    "digitalocean": ("include", "token_env"),
    "github": ("repo", "ref", "token_env", "api_url", "exclude", "max_bytes"),
    "s3": ("bucket", "prefix", "keys", "endpoint", "region", "key_env", "secret_env", "max_objects", "max_bytes"),
    "grafana": ("url", "token_env"),
    "http": ("url", "path", "token_env", "max_bytes"),
    "storage": ("endpoint", "region", "buckets", "prefix", "key_env", "secret_env", "max_objects", "max_bytes",
                "database_env"),
    "supabase": ("project_ref", "token_env", "api_url", "ca_file", "functions", "max_bytes"),
}


@dataclass(frozen=True)
class Source:
    type: str
    name: str
    options: Mapping[str, Any] = field(default_factory=dict)
    secrets: Mapping[str, Secret] = field(default_factory=dict)  # option name (token/key/secret) -> value

    def opt(self, key: str) -> Any:
        return self.options.get(key, DEFAULTS.get(self.type, {}).get(key))

    def describe(self) -> str:
        o = self.options
        detail = {"digitalocean": lambda: ",".join(o.get("include") or DO_KINDS),
                  "github": lambda: f"{o['repo']}@{o.get('ref') or 'default branch'}",
                  "s3": lambda: f"s3://{o['bucket']}/{o.get('prefix', '')}",
                  "grafana": lambda: str(o["url"]),
                  "http": lambda: str(o["url"]),
                  "storage": lambda: f"{o['endpoint']} {','.join(o.get('buckets') or ['(all buckets)'])}",
                  "supabase": lambda: f"project {o['project_ref']} (Management API)"}[self.type]()
        return f"{self.name} ({self.type}: {detail})"


def _https(url: Any) -> bool:
    return isinstance(url, str) and secure_url(url)


def parse_sources(raw: str, environ: Mapping[str, str]) -> list[Source]:
    """Every source, or one ConfigError that lists every problem."""
    items = json_list(raw, "DRKIT_CONFIG_SOURCES", items="sources", limit=MAX_SOURCES,
                      required="DRKIT_CONFIG_SOURCES is not set: a JSON list of sources, e.g. "
                               "[{\"type\": \"digitalocean\"}] (see docs/config-backup.md)")
    problems: list[str] = []
    out: list[Source] = []
    names: set[str] = set()
    for i, item in enumerate(items):
        where = f"DRKIT_CONFIG_SOURCES[{i}]"
        if not isinstance(item, dict):
            problems.append(f"{where} must be an object with a \"type\"")
            continue
        kind = item.get("type")
        if kind not in FIELDS:
            problems.append(f"{where}: type {kind!r} is not one of {', '.join(FIELDS)}")
            continue
        name = item.get("name", "digitalocean" if kind == "digitalocean" else None)
        where = f"source {name!r}" if isinstance(name, str) else where
        unknown = sorted(set(item) - {"type", "name", *FIELDS[kind]})
        if unknown:
            problems.append(f"{where}: unknown field(s) {', '.join(unknown)}; {kind} sources take "
                            f"{', '.join(('name', *FIELDS[kind]))}")
        if not isinstance(name, str) or not NAME_RE.match(name):
            problems.append(f"{where}: \"name\" is required: lower-case a-z 0-9 . _ - (its directory in the archive)")
            continue
        if name in names:
            problems.append(f"{where}: the name is used twice")
        names.add(name)
        before = len(problems)
        options = {k: v for k, v in item.items() if k not in ("type", "name")}
        secrets = _check(kind, where, options, environ, problems)
        if len(problems) == before:
            out.append(Source(kind, name, options, secrets))
    if problems:
        raise ConfigError(problems)
    return out


def _check(kind: str, where: str, o: dict[str, Any], environ: Mapping[str, str], problems: list[str]) -> dict[str, Secret]:
    secrets: dict[str, Secret] = {}

    def env_secret(option: str, label: str, required: bool = True) -> None:
        var = o.get(option, DEFAULTS.get(kind, {}).get(option))
        if var is None and not required:
            return
        if not isinstance(var, str) or not ENV_RE.match(var):
            problems.append(f"{where}: {option} must name an environment variable (e.g. DRKIT_GITHUB_TOKEN)")
            return
        value = environ.get(var, "").strip()
        if not value:
            problems.append(f"{where}: {var} is not set ({label})")
            return
        secrets[option] = Secret(value)

    def positive(option: str) -> None:
        if option in o and (not isinstance(o[option], int) or isinstance(o[option], bool) or o[option] <= 0):
            problems.append(f"{where}: {option} must be a positive whole number")

    if kind == "digitalocean":
        include = o.get("include")
        if include is not None and (not isinstance(include, list) or not include or
                                    any(k not in DO_KINDS for k in include)):
            problems.append(f"{where}: include must be a list of {', '.join(DO_KINDS)}")
        env_secret("token_env", "a DigitalOcean API token with read access")
    elif kind == "github":
        if not isinstance(o.get("repo"), str) or not REPO_RE.match(o["repo"]):
            problems.append(f"{where}: repo must be \"owner/name\"")
        ref = o.get("ref")
        if ref is not None and (not isinstance(ref, str) or not re.match(r"^[A-Za-z0-9._/-]{1,200}$", ref) or ".." in ref):
            problems.append(f"{where}: ref must be a branch, tag or commit sha")
        if not _https(o.get("api_url", "https://api.github.com")):
            problems.append(f"{where}: api_url must be an https:// URL")
        exclude = o.get("exclude", [])
        if not isinstance(exclude, list) or not all(isinstance(x, str) and x for x in exclude):
            problems.append(f"{where}: exclude must be a list of glob patterns (e.g. \"*.zip\")")
        positive("max_bytes")
        env_secret("token_env", "a GitHub token with read access to the repository's contents")
    elif kind == "s3":
        if not isinstance(o.get("bucket"), str) or not re.match(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$", o["bucket"]):
            problems.append(f"{where}: bucket must be a bucket name")
        if not isinstance(o.get("prefix", ""), str):
            problems.append(f"{where}: prefix must be a string")
        keys = o.get("keys")
        if keys is not None and (not isinstance(keys, list) or not keys or not all(isinstance(k, str) and k for k in keys)):
            problems.append(f"{where}: keys must be a non-empty list of object keys")
        if "endpoint" in o and not _https(o["endpoint"]):
            problems.append(f"{where}: endpoint must be an https:// URL")
        if "region" in o and (not isinstance(o["region"], str) or not re.match(r"^[a-z0-9-]{2,32}$", o["region"])):
            problems.append(f"{where}: region must be a region slug like fra1")
        positive("max_objects")
        positive("max_bytes")
        env_secret("key_env", "the access key id for this bucket")
        env_secret("secret_env", "the secret key for this bucket")
    elif kind == "storage":
        if not _https(o.get("endpoint")):
            problems.append(f"{where}: endpoint must be the https:// S3 endpoint (Supabase: "
                            "https://<ref>.supabase.co/storage/v1/s3)")
        buckets = o.get("buckets")
        if buckets is not None and (not isinstance(buckets, list) or not buckets or not all(
                isinstance(b, str) and re.match(r"^[A-Za-z0-9][A-Za-z0-9._ -]{0,99}$", b) for b in buckets)):
            problems.append(f"{where}: buckets must be a non-empty list of bucket names (omit it for every bucket)")
        if not isinstance(o.get("prefix", ""), str):
            problems.append(f"{where}: prefix must be a string")
        if "region" in o and (not isinstance(o["region"], str) or not re.match(r"^[a-z0-9-]{2,32}$", o["region"])):
            problems.append(f"{where}: region must be a region name like eu-central-1")
        positive("max_objects")
        positive("max_bytes")
        env_secret("key_env", "the S3 access key id of the storage (Supabase: Storage > S3 access keys)")
        env_secret("secret_env", "the S3 secret key of the storage")
        if "database_env" in o:
            env_secret("database_env", "a read-only connection string of the project's database (Storage "
                                       "reconciliation: storage.objects rows against files)")
    elif kind == "supabase":
        if not isinstance(o.get("project_ref"), str) or not re.match(r"^[a-z0-9]{20}$", o["project_ref"]):
            problems.append(f"{where}: project_ref must be the project's 20-character reference (Settings > "
                            "General, or the subdomain of <ref>.supabase.co)")
        if not secure_url(str(o.get("api_url", "https://api.supabase.com"))):
            problems.append(f"{where}: api_url must be an https:// URL")
        if "functions" in o and not isinstance(o["functions"], bool):
            problems.append(f"{where}: functions must be true (save each Edge Function's bundle) or false")
        if "ca_file" in o and not isinstance(o["ca_file"], str):
            problems.append(f"{where}: ca_file must be a path")
        positive("max_bytes")
        env_secret("token_env", "a Supabase personal access token (Account > Access Tokens) of a member of the "
                                "project's organization")
    elif kind == "grafana":
        if not _https(o.get("url")):
            problems.append(f"{where}: url must be the https:// base URL of Grafana")
        env_secret("token_env", "a Grafana service account token with Viewer rights")
    elif kind == "http":
        if not _https(o.get("url")):
            problems.append(f"{where}: url must be an https:// URL")
        if "path" in o and (not isinstance(o["path"], str) or not o["path"].strip("/") or ".." in o["path"].split("/")):
            problems.append(f"{where}: path must be a relative file name for the archive")
        positive("max_bytes")
        if "token_env" in o:
            env_secret("token_env", "the bearer token for this URL")
    return secrets
