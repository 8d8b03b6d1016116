"""Benchmark db-backup against the bare dump and the operators' old pipeline (scripts/bench_backup).

For each database size, in one run, on the same servers:
  bare     pg_dump -Fc -Z0 > /dev/null                       (the limit)
  old      pg_dump -Fc (gzip) > file; gzip file; upload file (the shell scripts drkit replaces)
  drkit    db-backup in its own process: pg_dump -Z0 | zstd | age | multipart upload
  upload   a plain upload of a file of drkit's stored size    (the S3 stage alone)
and prints wall time, peak RSS and output size, with ratios. Targets (issue 2):
drkit <= 2x bare, <= 0.5x old, output <= old's, function peak RSS <= 150 MB and flat.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
from rich.console import Console
from rich.table import Table

from drkit.crypto import encryption

from . import sampledb
from .keys import signing_env
from .pgserver import PgServer
from .s3server import S3Server


@dataclass
class Measure:
    wall_s: float
    peak_rss_mb: float
    out_bytes: int
    cpu_s: float = 0.0  # the pipeline's own processes (user + system)
    server_cpu_s: float = 0.0  # the PostgreSQL server (postmaster + backends)
    s3_cpu_s: float = 0.0  # the local S3 server (moto): remote in production


def proc_cpu(pid: int) -> float:
    """CPU seconds of a process, its threads and its reaped children (/proc/<pid>/stat)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return sum(int(x) for x in fields[11:15]) / os.sysconf("SC_CLK_TCK")


class CpuWatch:
    """CPU used by the PostgreSQL server and the S3 server during one step."""

    def __init__(self, pg_pid: int, s3_pid: int):
        self.pg_pid, self.s3_pid = pg_pid, s3_pid

    def __enter__(self) -> CpuWatch:
        self.pg0, self.s30, self.self0 = proc_cpu(self.pg_pid), proc_cpu(self.s3_pid), _self_cpu()
        return self

    def __exit__(self, *exc: object) -> None:
        time.sleep(0.5)  # let the postmaster reap the backend, so its CPU is counted here
        self.server = proc_cpu(self.pg_pid) - self.pg0
        self.s3 = proc_cpu(self.s3_pid) - self.s30
        self.own = _self_cpu() - self.self0

    def apply(self, m: Measure) -> Measure:
        m.server_cpu_s, m.s3_cpu_s = round(self.server, 2), round(self.s3, 2)
        return m


def _self_cpu() -> float:
    r = os.times()
    return r.user + r.system


def _run_measured(argv: list[str], env: dict[str, str], stdout: Any = subprocess.DEVNULL) -> tuple[float, float, float]:
    """Wall time, peak RSS and CPU seconds (wait4: the child and its reaped descendants)."""
    t = time.monotonic()
    proc = subprocess.Popen(argv, env=env, stdout=stdout, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.monotonic() - t
    if os.waitstatus_to_exitcode(status) != 0:
        raise RuntimeError(f"{argv[0]} failed: {proc.stderr.read().decode()[-500:] if proc.stderr else ''}")
    return wall, usage.ru_maxrss / 1024, usage.ru_utime + usage.ru_stime


def bare(pgbin: Path, url: str) -> Measure:
    env = dict(os.environ, LC_ALL="C")
    wall, rss, cpu = _run_measured([str(pgbin / "pg_dump"), "-Fc", "-Z0", "--dbname", url], env)
    return Measure(wall, rss, 0, cpu)


def old_pipeline(pgbin: Path, url: str, work: Path, s3: Any, bucket: str) -> Measure:
    """pg_dump -Fc (default gzip) to a file, gzip the file, upload it (s3cmd stand-in: boto3 upload_file)."""
    env = dict(os.environ, LC_ALL="C")
    dump = work / "old.dump"
    t = time.monotonic()
    with open(dump, "wb") as f:
        _, rss1, cpu1 = _run_measured([str(pgbin / "pg_dump"), "-Fc", "--dbname", url], env, stdout=f)
    _, rss2, cpu2 = _run_measured(["gzip", "-f", str(dump)], env)
    gz = work / "old.dump.gz"
    c0 = _self_cpu()
    s3.upload_file(str(gz), bucket, "old/old.dump.gz")
    wall = time.monotonic() - t
    size = gz.stat().st_size
    gz.unlink()
    return Measure(wall, max(rss1, rss2), size, cpu1 + cpu2 + _self_cpu() - c0)


CHILD = r"""
import json, sys
from drkit.functions import db_backup
from drkit.core.deadline import Deadline
env = json.loads(sys.argv[1])
r = db_backup.run({"prune": "false"}, env, Deadline(900))
hwm = [l for l in open("/proc/self/status") if l.startswith("VmHWM")][0].split()[1]
print("RESULT " + json.dumps({"ok": r["ok"], "db": r["databases"][0], "hwm_kb": int(hwm)}))
"""


def drkit_backup(env: dict[str, str]) -> tuple[Measure, dict[str, Any]]:
    t = time.monotonic()
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    proc = subprocess.run([sys.executable, "-c", CHILD, json.dumps(env)], capture_output=True, text=True,
                          env=dict(os.environ, DRKIT_LOG_LEVEL="warning"))
    wall = time.monotonic() - t
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime)
    line = [x for x in proc.stdout.splitlines() if x.startswith("RESULT ")]
    if not line:
        raise RuntimeError(f"db-backup child failed: {proc.stdout[-800:]} {proc.stderr[-800:]}")
    out = json.loads(line[0][7:])
    if not out["ok"]:
        raise RuntimeError(f"db-backup failed: {out['db']}")
    return Measure(wall, out["hwm_kb"] / 1024, out["db"]["bytes_out"], cpu), out["db"]


def plain_upload(size: int, work: Path, s3: Any, bucket: str) -> Measure:
    f = work / "plain.bin"
    with open(f, "wb") as fh:
        left = size
        block = os.urandom(1 << 20)
        while left > 0:
            fh.write(block[: min(left, len(block))])
            left -= len(block)
    t = time.monotonic()
    c0 = _self_cpu()
    s3.upload_file(str(f), bucket, "plain/plain.bin")
    wall = time.monotonic() - t
    f.unlink()
    return Measure(wall, 0, size, _self_cpu() - c0)


def interpreter_baseline() -> float:
    """Peak RSS of a Python process that only imports what db-backup imports (the floor)."""
    code = ("import boto3, psycopg, pyrage, zstandard, drkit.functions.db_backup; "
            "print([l for l in open('/proc/self/status') if l.startswith('VmHWM')][0].split()[1])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    return int(out.strip()) / 1024


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", default="0.25,2", help="database sizes in GB, comma-separated (default: %(default)s)")
    ap.add_argument("--json", help="also write the figures to this file")
    ap.add_argument("--zstd-threads", default=None, help="DRKIT_ZSTD_THREADS for db-backup (default: drkit's default)")
    ap.add_argument("--zstd-level", default=None, help="DRKIT_ZSTD_LEVEL for db-backup (default: drkit's default)")
    args = ap.parse_args(argv)
    sizes = [float(x) for x in args.sizes.split(",")]
    pgbin = Path(os.environ["DRKIT_PG_BIN"])
    console = Console()
    rows: list[dict[str, Any]] = []
    floor = interpreter_baseline()
    console.print(f"Python + db-backup imports alone: peak RSS {floor:.0f} MB; {os.cpu_count()} CPUs")
    with PgServer(settings={"max_wal_size": "'4GB'", "checkpoint_timeout": "'30min'", "autovacuum": "off"}) as pg, \
            S3Server() as s3srv, \
            tempfile.TemporaryDirectory(prefix="drkit-bench-") as tmp:
        work = Path(tmp)
        s3 = boto3.client("s3", endpoint_url=s3srv.endpoint, aws_access_key_id="BENCH00ACCESSKEY",
                          aws_secret_access_key="bench-secret-key", region_name="us-east-1")
        _, recipient = encryption.generate_identity()
        for gb in sizes:
            bucket = f"bench-{int(gb * 1000)}"
            s3.create_bucket(Bucket=bucket)
            name = f"bench_{int(gb * 1000)}"
            pg.create_database(name)
            t = time.monotonic()
            with console.status(f"building a {gb} GB sample database ..."):
                sampledb.fill(pg, name, int(gb * 1000))
                # settle: no freeze/analyze/checkpoint work may run during the measurements
                pg.execute("VACUUM (FREEZE, ANALYZE)", name)
                pg.execute("CHECKPOINT", name)
            size = sampledb.database_size(pg, name)
            console.print(f"[bold]{gb} GB target[/bold]: database {size / 1e9:.2f} GB built in {time.monotonic() - t:.0f} s")
            url = pg.url(name)
            env = {"DRKIT_SPACES_BUCKET": bucket, "DRKIT_SPACES_ENDPOINT": s3srv.endpoint,
                   "DRKIT_SPACES_KEY": "BENCH00ACCESSKEY", "DRKIT_SPACES_SECRET": "bench-secret-key",
                   **signing_env(), "DRKIT_AGE_RECIPIENTS": recipient, "DRKIT_DATABASES": "bench", "DRKIT_DB_BENCH_URL": url,
                   "DRKIT_PG_BIN": str(pgbin), "DRKIT_LOG_LEVEL": "warning"}
            if args.zstd_threads is not None:
                env["DRKIT_ZSTD_THREADS"] = args.zstd_threads
            if args.zstd_level is not None:
                env["DRKIT_ZSTD_LEVEL"] = args.zstd_level
            pg_pid = int((pg.datadir / "postmaster.pid").read_text().split()[0])
            assert s3srv.proc is not None
            s3_pid = s3srv.proc.pid
            with console.status("bare pg_dump -Fc -Z0 > /dev/null ..."), CpuWatch(pg_pid, s3_pid) as w:
                m_bare = bare(pgbin, url)
            w.apply(m_bare)
            with console.status("old pipeline: pg_dump -Fc > file; gzip; upload ..."), CpuWatch(pg_pid, s3_pid) as w:
                m_old = old_pipeline(pgbin, url, work, s3, bucket)
            w.apply(m_old)
            with console.status("db-backup ..."), CpuWatch(pg_pid, s3_pid) as w:
                m_drkit, result = drkit_backup(env)
            w.apply(m_drkit)
            with console.status("plain upload of the same number of bytes ..."), CpuWatch(pg_pid, s3_pid) as w:
                m_up = plain_upload(m_drkit.out_bytes, work, s3, bucket)
            w.apply(m_up)
            row = {"target_gb": gb, "db_bytes": size, "dump_bytes": result["bytes_in"],
                   "drkit_backup_s": result["duration_s"],
                   "bare": m_bare.__dict__, "old": m_old.__dict__, "drkit": m_drkit.__dict__, "upload": m_up.__dict__,
                   "ratio_vs_bare": m_drkit.wall_s / m_bare.wall_s, "ratio_vs_old": m_drkit.wall_s / m_old.wall_s,
                   "size_vs_old": m_drkit.out_bytes / m_old.out_bytes}
            rows.append(row)
            pg.drop_database(name)
            print_size(console, row)
    print_summary(console, rows, floor)
    if args.json:
        Path(args.json).write_text(json.dumps({"floor_rss_mb": floor, "rows": rows}, indent=2))
    ok = all(r["ratio_vs_bare"] <= 2 and r["ratio_vs_old"] <= 0.5 and r["size_vs_old"] <= 1
             and r["drkit"]["peak_rss_mb"] <= 150 for r in rows)
    console.print("[green]all targets met[/green]" if ok else "[yellow]some targets missed (see table)[/yellow]")
    return 0


def print_size(console: Console, r: dict[str, Any]) -> None:
    t = Table("pipeline", "wall s", "peak RSS MB", "output MB", "MB/s of dump", "CPU s", "PG server CPU s",
              "S3 server CPU s",
              title=f"{r['db_bytes'] / 1e9:.2f} GB database, {r['dump_bytes'] / 1e6:.0f} MB uncompressed dump")
    dump = r["dump_bytes"] / 1e6
    for key, label in (("bare", "bare pg_dump -Fc -Z0 > /dev/null"), ("old", "old: pg_dump -Fc, gzip, upload"),
                       ("drkit", "drkit db-backup (zstd + age + multipart)"), ("upload", "plain upload, same bytes")):
        m = r[key]
        t.add_row(label, f"{m['wall_s']:.1f}", f"{m['peak_rss_mb']:.0f}" if m["peak_rss_mb"] else "-",
                  f"{m['out_bytes'] / 1e6:.0f}" if m["out_bytes"] else "-",
                  f"{dump / m['wall_s']:.0f}" if key != "upload" else "-", f"{m['cpu_s']:.1f}",
                  f"{m['server_cpu_s']:.1f}", f"{m['s3_cpu_s']:.1f}")
    console.print(t)
    busy = r["drkit"]["cpu_s"] + r["drkit"]["server_cpu_s"] + r["drkit"]["s3_cpu_s"]
    cores = os.cpu_count() or 1
    console.print(f"  db-backup step: {busy:.1f} CPU-s on {cores} cores in {r['drkit']['wall_s']:.1f} s wall "
                  f"({busy / (cores * r['drkit']['wall_s']):.0%} of the machine; the S3 server is remote in production)")
    console.print(f"  db-backup itself (snapshot, dump, compress, encrypt, upload, manifest): {r['drkit_backup_s']:.1f} s; "
                  f"the rest of its wall time is process start and imports")
    console.print(f"  drkit/bare {r['ratio_vs_bare']:.2f}x (target <= 2), drkit/old {r['ratio_vs_old']:.2f}x (<= 0.5), "
                  f"size drkit/old {r['size_vs_old']:.2f} (<= 1), peak RSS {r['drkit']['peak_rss_mb']:.0f} MB (<= 150)")


def print_summary(console: Console, rows: list[dict[str, Any]], floor: float) -> None:
    if len(rows) > 1:
        lo, hi = rows[0]["drkit"]["peak_rss_mb"], rows[-1]["drkit"]["peak_rss_mb"]
        console.print(f"peak RSS {rows[0]['target_gb']} GB -> {rows[-1]['target_gb']} GB: {lo:.0f} -> {hi:.0f} MB "
                      f"({hi / lo:.2f}x; imports alone {floor:.0f} MB)")


if __name__ == "__main__":
    raise SystemExit(main())
