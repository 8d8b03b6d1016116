"""The table of every environment variable, the functions that read it, its default and meaning (pure data).

lib/drkit/platform/envvars.py holds the rules built on it (project.yml, the deploy env file, what is
required where); docs/configuration.md shows it (`envvars.markdown_table()`).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

UNSET = "unset"  # the deploy-time stand-in for "not set" (the deployer refuses empty values)
DB = "<NAME>"    # per-database variables: DRKIT_DB_<NAME>_URL for each name in DRKIT_DATABASES

DB_BACKUP, RESTORE_VERIFY, HEALTH, FAILOVER, SNAPSHOTS, CONFIG, SCHEDULER, REPORT, COPY = (
    "db-backup", "restore-verify", "health-probe", "dns-failover", "snapshot-rotate", "config-backup", "scheduler",
    "report", "backup-copy")
ALL = (DB_BACKUP, RESTORE_VERIFY, HEALTH, FAILOVER, SNAPSHOTS, CONFIG, SCHEDULER, REPORT, COPY)
DO_CALLERS = (FAILOVER, SNAPSHOTS, CONFIG, HEALTH)  # health-probe: only for DRKIT_AUTO_FAILOVER=true


@dataclass(frozen=True)
class Var:
    name: str
    functions: tuple[str, ...]
    required: tuple[str, ...]  # the functions for which it must be set
    default: str
    meaning: str

    def pattern(self) -> re.Pattern[str]:
        return re.compile("^" + re.escape(self.name).replace(re.escape(DB), "[A-Z0-9_]+") + "$")


def _v(name: str, functions: Iterable[str], meaning: str, *, default: str = "", required: Iterable[str] = ()) -> Var:
    return Var(name, tuple(functions), tuple(required), default, meaning)


VARIABLES: tuple[Var, ...] = (
    # the bucket: every function
    _v("DRKIT_SPACES_BUCKET", ALL, "the Spaces bucket that holds all drkit state", required=ALL),
    _v("DRKIT_SPACES_REGION", ALL, "Spaces region slug (fra1, nyc3, …); required unless DRKIT_SPACES_ENDPOINT is set"),
    _v("DRKIT_SPACES_ENDPOINT", ALL, "full Spaces endpoint URL, instead of the region",
       default="https://<region>.digitaloceanspaces.com"),
    _v("DRKIT_SPACES_KEY", ALL, "Spaces access key id", required=ALL),
    _v("DRKIT_SPACES_SECRET", ALL, "Spaces secret key", required=ALL),
    _v("DRKIT_PREFIX", ALL, "key prefix inside the bucket (several installations in one bucket)", default="(none)"),
    _v("DRKIT_S3_MAX_ATTEMPTS", ALL, "attempts per S3 request (botocore standard retries)", default="6"),
    _v("DRKIT_LOG_LEVEL", ALL, "debug, info, warning or error", default="info"),
    _v("DRKIT_NOTIFY_SLACK_URL", ALL, "Slack incoming-webhook URL for failures and alerts", default="(none)"),
    _v("DRKIT_NOTIFY_WEBHOOK_URL", ALL, "generic JSON webhook for failures and alerts", default="(none)"),
    _v("DRKIT_NOTIFY_SECRET", ALL, "HMAC-SHA256 key signing generic webhook notifications (16+ chars)",
       default="(unsigned)"),
    # signed records: each function its own key (project.yml: DRKIT_SIGNING_KEY_<FUNCTION>), and whom it believes
    _v("DRKIT_SIGNING_KEY", ALL, "this function's own signing key: it signs every record the function writes "
       "(drkit keygen --signing --for FN)", required=ALL),
    _v("DRKIT_TRUSTED_KEYS", ALL, "role=RW… public keys whose signatures drkit believes, each for its role "
       "(docs/storage.md: trust)", required=ALL),
    # writers of encrypted archives
    _v("DRKIT_AGE_RECIPIENTS", (DB_BACKUP, CONFIG), "age public keys (age1…) every backup is encrypted to",
       required=(DB_BACKUP, CONFIG)),
    _v("DRKIT_ZSTD_LEVEL", (DB_BACKUP, CONFIG), "zstd level 1-19", default="1"),
    _v("DRKIT_ZSTD_THREADS", (DB_BACKUP, CONFIG), "zstd worker threads (0: none)", default="0"),
    _v("DRKIT_PART_SIZE_MB", (DB_BACKUP, CONFIG), "multipart upload part size, MB (5-512)", default="8"),
    _v("DRKIT_UPLOAD_CONCURRENCY", (DB_BACKUP, CONFIG), "parts uploaded at once (1-10)", default="3"),
    # databases
    _v("DRKIT_DATABASES", (DB_BACKUP, RESTORE_VERIFY, HEALTH, SCHEDULER, REPORT, COPY),
       "database names, comma separated (lower-case)",
       required=(DB_BACKUP, RESTORE_VERIFY), default="(none: health-probe checks no backups)"),
    _v("DRKIT_RETENTION", (DB_BACKUP, COPY), "default retention policy (backup-copy: its window sets the copy's "
       "default lock)", default="keep_within_hourly=7d keep_within_daily=30d"),
    _v(f"DRKIT_DB_{DB}_URL", (DB_BACKUP,), "postgresql:// URL of the database to back up", required=(DB_BACKUP,)),
    _v(f"DRKIT_DB_{DB}_COUNT_TABLES", (DB_BACKUP,), "tables whose exact row counts go into the manifest",
       default="(estimates only)"),
    _v(f"DRKIT_DB_{DB}_PG_DUMP_ARGS", (DB_BACKUP,), "extra pg_dump arguments (e.g. --exclude-schema)",
       default="(none)"),
    _v(f"DRKIT_DB_{DB}_RETENTION", (DB_BACKUP,), "retention policy for this database", default="DRKIT_RETENTION"),
    # restore-verify
    _v("DRKIT_AGE_IDENTITY", (RESTORE_VERIFY,), "age identity (AGE-SECRET-KEY-1…) that decrypts backups",
       required=(RESTORE_VERIFY,)),
    _v("DRKIT_STAGING_URL", (RESTORE_VERIFY,), "server where scratch databases are created and dropped",
       required=(RESTORE_VERIFY,)),
    _v(f"DRKIT_DB_{DB}_CHECKS", (RESTORE_VERIFY,), "JSON list of SQL checks run on the restored copy",
       default="(tables and rows only)"),
    _v("DRKIT_OFFSITE_BUCKET", (RESTORE_VERIFY,), "the off-site copy's bucket, so that the weekly proof alternates "
       "between the primary and the copy", default="(the primary only)"),
    _v("DRKIT_OFFSITE_REGION", (RESTORE_VERIFY,), "its region slug (or DRKIT_OFFSITE_ENDPOINT)"),
    _v("DRKIT_OFFSITE_ENDPOINT", (RESTORE_VERIFY,), "its endpoint URL", default="https://<region>.digitaloceanspaces.com"),
    _v("DRKIT_OFFSITE_PREFIX", (RESTORE_VERIFY,), "its key prefix (DRKIT_COPY_PREFIX)", default="(none)"),
    _v("DRKIT_OFFSITE_KEY", (RESTORE_VERIFY,), "a Read-only access key of the copy bucket (never the copy's write "
       "key)", default="(none)"),
    _v("DRKIT_OFFSITE_SECRET", (RESTORE_VERIFY,), "its secret", default="(none)"),
    # health-probe
    _v("DRKIT_PROBES", (HEALTH,), "JSON list of HTTP/TLS/DNS/TCP probe targets", default="(none)"),
    _v("DRKIT_RPO", (HEALTH, REPORT), "newest backup older than this is an alert", default="75m"),
    _v("DRKIT_VERIFY_MAX_AGE", (HEALTH, REPORT), "newest passed verification older than this is an alert", default="8d"),
    _v("DRKIT_RTO", (HEALTH, REPORT), "measured restore time above this is an alert", default="4h"),
    _v(f"DRKIT_DB_{DB}_RPO", (HEALTH, REPORT), "per-database DRKIT_RPO", default="DRKIT_RPO"),
    _v(f"DRKIT_DB_{DB}_VERIFY_MAX_AGE", (HEALTH, REPORT), "per-database DRKIT_VERIFY_MAX_AGE",
       default="DRKIT_VERIFY_MAX_AGE"),
    _v(f"DRKIT_DB_{DB}_RTO", (HEALTH, REPORT), "per-database DRKIT_RTO", default="DRKIT_RTO"),
    _v("DRKIT_ALERT_REMINDER", (HEALTH,), "repeat an open alert this often", default="1h"),
    _v("DRKIT_CONFIG_MAX_AGE", (HEALTH,), "config backups older than this are an alert", default="(not checked)"),
    _v("DRKIT_AUTO_FAILOVER", (HEALTH,), "true: a failing probe starts dns-failover in-process", default="false"),
    _v("DRKIT_STATUS_PAGE", (HEALTH,), "JSON: the public status page's title, services (probe targets) and private "
       "strings (docs/status-page.md)", default="(no public page)"),
    _v("DRKIT_OFFSITE_MAX_LAG", (HEALTH, REPORT), "the off-site copy's newest backup this far behind the primary's "
       "is an alert", default="3h (checked once backup-copy has run)"),
    # report
    _v("DRKIT_METRICS_BEARER", (REPORT,), "Bearer tokens Prometheus sends to GET /metrics (16+ chars, comma separated)",
       default="(metrics endpoint off)"),
    # the DigitalOcean API
    _v("DRKIT_DO_TOKEN", DO_CALLERS, "DigitalOcean API token (scopes: see docs/configuration.md)",
       required=(FAILOVER, SNAPSHOTS)),
    _v("DRKIT_DO_ENDPOINT", DO_CALLERS, "DigitalOcean API base URL", default="https://api.digitalocean.com"),
    _v("DRKIT_DO_CA_FILE", DO_CALLERS, "CA bundle for the DO API endpoint", default="(system CAs)"),
    # dns-failover
    _v("DRKIT_FAILOVER_PLAN", (FAILOVER, HEALTH), "the failover plan as JSON (instead of a bucket object)",
       default="(none)"),
    _v("DRKIT_FAILOVER_PLAN_KEY", (FAILOVER, HEALTH), "bucket key of the failover plan",
       default="(none: set this or DRKIT_FAILOVER_PLAN)"),
    _v("DRKIT_WEBHOOK_BEARER", (FAILOVER,), "Bearer tokens accepted on the webhook (16+ chars, comma separated)",
       default="(none)"),
    _v("DRKIT_WEBHOOK_BASIC", (FAILOVER,), "user:password pairs accepted as HTTP Basic", default="(none)"),
    _v("DRKIT_WEBHOOK_HMAC", (FAILOVER,), "keys for signed operator commands", default="(none)"),
    _v("DRKIT_GRAFANA_HMAC", (FAILOVER,), "Grafana webhook HMAC signing secrets", default="(none)"),
    _v("DRKIT_GRAFANA_SIGNATURE_HEADER", (FAILOVER,), "header holding Grafana's signature",
       default="x-grafana-alerting-signature"),
    _v("DRKIT_GRAFANA_TIMESTAMP_HEADER", (FAILOVER,), "header holding Grafana's signed timestamp",
       default="(timestamps not signed)"),
    _v("DRKIT_WEBHOOK_MAX_BODY", (FAILOVER,), "largest webhook body accepted, in bytes (16 KiB to 16 MiB)",
       default="1048576 (1 MiB)"),
    # snapshot-rotate
    _v("DRKIT_SNAPSHOT_POLICIES", (SNAPSHOTS, SCHEDULER), "JSON list of snapshot policies (tag, schedule, retention)",
       required=(SNAPSHOTS,), default="(none: the scheduler runs no snapshots)"),
    # scheduler
    _v("DRKIT_FUNCTIONS_KEY", (SCHEDULER,), "namespace access key <id>:<secret> (doctl serverless key create)",
       required=(SCHEDULER,)),
    _v("DRKIT_FUNCTIONS_API_HOST", (SCHEDULER,), "the namespace's API host (https://faas-…doserverless.co)",
       default="__OW_API_HOST (set by DigitalOcean)"),
    _v("DRKIT_FUNCTIONS_NAMESPACE", (SCHEDULER,), "the namespace (fn-…)", default="__OW_NAMESPACE (set by DigitalOcean)"),
    _v("DRKIT_SCHEDULE", (SCHEDULER,), "JSON list of schedule changes {job, cron, within, enabled, databases}",
       default="(the DR plan's: docs/scheduler.md)"),
    _v("DRKIT_HEARTBEAT_URL", (SCHEDULER,), "https URL the scheduler GETs after every tick (dead man's switch)",
       default="(none)"),
    # backup-copy: the off-site copy (only backup-copy holds DRKIT_COPY_*)
    _v("DRKIT_COPY_BUCKET", (COPY,), "the off-site copy's bucket, in another region or with another provider",
       required=(COPY,)),
    _v("DRKIT_COPY_REGION", (COPY,), "its region slug; required unless DRKIT_COPY_ENDPOINT is set"),
    _v("DRKIT_COPY_ENDPOINT", (COPY,), "its endpoint URL (AWS S3, B2, Wasabi, R2, MinIO, Spaces)",
       default="https://<region>.digitaloceanspaces.com"),
    _v("DRKIT_COPY_KEY", (COPY,), "the copy bucket's access key id (write; only backup-copy holds it)",
       required=(COPY,)),
    _v("DRKIT_COPY_SECRET", (COPY,), "its secret key", required=(COPY,)),
    _v("DRKIT_COPY_PREFIX", (COPY,), "key prefix inside the copy bucket", default="(none)"),
    _v("DRKIT_COPY_LOCK_DAYS", (COPY,), "days each object is kept (and locked, with Object Lock) in the copy",
       default="the retention window + 7"),
    # config-backup
    _v("DRKIT_CONFIG_SOURCES", (CONFIG,), "JSON list of config sources", required=(CONFIG,)),
    _v("DRKIT_CONFIG_RETENTION", (CONFIG,), "retention of config archives", default="keep_within=90d"),
    _v("DRKIT_CONFIG_NOTIFY_ON", (CONFIG,), "what notifies: failures, dns, firewalls, all or none",
       default="failures,dns,firewalls"),
    _v("DRKIT_GITHUB_TOKEN", (CONFIG,), "GitHub token for repository sources (token_env default)",
       default="(public repositories only)"),
    _v("DRKIT_GRAFANA_TOKEN", (CONFIG,), "Grafana service-account token (token_env default)", default="(none)"),
    _v("DRKIT_STORAGE_S3_KEY", (CONFIG,), "S3 access key id of a storage source, e.g. Supabase Storage's "
       "(key_env default)", default="(none)"),
    _v("DRKIT_STORAGE_S3_SECRET", (CONFIG,), "its S3 secret key (secret_env default)", default="(none)"),
    _v("DRKIT_STORAGE_DB_URL", (CONFIG,), "read-only connection string of a storage source's database: the "
       "Storage reconciliation (database_env, as the source names it)", default="(no reconciliation)"),
    _v("DRKIT_SUPABASE_TOKEN", (CONFIG,), "Supabase Management API token for a supabase source (token_env default; "
       "also drkit supabase recreate --apply)", default="(none)"),
)
