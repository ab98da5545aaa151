"""Soak: the platform under steady REST, WebSocket and churn load for a chosen time, sampled as it runs.

    .venv/bin/python benchmarks/soak.py --minutes 30                  # embedded backends
    eval "$(scripts/services.sh env)"; .venv/bin/python benchmarks/soak.py --real --minutes 30

The platform runs as `cfd up` in a process of its own (its memory is what is measured), on a fresh data
directory (embedded) or a fresh PostgreSQL database and topic prefix (real). The load, from this process:
- REST traders, each opening a position, reading its account and open positions, and closing it, paced so
  that all of them together make about `--rps` requests per second;
- WebSocket clients on `prices.*`, of which `--churn` per second disconnect and connect again;
- each trader also keeps an `account` subscription open.

Every `--sample` seconds it records the platform process's RSS, open file descriptors and threads, the
database's size and row counts, and the REST latency (p50/p99) and request count of the window. After the
load it keeps sampling for `--cooldown` seconds, to see whether memory comes back. Writes
`benchmarks/results/soak-<backends>.json` with the samples and the growth per hour (least squares over the
samples after the warm-up).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
from _support import RESULTS, Codes
from rich.console import Console
from rich.table import Table
from soak_load import TABLES, PlatformProcess, Window, growth_per_hour, sign_up, start_load

console = Console()


async def soak(args: argparse.Namespace) -> dict[str, Any]:
    data_dir = Path(tempfile.mkdtemp(prefix="cfd-soak-"))
    platform = PlatformProcess(args.real, data_dir, dict(v.split("=", 1) for v in args.env))
    await platform.start()
    codes = Codes(outbox=data_dir / "outbox")
    stop = asyncio.Event()
    window = Window()
    frames = [0]
    tasks: list[asyncio.Task] = []
    samples: list[dict[str, Any]] = []
    started = time.monotonic()

    async def sample(phase: str) -> None:
        row = {"t_s": round(time.monotonic() - started, 1), "phase": phase, **platform.sample_process(),
               **await platform.sample_database(), **window.take(), "ws_frames": frames[0]}
        frames[0] = 0
        samples.append(row)
        console.print(f"[dim]{row['t_s']:>7.0f} s[/] {phase:<8} rss {row['rss_mb']:>7.1f} MB  fds {row['fds']:>4}  "
                      f"thr {row['threads']:>3}  db {row['db_mb']:>7.2f} MB  "
                      f"req {row['requests']:>6}  p99 {row.get('p99_ms', 0):>7.1f} ms  "
                      f"rows {sum(row['rows'].values()):>8}", soft_wrap=True)

    limits = httpx.Limits(max_connections=args.traders + 8)
    try:
        async with httpx.AsyncClient(base_url=platform.api, timeout=30, limits=limits) as api:
            await sample("baseline")
            with console.status(f"signing up {args.traders} traders …"):
                accounts = [await sign_up(api, codes) for _ in range(args.traders)]
            tasks += start_load(platform, api, accounts, window, frames, stop, rps=args.rps, clients=args.clients,
                                churn=args.churn)
            load_until = time.monotonic() + args.minutes * 60
            while time.monotonic() < load_until:
                await asyncio.sleep(min(args.sample, max(0.0, load_until - time.monotonic())))
                await sample("load")
            stop.set()
            await asyncio.gather(*tasks, return_exceptions=True)
            cool_until = time.monotonic() + args.cooldown
            while time.monotonic() < cool_until:
                await asyncio.sleep(min(args.sample, max(0.0, cool_until - time.monotonic())))
                await sample("cooldown")
    finally:
        stop.set()
        for task in tasks:
            task.cancel()
        await platform.stop()

    warm_up = args.warm_up * 60
    load = [s for s in samples if s["phase"] == "load"]
    return {
        "backends": "real" if args.real else "embedded",
        "platform_env": args.env,
        "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "cpus": os.cpu_count(),
        "load_average_at_start": os.getloadavg(),
        "load": {"minutes": args.minutes, "traders": args.traders, "target_rps": args.rps,
                 "ws_clients": args.clients, "churn_per_s": args.churn},
        "results": {
            "rss_mb_baseline": samples[0]["rss_mb"],
            "rss_mb_after_warm_up": next((s["rss_mb"] for s in load if s["t_s"] >= warm_up), None),
            "rss_mb_end_of_load": load[-1]["rss_mb"] if load else None,
            "rss_mb_after_cooldown": samples[-1]["rss_mb"],
            "rss_mb_growth_per_hour": growth_per_hour(samples, "rss_mb", warm_up),
            "fds_growth_per_hour": growth_per_hour(samples, "fds", warm_up),
            "db_mb_growth_per_hour": growth_per_hour(samples, "db_mb", warm_up),
            "requests_per_s": round(sum(s["requests"] for s in load) / max(1.0, load[-1]["t_s"] - samples[0]["t_s"]),
                                    1) if load else 0,
            "row_growth_per_hour": {
                t: round(statistics.linear_regression([s["t_s"] for s in load], [s["rows"][t] for s in load]).slope
                         * 3600) for t in TABLES} if len(load) >= 3 else {},
        },
        "samples": samples,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--real", action="store_true", help="Kafka, Redis, PostgreSQL (from CFD_* variables)")
    parser.add_argument("--minutes", type=float, default=30, help="how long the load runs (default 30)")
    parser.add_argument("--warm-up", type=float, default=3, help="minutes left out of the growth fit (default 3)")
    parser.add_argument("--cooldown", type=float, default=120, help="seconds sampled after the load (default 120)")
    parser.add_argument("--sample", type=float, default=30, help="seconds between samples (default 30)")
    parser.add_argument("--traders", type=int, default=20, help="REST traders (default 20)")
    parser.add_argument("--rps", type=float, default=27, help="REST requests per second, all traders (default 27)")
    parser.add_argument("--clients", type=int, default=300, help="WebSocket clients on prices.* (default 300)")
    parser.add_argument("--churn", type=float, default=2, help="WebSocket reconnects per second (default 2)")
    parser.add_argument("--out", type=Path, help="results file (default benchmarks/results/soak-<backends>.json)")
    parser.add_argument("--env", action="append", default=[], metavar="NAME=VALUE",
                        help="a variable for the platform's process, e.g. LD_PRELOAD=libjemalloc.so.2 (repeatable)")
    args = parser.parse_args()
    if args.real and not all(os.environ.get(v) for v in ("CFD_KAFKA_BOOTSTRAP", "CFD_REDIS_URL", "CFD_DATABASE_URL")):
        sys.exit("--real needs CFD_KAFKA_BOOTSTRAP, CFD_REDIS_URL and CFD_DATABASE_URL: "
                 'eval "$(scripts/services.sh env)"')
    report = asyncio.run(soak(args))
    RESULTS.mkdir(exist_ok=True)
    out = args.out or RESULTS / f"soak-{report['backends']}.json"
    out.write_text(json.dumps(report, indent=2) + "\n")
    r = report["results"]
    table = Table(title=f"soak, {report['backends']} backends, {args.minutes:g} min")
    table.add_column("measure")
    table.add_column("value", justify="right")
    for key, value in r.items():
        table.add_row(key.replace("_", " "), str(value))
    console.print(table)
    console.print(f"written to {out}")


if __name__ == "__main__":
    main()
