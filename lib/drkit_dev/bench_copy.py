"""Benchmark: the off-site copy's throughput against a plain `aws s3 cp`-style copy (scripts/bench_copy).

A real backup of a sample database (`--size-mb`) is taken into the local S3 server (moto over HTTP),
then copied to a second bucket, each in its own process, in the same run:

* baseline: what `aws s3 cp s3://primary/<key> s3://copy/<key>` does between two providers: stream
  the object down and up again with s3transfer (boto3's managed transfer), nothing verified;
* backup-copy: the whole function: signed catalog and manifests checked, every object streamed,
  read back and hashed, locked with Object Lock, ledger and status written.

Prints MB/s, peak RSS and the ratio of backup-copy's time to the baseline's (median of `--runs`).
Local servers only (127.0.0.1); both sides share the machine's cores with the S3 server.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import boto3
from rich.console import Console
from rich.table import Table

from drkit.crypto import encryption
from drkit.functions import db_backup
from drkit.platform.runtime import handle

from . import sampledb
from .keys import signing_env
from .pgserver import PgServer
from .s3server import S3Server

ROOT = Path(__file__).resolve().parents[2]
KEY, SECRET = "BENCHKEY", "bench-secret"

BASELINE = r"""
import sys, json, time, boto3
from boto3.s3.transfer import TransferConfig
endpoint, src, dst, keys = sys.argv[1], sys.argv[2], sys.argv[3], json.loads(sys.argv[4])
c = boto3.client("s3", endpoint_url=endpoint, aws_access_key_id="BENCHKEY", aws_secret_access_key="bench-secret",
                 region_name="us-east-1")
cfg = TransferConfig(multipart_chunksize=8 << 20, max_concurrency=3)
t0 = time.monotonic()
n = 0
for key in keys:
    body = c.get_object(Bucket=src, Key=key)["Body"]
    c.upload_fileobj(body, dst, key, Config=cfg)
    n += c.head_object(Bucket=dst, Key=key)["ContentLength"]
hwm = [int(x.split()[1]) for x in open("/proc/self/status") if x.startswith("VmHWM:")][0]
print("RESULT " + json.dumps({"seconds": time.monotonic() - t0, "bytes": n, "hwm_kb": hwm}))
"""

DRKIT = r"""
import sys, json, time
from drkit.core.deadline import Deadline
from drkit.functions import backup_copy
env = json.loads(sys.argv[1])
t0 = time.monotonic()
result = backup_copy.run({}, env, Deadline(900))
hwm = [int(x.split()[1]) for x in open("/proc/self/status") if x.startswith("VmHWM:")][0]
print("RESULT " + json.dumps({"seconds": time.monotonic() - t0, "bytes": result["bytes"], "hwm_kb": hwm,
                              "ok": result["ok"], "immutability": result["immutability"]}))
"""


def _run(code: str, *args: str) -> dict[str, Any]:
    env = dict(os.environ, PYTHONPATH=str(ROOT / "lib"))
    proc = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, env=env, timeout=1800)
    line = [x for x in proc.stdout.splitlines() if x.startswith("RESULT ")]
    if not line:
        raise SystemExit(f"benchmark step failed: {proc.stderr[-2000:]}")
    return dict(json.loads(line[0][7:]))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size-mb", type=int, default=200, help="sample database size (default: %(default)s)")
    ap.add_argument("--runs", type=int, default=3, help="measurements of each (median; default: %(default)s)")
    args = ap.parse_args(argv)
    console = Console()
    with PgServer() as pg, S3Server() as s3:
        client = boto3.client("s3", endpoint_url=s3.endpoint, aws_access_key_id=KEY, aws_secret_access_key=SECRET,
                              region_name="us-east-1")
        client.create_bucket(Bucket="bench-primary")
        pg.create_database("erp")
        sampledb.fill(pg, "erp", args.size_mb)
        _, recipient = encryption.generate_identity()
        env = {"DRKIT_SPACES_BUCKET": "bench-primary", "DRKIT_SPACES_ENDPOINT": s3.endpoint, "DRKIT_SPACES_KEY": KEY,
               "DRKIT_SPACES_SECRET": SECRET, **signing_env(), "DRKIT_AGE_RECIPIENTS": recipient,
               "DRKIT_DATABASES": "erp", "DRKIT_DB_ERP_URL": pg.url("erp"), "DRKIT_LOG_LEVEL": "warning",
               "DRKIT_COPY_ENDPOINT": s3.endpoint, "DRKIT_COPY_KEY": KEY, "DRKIT_COPY_SECRET": SECRET,
               "DRKIT_COPY_LOCK_DAYS": "1"}
        done = handle("db-backup", db_backup.run, {}, None, env)
        assert done["ok"], done
        keys = [o["Key"] for o in client.list_objects_v2(Bucket="bench-primary", Prefix="db/")["Contents"]]
        base, mine = [], []
        for _ in range(args.runs):
            b = f"bench-base-{uuid.uuid4().hex[:8]}"
            client.create_bucket(Bucket=b)
            base.append(_run(BASELINE, s3.endpoint, "bench-primary", b, json.dumps(keys)))
            c = f"bench-copy-{uuid.uuid4().hex[:8]}"
            client.create_bucket(Bucket=c, ObjectLockEnabledForBucket=True)
            mine.append(_run(DRKIT, json.dumps(env | {"DRKIT_COPY_BUCKET": c})))
            assert mine[-1]["ok"] and mine[-1]["immutability"] == "object-lock", mine[-1]
    table = Table("copy", "MB", "seconds (median)", "MB/s", "peak RSS", "ratio to baseline",
                  title=f"off-site copy of one {args.size_mb} MB database's backup, {args.runs} run(s) each")
    b_s = statistics.median(r["seconds"] for r in base)
    for name, rows in (("aws s3 cp-style (s3transfer, no checks)", base),
                       ("backup-copy (verified, read back, locked)", mine)):
        secs = statistics.median(r["seconds"] for r in rows)
        mb = rows[0]["bytes"] / 1e6
        table.add_row(name, f"{mb:.1f}", f"{secs:.2f}", f"{mb / secs:.1f}",
                      f"{max(r['hwm_kb'] for r in rows) / 1024:.0f} MiB", f"{secs / b_s:.2f}x")
    console.print(table)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
