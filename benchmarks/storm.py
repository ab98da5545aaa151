"""One user's storm against another user's latency: the rate limits at work.

    .venv/bin/python benchmarks/storm.py                        # embedded backends
    eval "$(scripts/services.sh env)"; .venv/bin/python benchmarks/storm.py --real

A steady trader reads their account every 50 ms and opens a position every 10th time, measured; meanwhile a
second user (or their bot) storms the API with 50 concurrent loops of reads and opens, as fast as the server
answers, from a process of its own (so the storm's client work does not share the platform's event loop).
Three phases, each on a fresh platform: quiet; the storm under the default limits; and the storm with the
limits lifted, for comparison. Writes benchmarks/results/storm-<backends>.json.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from decimal import Decimal

import httpx
from _support import RESULTS, describe, new_trader, percentiles, running_platform
from rich.console import Console
from rich.table import Table

from shared.contracts import encode
from shared.contracts.bus import PriceTick
from shared.settings import RateLimit

console = Console()
ORDER = {"symbol": "DOGE_USDC", "side": "long", "qty": "10", "leverage": 1}
PRODUCT_LIMITS = {"rate_limit_reads": RateLimit(300, 10), "rate_limit_trading": RateLimit(100, 10)}
LIFTED = {"rate_limit_reads": RateLimit(10**9, 10), "rate_limit_trading": RateLimit(10**9, 10)}


async def feed_prices(platform, stop: asyncio.Event) -> None:
    topic = platform.settings.bus.topic("price-updates")
    while not stop.is_set():
        now = time.time_ns() // 1000
        tick = PriceTick(symbol="DOGE_USDC", bid=Decimal("0.30000"), ask=Decimal("0.30010"), exchange_time_us=now,
                         ingest_time_us=now)
        await platform.bus.publish(topic, encode(tick), key=b"DOGE_USDC", wait=False)
        await asyncio.sleep(0.05)


async def steady(api: httpx.AsyncClient, auth: dict, count: int) -> list[float]:
    """The measured trader: a read every 50 ms (well inside the limits), an open every 10th."""
    samples = []
    for n in range(count):
        started = time.perf_counter()
        if n % 10 == 9:
            response = await api.post("/positions", headers=auth, json=ORDER)
        else:
            response = await api.get("/account", headers=auth)
        samples.append(time.perf_counter() - started)
        assert response.status_code in (200, 201), response.text
        await asyncio.sleep(0.05)
    return samples


async def storm_loop(api: httpx.AsyncClient, auth: dict, stop: asyncio.Event, counts: dict[int, int]) -> None:
    n = 0
    while not stop.is_set():
        n += 1
        response = await (api.post("/positions", headers=auth, json=ORDER) if n % 5 == 0
                          else api.get("/positions", headers=auth, params={"limit": 50}))
        counts[response.status_code] = counts.get(response.status_code, 0) + 1


async def phase(platform, name: str, count: int, storming: bool, codes) -> dict:
    limits = httpx.Limits(max_connections=64)
    async with httpx.AsyncClient(base_url=platform.base_url + "/api/v1", timeout=30, limits=limits) as api:
        victim, attacker = await new_trader(api, codes), await new_trader(api, codes)
        started = time.perf_counter()
        storm = None
        if storming:
            storm = await asyncio.create_subprocess_exec(
                sys.executable, __file__, "--storm", platform.base_url + "/api/v1", attacker["Authorization"],
                stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE)
            assert storm.stdout is not None
            await storm.stdout.readline()  # "storming"
        with console.status(f"{name}: {count} steady requests …"):
            samples = await steady(api, victim, count)
        counts: dict[str, int] = {}
        if storm is not None:
            out, _ = await storm.communicate(b"stop\n")
            counts = json.loads(out)
        seconds = time.perf_counter() - started
    storm_total = sum(counts.values())
    return {"phase": name, "steady": percentiles(samples),
            "storm_rps": round(storm_total / seconds, 1) if storm_total else 0,
            "storm_statuses": dict(sorted(counts.items()))}


async def measure(real: bool, count: int) -> dict:
    results = []
    for name, limits, storming in (("quiet", PRODUCT_LIMITS, False), ("storm, default limits", PRODUCT_LIMITS, True),
                                   ("storm, limits lifted", LIFTED, True)):
        async with running_platform(real, auth=limits) as (platform, codes):
            stop = asyncio.Event()
            feeder = asyncio.ensure_future(feed_prices(platform, stop))
            await asyncio.sleep(0.3)
            try:
                results.append(await phase(platform, name, count, storming, codes))
            finally:
                stop.set()
                await feeder
            settings = platform.settings
    return {**describe(settings, real), "steady_requests": count, "phases": results}


async def storm(base_url: str, authorization: str) -> None:
    """The storm's own process: 50 loops until a line arrives on stdin; then the answers by status, as JSON."""
    counts: dict[int, int] = {}
    stop = asyncio.Event()
    limits = httpx.Limits(max_connections=64)
    async with httpx.AsyncClient(base_url=base_url, timeout=30, limits=limits) as api:
        loops = [asyncio.ensure_future(storm_loop(api, {"Authorization": authorization}, stop, counts))
                 for _ in range(50)]
        print("storming", flush=True)
        await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)
        stop.set()
        await asyncio.gather(*loops)
    print(json.dumps({str(k): v for k, v in sorted(counts.items())}), flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--real", action="store_true", help="use the backends the CFD_* variables name")
    parser.add_argument("--count", type=int, default=500, help="steady requests per phase")
    parser.add_argument("--storm", nargs=2, metavar=("BASE_URL", "AUTHORIZATION"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.storm:
        asyncio.run(storm(*args.storm))
        return
    result = asyncio.run(measure(args.real, args.count))
    table = Table(title=f"the steady trader's latency ({result['backends']})")
    for column in ("phase", "p50 ms", "p99 ms", "storm req/s", "storm answers"):
        table.add_column(column, justify="left" if column in ("phase", "storm answers") else "right")
    for p in result["phases"]:
        table.add_row(p["phase"], str(p["steady"]["p50_ms"]), str(p["steady"]["p99_ms"]), str(p["storm_rps"]),
                      ", ".join(f"{k}: {v}" for k, v in p["storm_statuses"].items()) or "—")
    console.print(table)
    path = RESULTS / f"storm-{result['backends']}.json"
    path.write_text(json.dumps(result, indent=2) + "\n")
    console.print(f"[dim]written to {path}[/]")


if __name__ == "__main__":
    main()
