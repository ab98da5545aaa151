"""The risk engine's index of working orders: time per tick of `WorkingOrders.on_quote` with 100,000 working
orders, and the cost of a tick that triggers 1,000 orders at once.

    .venv/bin/python benchmarks/orders_index.py [--orders 100000] [--ticks 5000]

Builds 100,000 limit and stop orders, long and short, on the five catalogue markets, each 1–20 % away from the
price on the side it waits for; replays a random walk of broker quotes (the simulator's volatility, one second
per tick), timing each `on_quote`, and puts every order a tick triggers back at a new price (as a fill's place
is taken by a new order), so the index keeps its size. Then: ticks that jump one market far enough to trigger
1,000 orders placed just past the price. Writes benchmarks/results/orders_index.json. Target: an ordinary tick
< 1 ms p99 at 100,000 orders.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import time
from decimal import Decimal
from pathlib import Path

from rich.console import Console
from rich.table import Table

from cfd_dbproc.risk.orders import WorkingOrders
from cfd_poller.simulation import SIMULATION
from shared.contracts.quote import Quote
from shared.contracts.rest import Order
from shared.markets import MARKETS, broker_quote

RESULTS = Path(__file__).parent / "results" / "orders_index.json"
console = Console()


def stats(samples_ns: list[int]) -> dict[str, float]:
    ordered = sorted(samples_ns)

    def pick(q: float) -> float:
        return round(ordered[min(len(ordered) - 1, int(q * len(ordered)))] / 1e6, 4)

    return {"n": len(ordered), "p50_ms": pick(0.5), "p99_ms": pick(0.99), "max_ms": round(ordered[-1] / 1e6, 4)}


def new_order(n: int, symbol: str, mid: Decimal, rng: random.Random, away: tuple[float, float] = (0.01, 0.20),
              side: str | None = None, kind: str | None = None) -> Order:
    side = side or rng.choice(["long", "short"])
    kind = kind or rng.choice(["limit", "stop"])
    waits_lower = (side == "long") == (kind == "limit")
    distance = Decimal(str(round(rng.uniform(*away), 4)))
    tick = MARKETS[symbol].price_tick
    price = (mid * (1 - distance) if waits_lower else mid * (1 + distance)).quantize(tick)
    return Order(id=f"o{n}", symbol=symbol, side=side, type=kind, qty=Decimal(1), price=price,  # type: ignore[arg-type]
                 leverage=1, status="working", created_at=0, updated_at=0)


def quote(symbol: str, mid: Decimal) -> Quote:
    return broker_quote(MARKETS[symbol], mid, mid, 0)


def run(count: int, ticks: int, seed: int) -> dict:
    rng = random.Random(seed)
    symbols = list(MARKETS)
    mids = {s: SIMULATION[s].price for s in symbols}
    index = WorkingOrders()
    for n in range(count):
        symbol = symbols[n % len(symbols)]
        index.put(f"user{n % (count // 3 or 1)}", new_order(n, symbol, mids[symbol], rng))
    serial = count
    samples: list[int] = []
    fired_total = 0
    for _ in range(ticks):
        symbol = rng.choice(symbols)
        vol = SIMULATION[symbol].volatility
        mids[symbol] = (mids[symbol] * Decimal(str(math.exp(rng.gauss(0, vol))))).quantize(
            MARKETS[symbol].price_tick)
        q = quote(symbol, mids[symbol])
        started = time.perf_counter_ns()
        fired = index.on_quote(q)
        samples.append(time.perf_counter_ns() - started)
        fired_total += len(fired)
        for user_id, order in fired:  # filled: a new order takes its place
            index.remove(order.id)
            serial += 1
            index.put(user_id, new_order(serial, symbol, mids[symbol], rng))
    # a jump that triggers 1,000 orders placed just past the price
    jumps: list[int] = []
    symbol = symbols[0]
    for _ in range(20):
        mid = mids[symbol]
        placed = []
        for k in range(1000):
            serial += 1
            order = new_order(serial, symbol, mid, rng, away=(0.002, 0.004), side="long", kind="limit")
            index.put(f"jump{k}", order)
            placed.append(order.id)
        q = quote(symbol, (mid * Decimal("0.99")).quantize(MARKETS[symbol].price_tick))
        started = time.perf_counter_ns()
        fired = index.on_quote(q)
        jumps.append(time.perf_counter_ns() - started)
        assert len(fired) >= 1000, len(fired)
        for _, order in fired:
            index.remove(order.id)
    return {"orders": count, "ticks": ticks, "fired_during_walk": fired_total, "ordinary_tick": stats(samples),
            "tick_filling_1000": stats(jumps), "cpus": os.cpu_count(),
            "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--orders", type=int, default=100_000)
    parser.add_argument("--ticks", type=int, default=5_000)
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args()
    with console.status(f"{args.orders:,} working orders, {args.ticks:,} ticks …"):
        report = run(args.orders, args.ticks, args.seed)
    table = Table(title=f"working orders index, {report['orders']:,} orders")
    for column in ("tick", "n", "p50 ms", "p99 ms", "max ms"):
        table.add_column(column, justify="left" if column == "tick" else "right")
    for name in ("ordinary_tick", "tick_filling_1000"):
        s = report[name]
        table.add_row(name.replace("_", " "), str(s["n"]), str(s["p50_ms"]), str(s["p99_ms"]), str(s["max_ms"]))
    console.print(table)
    console.print(f"[dim]{report['fired_during_walk']} orders triggered during the walk[/]")
    RESULTS.write_text(json.dumps(report, indent=2) + "\n")
    console.print(f"[dim]written to {RESULTS}[/]")


if __name__ == "__main__":
    main()
