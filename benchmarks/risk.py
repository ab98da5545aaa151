"""The risk engine's index: time per tick of `RiskBook.on_quote`, and of each mutation, at 10k and 100k positions.

    .venv/bin/python benchmarks/risk.py                  # 10,000 and 100,000 open positions
    .venv/bin/python benchmarks/risk.py --sizes 10000 --ticks 1000    # a quicker run

Builds a book of random open positions on the five catalogue markets (users ≈ positions / 3, leverage 1–20
within each market's limit, stops 2–10 % away from the price, balances that keep everyone far from a margin
call), then:
- walk: replays a random walk of broker quotes (the simulator's volatility, one second per tick), timing
  each `on_quote`; whatever a tick triggers is handled as the dbproc would (the position closed, the balance
  booked, a new position opened in its place), and those mutations are timed too;
- mutations: times `position_opened`, `position_updated` (stops moved), `position_closed` and
  `balance_changed` on the full book;
- walk_tight: the same walk on a second book whose users start at 100–200 % (margin calls, stop-outs
  with the worst position closed each time, and many account thresholds reached);
- jump: ticks that move one market far enough that about 1 % of all positions hit a stop, then back
  (the triggered positions are released in between, so each repetition starts from the same book).
- with orders: as many working orders as positions (limit and stop, long and short, 1–20 % from the price), and
  the walk again, each tick timed as the risk runner's tick (the book's `on_quote` and the orders'), a filled
  order replaced by a new one; then ticks that fill 1,000 orders at once.
Writes benchmarks/results/risk.json and prints a table. Target: a tick < 1 ms p99 at 100,000 positions and
100,000 working orders.
"""

from __future__ import annotations

import argparse
import gc
import itertools
import json
import math
import os
import platform
import random
import sys
import time
from decimal import Decimal
from pathlib import Path

from rich.console import Console
from rich.table import Table

from cfd_dbproc.risk import OpenPosition, RiskBook
from cfd_dbproc.risk.orders import WorkingOrders
from cfd_poller.simulation import SIMULATION
from shared.contracts.quote import Quote
from shared.contracts.rest import Order
from shared.markets import MARKETS, SYMBOLS, broker_quote
from shared.trading import margin, open_price, pnl, stop_trigger

RESULTS = Path(__file__).parent / "results" / "risk.json"
console = Console(width=None if sys.stdout.isatty() else 132)


class GcPauses:
    """The garbage collector's pauses while a run goes on, per generation (count and longest, ms)."""

    def __init__(self) -> None:
        self.pauses: dict[int, list[float]] = {0: [], 1: [], 2: []}
        self._started = 0.0

    def __enter__(self) -> GcPauses:
        gc.callbacks.append(self._callback)
        return self

    def __exit__(self, *exc: object) -> None:
        gc.callbacks.remove(self._callback)

    def _callback(self, phase: str, info: dict) -> None:
        if phase == "start":
            self._started = time.perf_counter()
        else:
            self.pauses[info["generation"]].append((time.perf_counter() - self._started) * 1000)

    def summary(self) -> dict[str, dict[str, float]]:
        return {f"gen{g}": {"count": len(p), "max_ms": round(max(p, default=0.0), 2)} for g, p in self.pauses.items()}


def stats(samples_ns: list[int]) -> dict[str, float]:
    """Percentiles in µs (the sample at index q × n of the sorted list)."""
    ordered = sorted(samples_ns)
    if not ordered:
        return {"n": 0}

    def pick(q: float) -> float:
        return round(ordered[min(len(ordered) - 1, int(q * len(ordered)))] / 1000, 1)

    return {"n": len(ordered), "p50_us": pick(0.50), "p99_us": pick(0.99), "max_us": round(ordered[-1] / 1000, 1),
            "mean_us": round(sum(ordered) / len(ordered) / 1000, 1)}


class Market:
    """A random walk of the exchange mid; quotes are broker quotes, as the dbproc sees them."""

    def __init__(self, symbol: str, rng: random.Random) -> None:
        self.m = MARKETS[symbol]
        self.mid = float(SIMULATION[self.m.symbol].price)
        self.rng = rng
        self.ts = 0

    def quote(self, move: float | None = None) -> Quote:
        if move is None:
            move = self.rng.gauss(0.0, SIMULATION[self.m.symbol].volatility)
        self.mid *= math.exp(move)
        half = self.mid * float(SIMULATION[self.m.symbol].spread_bps) / 20_000
        tick = self.m.price_tick
        self.ts += 1000
        return broker_quote(self.m, Decimal(repr(self.mid - half)).quantize(tick),
                            Decimal(repr(self.mid + half)).quantize(tick), self.ts)


class Generator:
    def __init__(self, users: int, seed: int) -> None:
        self.rng = random.Random(seed)
        self.users = [f"user{i}" for i in range(users)]
        self.next_id = 0

    def position(self, quote: Quote, user: str | None = None) -> OpenPosition:
        rng, m = self.rng, MARKETS[quote.symbol]
        side = rng.choice(("long", "short"))
        entry = open_price(side, quote)
        qty = max(m.min_qty, (Decimal(rng.uniform(100, 5000)) / entry).quantize(m.qty_step))
        leverage = rng.randint(1, min(20, m.max_leverage))
        below = (entry * Decimal(1 - rng.uniform(0.02, 0.10))).quantize(m.price_tick)
        above = (entry * Decimal(1 + rng.uniform(0.02, 0.10))).quantize(m.price_tick)
        self.next_id += 1
        return OpenPosition(id=f"pos{self.next_id}", user_id=user or rng.choice(self.users), symbol=quote.symbol,
                            side=side, qty=qty, entry_price=entry, margin=margin(qty, entry, leverage),
                            stop_loss=below if side == "long" else above,
                            take_profit=above if side == "long" else below)


def build(count: int, seed: int, tight: bool = False) -> tuple[RiskBook, Generator, dict[str, Market],
                                                              dict[str, OpenPosition], dict[str, Decimal], float]:
    """A book of `count` positions; balances far from a margin call, or (`tight`) at 100–200 % levels."""
    gen = Generator(max(1, count // 3), seed)
    markets = {s: Market(s, random.Random(f"{seed}{s}")) for s in SYMBOLS}
    quotes = {s: m.quote(0.0) for s, m in markets.items()}
    positions = {}
    for _ in range(count):
        p = gen.position(quotes[gen.rng.choice(SYMBOLS)])
        positions[p.id] = p
    balances = {u: Decimal(0) for u in gen.users}
    for p in positions.values():  # far from a margin call: the notional once over, plus twice the margin
        cover = p.margin * Decimal(gen.rng.uniform(1.0, 2.0)) if tight else p.qty * p.entry_price + 2 * p.margin
        balances[p.user_id] += cover.quantize(Decimal("0.01"))
    book = RiskBook()
    for q in quotes.values():
        book.on_quote(q)
    started = time.perf_counter()
    book.load(positions.values(), balances)
    load_s = time.perf_counter() - started
    return book, gen, markets, positions, balances, load_s


def walk(book: RiskBook, gen: Generator, markets: dict[str, Market], positions: dict[str, OpenPosition],
         balances: dict[str, Decimal], ticks: int, orders: WorkingOrders | None = None) -> dict:
    """Random-walk ticks; triggered positions are closed with their PnL booked, and replaced. With `orders`, each
    tick also goes through the working orders (as the risk runner's tick does), timed with the book's, and an
    order it triggers is filled: taken out of the index and a new one placed in its place."""
    tick_ns: list[int] = []
    ordinary_ns: list[int] = []  # the ticks that triggered nothing
    orders_filled = 0
    mutations: dict[str, list[int]] = {"position_closed_with_balance": [], "position_opened": []}
    kinds: dict[str, int] = {}
    checks_before = book.verifications
    clock = time.perf_counter_ns
    for _ in range(ticks):
        q = markets[gen.rng.choice(SYMBOLS)].quote()
        t0 = clock()
        fired = book.on_quote(q)
        filled = orders.on_quote(q) if orders is not None else []
        tick_ns.append(clock() - t0)
        if not fired and not filled:
            ordinary_ns.append(tick_ns[-1])
        for user_id, order in filled:
            assert orders is not None
            orders.remove(order.id)
            orders.put(user_id, new_order(gen.rng, q.symbol, q.mid))
            orders_filled += 1
        for trig in fired:
            kinds[trig.kind] = kinds.get(trig.kind, 0) + 1
            if trig.position_id is None:
                if trig.kind == "stop_out":  # the dbproc closes the worst position (and again while below 50 %)
                    worst = positions.pop(book.worst_first(trig.user_id)[0])
                    quote = book.quote(worst.symbol)
                    price = quote.bid if worst.side == "long" else quote.ask
                    balances[worst.user_id] = max(Decimal(0), balances[worst.user_id]
                                                  + pnl(worst.side, worst.qty, worst.entry_price, price))
                    t0 = clock()
                    book.position_closed(worst.id, balances[worst.user_id])
                    mutations["position_closed_with_balance"].append(clock() - t0)
                continue
            p = positions.pop(trig.position_id)
            balances[p.user_id] += pnl(p.side, p.qty, p.entry_price, trig.price)
            t0 = clock()
            book.position_closed(p.id, balances[p.user_id])
            t1 = clock()
            fresh = gen.position(book.quote(gen.rng.choice(SYMBOLS)), p.user_id)
            book.balance_changed(p.user_id, balances[p.user_id])  # as the runner does: the balance comes first
            t2 = clock()
            book.position_opened(fresh)
            t3 = clock()
            positions[fresh.id] = fresh
            mutations["position_closed_with_balance"].append(t1 - t0)
            mutations["position_opened"].append(t3 - t2)
    return {"ticks": stats(tick_ns), "ordinary_ticks": stats(ordinary_ns), "triggers": kinds,
            "exact_checks": book.verifications - checks_before,
            "orders_filled": orders_filled, "replacement_mutations": {k: stats(v) for k, v in mutations.items()}}


_order_serial = itertools.count()


def new_order(rng: random.Random, symbol: str, mid: Decimal, away: tuple[float, float] = (0.01, 0.20),
              side: str | None = None, kind: str | None = None) -> Order:
    """A working order 1–20 % (`away`) from the price on the side it waits for."""
    side = side or rng.choice(["long", "short"])
    kind = kind or rng.choice(["limit", "stop"])
    waits_lower = (side == "long") == (kind == "limit")
    distance = Decimal(str(round(rng.uniform(*away), 4)))
    price = (mid * (1 - distance) if waits_lower else mid * (1 + distance)).quantize(MARKETS[symbol].price_tick)
    return Order(id=f"o{next(_order_serial)}", symbol=symbol, side=side, type=kind,  # type: ignore[arg-type]
                 qty=Decimal(1), price=price, leverage=1, status="working", created_at=0, updated_at=0)


def working_orders(count: int, book: RiskBook, rng: random.Random) -> WorkingOrders:
    """`count` working orders over the five markets, around the book's latest quotes, for users ≈ count / 3."""
    index = WorkingOrders()
    for n in range(count):
        symbol = SYMBOLS[n % len(SYMBOLS)]
        quote = book.quote(symbol)
        assert quote is not None
        index.put(f"user{n % (count // 3 or 1)}", new_order(rng, symbol, quote.mid))
    return index


def fill_1000_orders(book: RiskBook, orders: WorkingOrders, markets: dict[str, Market], rng: random.Random,
                     repeats: int) -> dict:
    """A tick that triggers 1,000 orders at once (placed just past the price, then the price jumps 1 % through
    them), timed as the risk runner's tick: the book's `on_quote` and the orders'. The positions' stops do not
    fire on a 1 % move (they are 2–10 % away), so this is the orders' cost on top of a full book."""
    symbol = SYMBOLS[0]
    tick_ns: list[int] = []
    for _ in range(repeats):
        quote = book.quote(symbol)
        assert quote is not None
        for k in range(1000):
            orders.put(f"jump{k}", new_order(rng, symbol, quote.mid, away=(0.002, 0.004), side="long", kind="limit"))
        jump = markets[symbol].quote(-0.01)
        t0 = time.perf_counter_ns()
        book.on_quote(jump)
        filled = orders.on_quote(jump)
        tick_ns.append(time.perf_counter_ns() - t0)
        assert len(filled) >= 1000, len(filled)
        for _, order in filled:
            orders.remove(order.id)
        book.on_quote(markets[symbol].quote(0.01))
    return {"ticks": stats(tick_ns)}


def mutation_costs(book: RiskBook, gen: Generator, positions: dict[str, OpenPosition],
                   balances: dict[str, Decimal], count: int) -> dict:
    """Each mutation `count` times on the full book (the book is left as it was found)."""
    clock = time.perf_counter_ns
    samples: dict[str, list[int]] = {"position_opened": [], "position_updated": [], "position_closed": [],
                                     "balance_changed": []}
    opened = []
    for _ in range(count):
        p = gen.position(book.quote(gen.rng.choice(SYMBOLS)))
        book.balance_changed(p.user_id, balances[p.user_id])  # a user the book let go comes back with it
        t0 = clock()
        book.position_opened(p)
        samples["position_opened"].append(clock() - t0)
        opened.append(p)
    for p in opened:
        moved = OpenPosition(id=p.id, user_id=p.user_id, symbol=p.symbol, side=p.side, qty=p.qty,
                             entry_price=p.entry_price, margin=p.margin, stop_loss=p.take_profit and p.stop_loss,
                             take_profit=None)
        t0 = clock()
        book.position_updated(moved)
        samples["position_updated"].append(clock() - t0)
    for p in opened:
        t0 = clock()
        book.position_closed(p.id)
        samples["position_closed"].append(clock() - t0)
    for user in gen.rng.sample(list(balances), min(count, len(balances))):
        t0 = clock()
        book.balance_changed(user, balances[user])
        samples["balance_changed"].append(clock() - t0)
    return {k: stats(v) for k, v in samples.items()}


def jump_to_one_percent(book: RiskBook, markets: dict[str, Market], positions: dict[str, OpenPosition],
                        repeats: int) -> dict:
    """Ticks that make about 1 % of all positions hit a stop, measured, then released and moved back."""
    clock = time.perf_counter_ns
    tick_ns, back_ns, release_ns, fired_counts, checks = [], [], [], [], []
    wanted = max(1, len(positions) // 100)
    for i in range(repeats):
        symbol = SYMBOLS[i % len(SYMBOLS)]
        market = markets[symbol]
        here = market.quote(0.0)
        book.on_quote(here)
        held = [p for p in positions.values() if p.symbol == symbol and not book.is_pending(p.id)]
        direction = -1 if i % 2 == 0 else 1
        lo, hi = 0.0, 0.3  # bisect the move that triggers about `wanted` positions (brute force, not timed)
        for _ in range(30):
            move = (lo + hi) / 2
            saved = market.mid
            probe = market.quote(direction * move)
            market.mid = saved
            if sum(stop_trigger(p.side, p.stop_loss, p.take_profit, probe) is not None for p in held) < wanted:
                lo = move
            else:
                hi = move
        saved = market.mid
        jump = market.quote(direction * hi)
        before = book.verifications
        t0 = clock()
        fired = book.on_quote(jump)
        tick_ns.append(clock() - t0)
        checks.append(book.verifications - before)
        fired_counts.append(len([t for t in fired if t.position_id is not None]))
        market.mid = saved
        t0 = clock()
        book.on_quote(market.quote(0.0))
        back_ns.append(clock() - t0)
        for trig in fired:
            if trig.position_id is not None:
                t0 = clock()
                book.release(trig.position_id)
                release_ns.append(clock() - t0)
    per_trigger = [t / max(1, n) for t, n in zip(tick_ns, fired_counts, strict=True)]
    return {"ticks": stats(tick_ns), "stops_fired_per_tick": sorted(fired_counts),
            "share_of_positions": round(sum(fired_counts) / len(fired_counts) / len(positions), 4),
            "exact_checks_per_tick": round(sum(checks) / len(checks), 1),
            "per_stop_fired_us": round(sum(per_trigger) / len(per_trigger) / 1000, 2),
            "tick_back": stats(back_ns), "release": stats(release_ns)}


def run(count: int, ticks: int, seed: int, with_orders: bool = True) -> dict:
    console.print(f"[bold]{count:,} positions[/]: building…")
    book, gen, markets, positions, balances, load_s = build(count, seed)
    gc.collect()
    result = {"positions": count, "users": len(gen.users), "load_s": round(load_s, 2),
              "load_per_position_us": round(load_s / count * 1e6, 1)}
    with GcPauses() as pauses:
        result["walk"] = walk(book, gen, markets, positions, balances, ticks)
        result["mutations"] = mutation_costs(book, gen, positions, balances, min(2000, count // 5))
        result["jump"] = jump_to_one_percent(book, markets, positions, repeats=10)
    result["gc_pauses_during_runs"] = pauses.summary()
    result["open_positions_after"] = len(book)
    if with_orders:
        console.print(f"[bold]{count:,} positions and {count:,} working orders[/]: building…")
        orders = working_orders(count, book, gen.rng)
        gc.collect()
        result["walk_with_orders"] = walk(book, gen, markets, positions, balances, ticks, orders)
        result["walk_with_orders"]["working_orders"] = len(orders)
        result["fill_1000_orders"] = fill_1000_orders(book, orders, markets, gen.rng, repeats=20)
        del orders
    del book, positions, balances
    console.print(f"[bold]{count:,} positions[/], tight margins: building…")
    book, gen, markets, positions, balances, _ = build(count, seed + 1, tight=True)
    gc.collect()
    result["walk_tight"] = walk(book, gen, markets, positions, balances, ticks)
    return result


def print_table(report: dict) -> None:
    table = Table(title="RiskBook: µs per call (p50 / p99 / max)")
    for column in ("positions", "what", "n", "p50", "p99", "max", "notes"):
        table.add_column(column, justify="left" if column in ("what", "notes") else "right")
    for r in report["books"]:
        def row(what: str, s: dict, notes: str = "", size: int = r["positions"]) -> None:
            table.add_row(f"{size:,}", what, str(s.get("n", 0)), str(s.get("p50_us", "")),
                          str(s.get("p99_us", "")), str(s.get("max_us", "")), notes)

        walk_, jump = r["walk"], r["jump"]
        row("on_quote, random walk", walk_["ticks"],
            f"triggers {walk_['triggers'] or 'none'}, {walk_['exact_checks']} exact checks")
        tight = r["walk_tight"]
        row("on_quote, walk, levels 100–200 %", tight["ticks"],
            f"{sum(tight['triggers'].values())} triggers, {tight['exact_checks']} exact checks")
        row("on_quote, ~1 % hit a stop", jump["ticks"],
            f"{jump['share_of_positions']:.2%} of positions per tick, {jump['per_stop_fired_us']} µs per stop")
        row("on_quote, the tick back", jump["tick_back"])
        if "walk_with_orders" in r:
            with_orders = r["walk_with_orders"]
            row("tick: book + orders, walk", with_orders["ticks"],
                f"{with_orders['working_orders']:,} working orders, {with_orders['orders_filled']} filled")
            row("  … the ticks that trigger nothing", with_orders["ordinary_ticks"])
            row("tick: book + 1,000 orders fill", r["fill_1000_orders"]["ticks"])
        for name, s in r["mutations"].items():
            row(name, s)
        row("release", jump["release"])
        table.add_row(f"{r['positions']:,}", "load", "1", "", "", f"{r['load_s'] * 1e6:,.0f}",
                      f"{r['load_per_position_us']} µs per position")
    console.print(table)
    for r in report["books"]:
        gcs = ", ".join(f"{g}: {v['count']} (max {v['max_ms']} ms)" for g, v in r["gc_pauses_during_runs"].items())
        console.print(f"{r['positions']:,} positions, garbage collections during the runs: {gcs}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", default="10000,100000", help="open positions per book, comma separated")
    parser.add_argument("--ticks", type=int, default=3000, help="random-walk ticks per book")
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args()
    started = time.perf_counter()
    report = {
        "benchmark": "risk",
        "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform(),
                    "load_average_at_start": [round(x, 2) for x in os.getloadavg()]},
        "settings": {"sizes": [int(s) for s in args.sizes.split(",")], "ticks": args.ticks, "seed": args.seed},
        "target": "a tick p99 < 1000 µs at 100,000 positions and 100,000 working orders",
        "books": [run(int(size), args.ticks, args.seed) for size in args.sizes.split(",")],
    }
    report["runtime_s"] = round(time.perf_counter() - started, 1)
    report["machine"]["load_average_at_end"] = [round(x, 2) for x in os.getloadavg()]
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(report, indent=2) + "\n")
    print_table(report)
    console.print(f"{report['runtime_s']} s; written to {RESULTS.relative_to(Path(__file__).parent.parent)}")


if __name__ == "__main__":
    main()
