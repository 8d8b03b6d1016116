"""Benchmark: 100 HTTP targets, each answering after 200 ms (scripts/bench_probe).

Target (issue 5): the whole run under 1.5 s wall time, with bounded threads and
memory. Prints the ratio to the slowest single probe and the sequential sum.
Local servers only (127.0.0.1); the request count is fixed.
"""

from __future__ import annotations

import argparse
import json
import threading
import time

from rich.console import Console
from rich.table import Table

from drkit.health import probe

from .probeservers import Behaviour, serve, stop


def hwm_mb() -> float:
    line = next(ln for ln in open("/proc/self/status") if ln.startswith("VmHWM"))
    return int(line.split()[1]) / 1024


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--targets", type=int, default=100)
    ap.add_argument("--delay-ms", type=int, default=200)
    args = ap.parse_args(argv)
    console = Console()
    behaviour = Behaviour()
    behaviour.delay_s = args.delay_ms / 1000
    servers = [serve(behaviour) for _ in range(4)]  # several listening sockets, like several hosts
    targets = probe.parse_targets(json.dumps([
        {"name": f"t{i}", "type": "http", "url": f"http://127.0.0.1:{servers[i % 4][1]}/health", "timeout_s": 5}
        for i in range(args.targets)]))
    probe.run_all(targets[:4])  # warm imports
    before_mb = hwm_mb()
    peak_threads = [threading.active_count()]
    done = threading.Event()

    def sample() -> None:
        while not done.wait(0.01):
            peak_threads.append(threading.active_count())

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    t0 = time.monotonic()
    results = probe.run_all(targets)
    wall = time.monotonic() - t0
    done.set()
    sampler.join()
    slowest = max(r.duration_s for r in results)
    total = sum(r.duration_s for r in results)
    for server, _ in servers:
        stop(server)
    ok = sum(r.ok for r in results)
    t = Table("figure", "value", title=f"{args.targets} HTTP targets answering after {args.delay_ms} ms")
    t.add_row("probes ok", f"{ok}/{len(results)}")
    t.add_row("wall time", f"{wall:.2f} s (target < 1.5 s)")
    t.add_row("slowest single probe", f"{slowest:.3f} s  -> wall / slowest = {wall / slowest:.2f}x")
    t.add_row("sum of all probes (sequential)", f"{total:.1f} s  -> {total / wall:.0f}x faster concurrently")
    t.add_row("probe threads", f"pool of {probe.MAX_WORKERS}; peak {max(peak_threads)} threads in the process "
                               "(including the local servers' handler threads)")
    t.add_row("peak RSS", f"{hwm_mb():.0f} MB (before the run: {before_mb:.0f} MB)")
    console.print(t)
    console.print("[green]target met[/green]" if wall < 1.5 and ok == len(results) else "[yellow]target missed[/yellow]")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
