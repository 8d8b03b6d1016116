"""Benchmark: config-backup of a large repository archive (scripts/bench_config).

A local GitHub stand-in serves a repository of `--size-mb` (text files plus
binaries that do not compress, as in a repo with release artefacts), gzip'd
and chunked while it is sent. Measured in the same run, each in its own
process (peak RSS from VmHWM):

* baseline: download the tarball and read every file out of it (the least any
  tool must do to get the content): requests + tarfile, nothing kept;
* the operators' script: download to a file, `tar xzf`, `tar czf`, upload the
  file with boto3 (s3cmd's role) — needs the whole archive on disk twice;
* config-backup: the same repository through drkit into the local S3 server
  (moto over HTTP), with per-file SHA-256, zstd, age and the manifest.

Prints wall time, throughput, peak RSS and the ratios to the baseline.
Local servers only (127.0.0.1).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import tempfile
from pathlib import Path

from rich.console import Console
from rich.table import Table

from drkit.crypto import encryption

from .fakeweb import FakeWeb, Generated, Repo
from .keys import signing_env
from .s3server import S3Server

ROOT = Path(__file__).resolve().parents[2]

BASELINE = r"""
import sys, tarfile, requests, json, time
url, token = sys.argv[1], sys.argv[2]
t0 = time.monotonic()
r = requests.get(url, headers={"Authorization": "Bearer " + token}, stream=True, timeout=60)
n = 0
with tarfile.open(fileobj=r.raw, mode="r|gz") as tar:
    for m in tar:
        if m.isfile():
            f = tar.extractfile(m)
            while chunk := f.read(1 << 20):
                n += len(chunk)
hwm = [int(x.split()[1]) for x in open("/proc/self/status") if x.startswith("VmHWM:")][0]
print("RESULT " + json.dumps({"seconds": time.monotonic() - t0, "bytes": n, "hwm_kb": hwm}))
"""

OLD_SCRIPT = r"""
import sys, json, time, subprocess, os, requests, boto3, tempfile
url, token, endpoint, bucket = sys.argv[1:5]
t0 = time.monotonic()
work = tempfile.mkdtemp(dir=sys.argv[5])
r = requests.get(url, headers={"Authorization": "Bearer " + token}, stream=True, timeout=60)
with open(os.path.join(work, "repo.tar.gz"), "wb") as f:
    for chunk in r.iter_content(1 << 20):
        f.write(chunk)
os.mkdir(os.path.join(work, "x"))
subprocess.run(["tar", "xzf", "repo.tar.gz", "-C", "x"], cwd=work, check=True)
subprocess.run(["tar", "czf", "config.tar.gz", "-C", "x", "."], cwd=work, check=True)
s3 = boto3.client("s3", endpoint_url=endpoint, aws_access_key_id="k", aws_secret_access_key="s", region_name="us-east-1")
s3.upload_file(os.path.join(work, "config.tar.gz"), bucket, "old/config.tar.gz")
size = os.path.getsize(os.path.join(work, "config.tar.gz"))
subprocess.run(["rm", "-rf", work], check=True)
hwm = [int(x.split()[1]) for x in open("/proc/self/status") if x.startswith("VmHWM:")][0]
print("RESULT " + json.dumps({"seconds": time.monotonic() - t0, "stored": size, "hwm_kb": hwm}))
"""

DRKIT = r"""
import json, sys, time
sys.path.insert(0, sys.argv[1])
from drkit.functions import config_backup
from drkit.platform.runtime import handle
t0 = time.monotonic()
result = handle("config-backup", config_backup.run, {"prune": "false"}, None, json.loads(sys.argv[2]))
hwm = [int(x.split()[1]) for x in open("/proc/self/status") if x.startswith("VmHWM:")][0]
print("RESULT " + json.dumps({"seconds": time.monotonic() - t0, "result": result, "hwm_kb": hwm}))
"""


def _run(code: str, *args: str, env: dict[str, str] | None = None) -> dict[str, object]:
    proc = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, env=env, timeout=1800)
    line = [x for x in proc.stdout.splitlines() if x.startswith("RESULT ")]
    if not line:
        raise SystemExit(f"benchmark step failed:\n{proc.stdout[-2000:]}\n{proc.stderr[-2000:]}")
    return dict(json.loads(line[0][7:]))


def _num(r: dict[str, object], key: str) -> float:
    value = r[key]
    assert isinstance(value, (int, float)), (key, value)
    return float(value)


def repository(size_mb: int) -> Repo:
    rng = random.Random(42)
    words = [bytes(rng.choice(b"abcdefghijklmnopqrstuvwxyz_") for _ in range(rng.randint(2, 10))) for _ in range(3000)]
    text_pool = b" ".join(rng.choice(words) + (b"\n" if rng.random() < 0.1 else b"") for _ in range(400_000))
    noise_pool = rng.randbytes(8 << 20)  # repeats beyond zstd's window: incompressible, like release artefacts
    files: dict[str, bytes | Generated] = {}
    text_total = size_mb * (1 << 20) // 2
    n = 0
    while text_total > 0:  # half: source files of 4-200 KiB
        size = min(text_total, rng.randint(4 << 10, 200 << 10))
        start = rng.randrange(0, len(text_pool) - size)
        files[f"src/module{n // 50:03d}/file{n:05d}.py"] = text_pool[start:start + size]
        text_total -= size
        n += 1
    binaries = size_mb * (1 << 20) // 2
    for i in range(max(1, binaries // (64 << 20))):
        files[f"releases/artefact{i:02d}.bin"] = Generated(min(64 << 20, binaries), noise_pool)
    return Repo(files)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--size-mb", type=int, action="append", help="repository size (repeatable; default 256 and 1024)")
    args = ap.parse_args(argv)
    console = Console()
    sizes = args.size_mb or [256, 1024]
    ident, recipient = encryption.generate_identity()
    table = Table("repository", "step", "wall", "MB/s", "stored", "peak RSS", "vs baseline",
                  title="config-backup of a GitHub repository archive (local stand-ins)")
    with S3Server() as s3, tempfile.TemporaryDirectory(prefix="drkit-bench-config-") as tmp:
        import boto3

        client = boto3.client("s3", endpoint_url=s3.endpoint, aws_access_key_id="k", aws_secret_access_key="s",
                              region_name="us-east-1")
        for size_mb in sizes:
            bucket = f"bench-config-{size_mb}"
            client.create_bucket(Bucket=bucket)
            web = FakeWeb(repos={"acme/big": repository(size_mb)}).start()
            url = f"{web.url}/repos/acme/big/tarball/main"
            env = {"DRKIT_SPACES_BUCKET": bucket, "DRKIT_SPACES_ENDPOINT": s3.endpoint, "DRKIT_SPACES_KEY": "k",
                   "DRKIT_SPACES_SECRET": "s", **signing_env(), "DRKIT_AGE_RECIPIENTS": recipient, "DRKIT_GITHUB_TOKEN": web.github_token,
                   "DRKIT_LOG_LEVEL": "warning", "PATH": os.environ.get("PATH", ""),
                   "DRKIT_CONFIG_SOURCES": json.dumps([{"type": "github", "name": "big", "repo": "acme/big",
                                                        "api_url": web.url}])}
            base = _run(BASELINE, url, web.github_token)
            old = _run(OLD_SCRIPT, url, web.github_token, s3.endpoint, bucket, tmp)
            ours = _run(DRKIT, str(ROOT / "lib"), json.dumps(env), env=env)
            web.stop()
            result = ours["result"]
            assert isinstance(result, dict) and result["ok"], result
            data, b_s = _num(base, "bytes"), _num(base, "seconds")
            label = f"{data / 1e6:.0f} MB, {len(web.repos['acme/big'].files)} files"
            for step, r, stored in (("baseline", base, None), ("old script", old, _num(old, "stored")),
                                    ("config-backup", ours, float(result["bytes_out"]))):
                secs = _num(r, "seconds")
                table.add_row(label, step, f"{secs:.1f} s", f"{data / 1e6 / secs:.0f}",
                              f"{stored / 1e6:.0f} MB" if stored is not None else "-",
                              f"{_num(r, 'hwm_kb') / 1024:.0f} MB", f"{secs / b_s:.2f}x")
    console.print(table)
    console.print("baseline: download + read every file; old script: download, untar, tar czf, upload; "
                  "config-backup: SHA-256 per file, zstd 3, age, multipart upload, manifest.")
    console.print("The operators' script also needs the archive on disk twice (download + re-pack); "
                  "config-backup keeps nothing (a function's /tmp counts against its memory).")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
