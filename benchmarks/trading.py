"""Trading latency and throughput: open-to-acknowledgement over REST, one at a time and under load.

    .venv/bin/python benchmarks/trading.py                      # embedded backends
    eval "$(scripts/services.sh env)"; .venv/bin/python benchmarks/trading.py --real

Targets: open p50 < 5 ms embedded, < 15 ms on Kafka + PostgreSQL. Writes
benchmarks/results/trading-<backends>.json.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from decimal import Decimal

import httpx
from _support import RESULTS, describe, new_trader, percentiles, running_platform
from rich.console import Console
from rich.table import Table

from shared.contracts import encode
from shared.contracts.bus import PriceTick

console = Console()
ORDER = {"symbol": "DOGE_USDC", "side": "long", "qty": "10", "leverage": 1}
TICK_SECONDS = 0.05


async def feed_prices(platform, stop: asyncio.Event) -> None:
    """A DOGE tick every 50 ms, so the dbproc always has a live quote."""
    topic = platform.settings.bus.topic("price-updates")
    while not stop.is_set():
        now = time.time_ns() // 1000
        tick = PriceTick(symbol="DOGE_USDC", bid=Decimal("0.30000"), ask=Decimal("0.30010"), exchange_time_us=now,
                         ingest_time_us=now)
        await platform.bus.publish(topic, encode(tick), key=b"DOGE_USDC", wait=False)
        await asyncio.sleep(TICK_SECONDS)


async def measure(real: bool, sequential: int, users: int, per_user: int) -> dict:
    async with running_platform(real) as (platform, codes):
        stop = asyncio.Event()
        feeder = asyncio.ensure_future(feed_prices(platform, stop))
        await asyncio.sleep(0.3)
        limits = httpx.Limits(max_connections=users + 4)
        async with httpx.AsyncClient(base_url=platform.base_url + "/api/v1", timeout=30, limits=limits) as api:
            auth = await new_trader(api, codes)
            one_by_one = []
            with console.status(f"{sequential} opens, one at a time …"):
                for _ in range(10):  # warm up
                    await api.post("/positions", headers=auth, json=ORDER)
                for _ in range(sequential):
                    started = time.perf_counter()
                    response = await api.post("/positions", headers=auth, json=ORDER)
                    one_by_one.append(time.perf_counter() - started)
                    assert response.status_code == 201, response.text
            traders = [await new_trader(api, codes) for _ in range(users)]
            under_load: list[float] = []

            async def trade(headers: dict[str, str]) -> None:
                for _ in range(per_user):
                    started = time.perf_counter()
                    response = await api.post("/positions", headers=headers, json=ORDER)
                    under_load.append(time.perf_counter() - started)
                    assert response.status_code == 201, response.text

            with console.status(f"{users} traders × {per_user} opens at once …"):
                started = time.perf_counter()
                await asyncio.gather(*(trade(h) for h in traders))
                elapsed = time.perf_counter() - started
        stop.set()
        await feeder
        return {
            **describe(platform.settings, real),
            "results": {
                "open_one_at_a_time": percentiles(one_by_one),
                "open_under_load": percentiles(under_load),
                "sustained_opens_per_second": round(len(under_load) / elapsed, 1),
                "concurrent_traders": users,
            },
        }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--real", action="store_true", help="Kafka, Redis, PostgreSQL (from CFD_* variables)")
    parser.add_argument("--sequential", type=int, default=300)
    parser.add_argument("--users", type=int, default=20)
    parser.add_argument("--per-user", type=int, default=50)
    args = parser.parse_args()
    report = asyncio.run(measure(args.real, args.sequential, args.users, args.per_user))
    RESULTS.mkdir(exist_ok=True)
    out = RESULTS / f"trading-{report['backends']}.json"
    out.write_text(json.dumps(report, indent=2) + "\n")
    r = report["results"]
    table = Table(title=f"opens over REST, {report['backends']} backends")
    for column in ("measure", "n", "p50 ms", "p90 ms", "p99 ms"):
        table.add_column(column, justify="left" if column == "measure" else "right")
    for name in ("open_one_at_a_time", "open_under_load"):
        row = r[name]
        table.add_row(name.replace("_", " "), str(row["n"]), f"{row['p50_ms']:.2f}", f"{row['p90_ms']:.2f}",
                      f"{row['p99_ms']:.2f}")
    console.print(table)
    console.print(f"sustained: {r['sustained_opens_per_second']} opens/s with {r['concurrent_traders']} traders")
    console.print(f"written to {out.relative_to(RESULTS.parent.parent)}")


if __name__ == "__main__":
    main()
