"""Benchmark restore-verify's streamed restore against a bare pg_restore (scripts/bench_restore).

For each database size, in one run: take a backup with db-backup, download
and decrypt it once to a local archive, then time
  bare       pg_restore --single-transaction from the local file (one job: the like-for-like baseline)
  bare -j2   pg_restore --jobs 2 from the local file (what `drkit restore --download-to` does)
  drkit      restore-verify: stream from S3, verify SHA-256, decrypt, decompress, pg_restore, then checks
Target (issue 3): drkit's restore <= 1.25x the bare restore. The figures are RTO evidence.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

import boto3
from rich.console import Console
from rich.table import Table

from drkit.core.deadline import Deadline
from drkit.crypto import encryption
from drkit.functions import db_backup, restore_verify
from drkit.postgres import restore
from drkit.storage import catalog

from . import sampledb
from .keys import signing_env, store_of
from .pgserver import PgServer
from .s3server import S3Server


def timed_restore(pgbin: Path, pg: PgServer, archive: str, jobs: int) -> float:
    name = f"bare_{jobs}_{os.urandom(3).hex()}"
    pg.create_database(name)
    args = ["--single-transaction"] if jobs == 1 else [f"--jobs={jobs}"]
    t = time.monotonic()
    subprocess.run([str(pgbin / "pg_restore"), "--no-owner", "--exit-on-error", *args, "--dbname", pg.url(name),
                    archive], check=True, capture_output=True, env=dict(os.environ, LC_ALL="C"))
    wall = time.monotonic() - t
    pg.drop_database(name)
    return wall


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", default="0.25,1", help="database sizes in GB, comma-separated (default: %(default)s)")
    args = ap.parse_args(argv)
    pgbin = Path(os.environ["DRKIT_PG_BIN"])
    console = Console()
    rows: list[dict[str, Any]] = []
    with PgServer(settings={"max_wal_size": "'4GB'", "checkpoint_timeout": "'30min'", "autovacuum": "off"}) as pg, \
            S3Server() as s3srv, tempfile.TemporaryDirectory(prefix="drkit-bench-") as tmp:
        identity, recipient = encryption.generate_identity()
        for gb in (float(x) for x in args.sizes.split(",")):
            bucket = f"rbench-{int(gb * 1000)}"
            boto3.client("s3", endpoint_url=s3srv.endpoint, aws_access_key_id="BENCH00ACCESSKEY",
                         aws_secret_access_key="bench-secret-key", region_name="us-east-1").create_bucket(Bucket=bucket)
            name = f"src_{int(gb * 1000)}"
            pg.create_database(name)
            with console.status(f"building a {gb} GB sample database ..."):
                sampledb.fill(pg, name, int(gb * 1000))
                pg.execute("VACUUM (FREEZE, ANALYZE)", name)
            env = {"DRKIT_SPACES_BUCKET": bucket, "DRKIT_SPACES_ENDPOINT": s3srv.endpoint,
                   "DRKIT_SPACES_KEY": "BENCH00ACCESSKEY", "DRKIT_SPACES_SECRET": "bench-secret-key",
                   **signing_env(), "DRKIT_AGE_RECIPIENTS": recipient, "DRKIT_DATABASES": "bench", "DRKIT_DB_BENCH_URL": pg.url(name),
                   "DRKIT_STAGING_URL": pg.url("postgres"), "DRKIT_AGE_IDENTITY": identity,
                   "DRKIT_LOG_LEVEL": "warning", "DRKIT_PG_BIN": str(pgbin)}
            with console.status("db-backup ..."):
                b = db_backup.run({"prune": "false"}, env, Deadline(900))["databases"][0]
            store = store_of(env)
            archive = str(Path(tmp) / "bench.dump")
            entry = catalog.find(store, "latest", "bench")
            manifest = catalog.read_manifest(store, entry)
            restore.download(store, entry, [encryption.parse_identity(identity)], archive, manifest=manifest)
            pg.execute("CHECKPOINT", name)
            with console.status("bare pg_restore (one job) ..."):
                bare1 = timed_restore(pgbin, pg, archive, 1)
            with console.status("bare pg_restore --jobs 2 ..."):
                bare2 = timed_restore(pgbin, pg, archive, 2)
            with console.status("restore-verify ..."):
                t = time.monotonic()
                v = restore_verify.run({}, env, Deadline(900))
                wall = time.monotonic() - t
            db = v["databases"][0]
            if db["status"] != "passed":
                raise SystemExit(f"restore-verify did not pass: {db}")
            row = {"gb": sampledb.database_size(pg, name) / 1e9, "dump_mb": b["bytes_in"] / 1e6,
                   "stored_mb": b["bytes_out"] / 1e6, "bare1": bare1, "bare2": bare2,
                   "drkit_restore": db["restore"]["duration_s"], "drkit_total": wall}
            rows.append(row)
            pg.drop_database(name)
            Path(archive).unlink()
    table = Table("database", "dump MB", "bare pg_restore s", "bare --jobs 2 s", "restore-verify restore s",
                  "ratio", "restore-verify total s (with checks)", title="restore: RTO evidence")
    for r in rows:
        table.add_row(f"{r['gb']:.2f} GB", f"{r['dump_mb']:.0f}", f"{r['bare1']:.1f}", f"{r['bare2']:.1f}",
                      f"{r['drkit_restore']:.1f}", f"{r['drkit_restore'] / r['bare1']:.2f}x", f"{r['drkit_total']:.1f}")
    console.print(table)
    ok = all(r["drkit_restore"] / r["bare1"] <= 1.25 for r in rows)
    console.print("[green]target met (<= 1.25x)[/green]" if ok else "[yellow]target missed (> 1.25x)[/yellow]")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
