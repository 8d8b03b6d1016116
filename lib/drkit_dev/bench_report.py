"""Benchmark: the DR report over a month of hourly backups of two databases (scripts/bench_report).

720 backups per database (30 days, hourly), each with a signed manifest, in the local S3 server
(moto, HTTP on 127.0.0.1), plus a weekly verification report each and a month of audit events.
Times dr/report's gather and render with its reader pool (16) against one reader, the baseline
measured in the same run, and prints the ratio, the HTML size and the peak RSS.
"""

from __future__ import annotations

import argparse
import datetime as dt
import hashlib
import json
import time
from concurrent.futures import ThreadPoolExecutor

from rich.console import Console
from rich.table import Table

from drkit.policy import layout
from drkit.reporting import evidence, generate
from drkit.storage import records, signed
from drkit.storage.audit import AuditEvent
from drkit.storage.markers import VerifyReport
from drkit.storage.store import Store

from .keys import signing_env, store_of
from .s3server import S3Server


def hwm_mb() -> float:
    line = next(ln for ln in open("/proc/self/status") if ln.startswith("VmHWM"))
    return int(line.split()[1]) / 1024


def fill(store: Store, verifier: Store, databases: list[str], hours: int, now: dt.datetime) -> int:
    jobs = []
    for db in databases:
        for h in range(hours):
            when = now - dt.timedelta(hours=h, minutes=53)
            jobs.append((db, layout.new_id(when), when, h))

    def one(job: tuple[str, str, dt.datetime, int]) -> None:
        db, backup_id, when, h = job
        data = b"x" * 64
        store.put_bytes(layout.data_key(db, backup_id), data)
        signed.put_json(store, layout.manifest_key(db, backup_id), {
            "id": backup_id, "database": db, "key": layout.data_key(db, backup_id),
            "sha256": hashlib.sha256(data).hexdigest(), "bytes_in": 40_000_000 + h * 1000,
            "duration_s": 30.0 + h % 7, "finished_at": when.isoformat()})
        if h % 168 == 24:  # restore-verify's report, signed as restore-verify
            records.write(verifier, layout.marker_key(db, backup_id, layout.REPORT_SUFFIX),
                          VerifyReport(db, backup_id, "passed", when, when, (), {"duration_s": 900.0}), when)
        records.write(store, layout.audit_key(when, "db-backup", "backup.created"),
                      AuditEvent(when, "db-backup", "backup.created", "bench", "bench", {"database": db}), when)

    with ThreadPoolExecutor(max_workers=16) as pool:
        list(pool.map(one, jobs))
    return len(jobs)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--hours", type=int, default=720, help="backups per database (default: a month, hourly)")
    args = ap.parse_args(argv)
    console = Console()
    now = dt.datetime.now(dt.UTC)
    with S3Server() as s3:
        import boto3

        boto3.client("s3", endpoint_url=s3.endpoint, aws_access_key_id="BENCH", aws_secret_access_key="bench-secret",
                     region_name="us-east-1").create_bucket(Bucket="bench")
        env = {"DRKIT_SPACES_BUCKET": "bench", "DRKIT_SPACES_ENDPOINT": s3.endpoint, "DRKIT_SPACES_KEY": "BENCH",
               "DRKIT_SPACES_SECRET": "bench-secret", **signing_env(), "DRKIT_DATABASES": "erp,crm"}
        store = store_of(env, "db-backup")
        t0 = time.monotonic()
        count = fill(store, store_of(env, "restore-verify"), ["erp", "crm"], args.hours, now)
        console.print(f"{count} backups written in {time.monotonic() - t0:.1f} s")
        problems: list[str] = []
        limits = generate.limits_from_env(env, problems)
        before = hwm_mb()
        figures = {}
        for readers in (1, evidence.READERS):
            evidence.READERS = readers
            t0 = time.monotonic()
            report = generate.make(store, limits, now, keep=False, function="bench")
            figures[readers] = time.monotonic() - t0
        evidence.READERS = max(figures)
    table = Table("figure", "value", title="DR report over a month of hourly backups (local S3 server)")
    table.add_row("backups read (signed manifests verified)", str(count))
    table.add_row("one reader (baseline)", f"{figures[1]:.2f} s")
    table.add_row(f"{max(figures)} readers (dr/report)", f"{figures[max(figures)]:.2f} s "
                  f"({figures[1] / figures[max(figures)]:.1f}x faster)")
    table.add_row("report HTML", f"{len(report.html) / 1000:.0f} kB, {report.html.count('<svg')} charts")
    table.add_row("peak RSS", f"{hwm_mb():.0f} MB ({before:.0f} MB before the report)")
    console.print(table)
    assert all(b["signature"] == "trusted" for d in report.evidence["databases"] for b in d["backups"])
    print(json.dumps({"backups": count, "one_reader_s": round(figures[1], 2),
                      "pool_s": round(figures[max(figures)], 2), "peak_rss_mb": round(hwm_mb())}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
