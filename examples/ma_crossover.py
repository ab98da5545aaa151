"""A moving-average crossover trader: prices over the feed (or from a replay's steps), trading over REST, always
with a stop-loss.

    python examples/ma_crossover.py SOL_USDC --qty 1 [--fast 5] [--slow 20] [--stop-pct 2] [--max-seconds N]
    python examples/ma_crossover.py SOL_USDC --replay-step [--step N]     # drives `cfd up --replay FILE --seed N`
    python examples/ma_crossover.py SOL_USDC --sandbox examples/recordings/crash.jsonl [--seed 7]

It averages the broker mid of each tick: when the fast average crosses above the slow one it goes long, when
it crosses below it goes short, closing the position it had first. Every position gets a stop-loss
`--stop-pct` percent from its entry, placed with the order itself. It stops after `--max-seconds` (closing its
position unless `--keep`), or on Ctrl-C.

With `--replay-step` it drives the platform's lockstep replay instead of following the feed: it steps the
replay `--step` ticks at a time and trades on each step's quote, until the recording ends. Each step answers
once the account has felt the ticks, so the same recording and seed give the same fills and ledger every run.
`--sandbox FILE` does the same on a sandbox of its own, run inside this process (`cfd_cli.sandbox`), and prints
the ledger at the end.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import sys
from collections import deque
from decimal import Decimal
from pathlib import Path

from connect import client

from cfd_client import ApiClient, ApiError, Conflict
from cfd_client.models import Position, Side
from shared.contracts.rest import Price
from shared.contracts.ws import PriceFrame
from shared.markets import Market


class Crossover:
    """The signal: +1 (fast above slow), −1 (below), 0 (not enough prices yet)."""

    def __init__(self, fast: int, slow: int) -> None:
        self.fast, self.slow = fast, slow
        self.mids: deque[Decimal] = deque(maxlen=slow)

    def add(self, mid: Decimal) -> int:
        self.mids.append(mid)
        if len(self.mids) < self.slow:
            return 0
        fast = sum(list(self.mids)[-self.fast:]) / self.fast
        slow = sum(self.mids) / self.slow
        return 1 if fast > slow else -1 if fast < slow else 0


class Trader:
    """Holds one position at a time on `market`, flipping it as the signal flips."""

    def __init__(self, api: ApiClient, market: Market, args: argparse.Namespace) -> None:
        self.api = api
        self.market = market
        self.signal = Crossover(args.fast, args.slow)
        self.qty = Decimal(args.qty)
        self.stop_pct = Decimal(args.stop_pct)
        self.position: Position | None = None
        self.state = 0  # +1 long, −1 short, 0 flat

    async def adopt(self) -> None:
        """Take over the position this market already has open, if any."""
        self.position = next((p for p in await self.api.positions("open") if p.symbol == self.market.symbol), None)
        self.state = 0 if self.position is None else 1 if self.position.side == "long" else -1

    async def on_mid(self, mid: Decimal, quote: Price | None = None) -> None:
        """One more mid; trades when the signal flips. `quote` is what an order fills at now (else it is asked)."""
        wanted = self.signal.add(mid)
        if wanted and wanted != self.state:
            self.position = await self.flip("long" if wanted > 0 else "short", quote)
            self.state = wanted if self.position is not None else 0

    async def flip(self, side: Side, quote: Price | None) -> Position | None:
        """Close the position (if any) and open `side` with its stop-loss; None if the platform refused."""
        await self.close()
        price = quote or await self.api.price(self.market.symbol)
        entry = price.ask if side == "long" else price.bid
        away = entry * self.stop_pct / 100
        stop = (entry - away if side == "long" else entry + away).quantize(self.market.price_tick)
        try:
            opened = await self.api.open_position(self.market.symbol, side, self.qty, 1, stop_loss=stop)
        except ApiError as exc:
            print(f"not opened: {exc.message}", flush=True)
            return None
        print(f"opened {opened.side} {opened.qty} at {opened.entry_price}, stop-loss {opened.stop_loss}", flush=True)
        return opened

    async def close(self) -> None:
        """Close the position, or say what closed it first (its stop-loss)."""
        if self.position is None:
            return
        try:
            closed = await self.api.close_position(self.position.id)
            print(f"closed {closed.side} at {closed.close_price}: {closed.realized_pnl}", flush=True)
        except Conflict:  # already closed: its stop-loss went first
            closed = await self.api.position(self.position.id)
            print(f"{closed.close_reason} closed {closed.side} at {closed.close_price}: {closed.realized_pnl}",
                  flush=True)
        self.position = None


async def follow_feed(trader: Trader) -> None:
    symbol = trader.market.symbol
    async with await trader.api.feed([f"prices.{symbol}"]) as feed:
        print(f"watching {symbol}: {trader.signal.fast}/{trader.signal.slow} moving averages of the mid", flush=True)
        async for event in feed:
            if isinstance(event, PriceFrame) and event.symbol == symbol:
                await trader.on_mid(event.mid)


async def follow_steps(trader: Trader, ticks: int) -> None:
    """Step the lockstep replay until it ends, trading on each step's quote of the market."""
    symbol = trader.market.symbol
    print(f"stepping the replay for {symbol}: {trader.signal.fast}/{trader.signal.slow} moving averages of the mid",
          flush=True)
    while True:
        step = await trader.api.replay_step(ticks)
        quote = next((q for q in step.quotes if q.symbol == symbol), None)
        if quote is not None:
            await trader.on_mid(quote.mid, quote)
        if step.ended:
            print(f"the replay ended after {step.played} ticks", flush=True)
            return


async def trade(api: ApiClient, args: argparse.Namespace, *, stepping: bool) -> int:
    symbol = args.symbol.upper()
    market = next((m for m in await api.markets() if m.symbol == symbol), None)
    if market is None:
        print(f"no market {symbol}", file=sys.stderr)
        return 2
    trader = Trader(api, market, args)
    await trader.adopt()
    try:
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(args.max_seconds):
                await (follow_steps(trader, args.step) if stepping else follow_feed(trader))
    finally:
        if not args.keep:
            with contextlib.suppress(ApiError):
                await trader.close()
    return 0


async def main(args: argparse.Namespace) -> int:
    if args.sandbox is None:
        async with client() as api:
            return await trade(api, args, stepping=args.replay_step)
    from cfd_cli.sandbox import sandbox

    async with sandbox(args.sandbox, seed=args.seed) as box:
        print(f"sandbox on {box.base_url}: a lockstep replay of {args.sandbox.name}, ids seeded with {args.seed}",
              flush=True)
        code = await trade(box.api, args, stepping=True)
        print("ledger, oldest first:")
        for entry in reversed([e async for e in box.api.all_ledger()]):
            print(f"  {entry.kind:<12} {entry.amount:>10} → {entry.balance_after:>10}  {entry.reference}")
        return code


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("symbol")
    parser.add_argument("--qty", default="1")
    parser.add_argument("--fast", type=int, default=5)
    parser.add_argument("--slow", type=int, default=20)
    parser.add_argument("--stop-pct", default="2")
    parser.add_argument("--max-seconds", type=float, default=None)
    parser.add_argument("--keep", action="store_true", help="leave the last position open")
    parser.add_argument("--replay-step", action="store_true",
                        help="drive the platform's lockstep replay (cfd up --replay FILE --seed N) instead of the feed")
    parser.add_argument("--step", type=int, default=1, help="ticks per step with --replay-step or --sandbox")
    parser.add_argument("--sandbox", type=Path, metavar="FILE",
                        help="run a sandbox on this recording in this process and drive it (implies stepping)")
    parser.add_argument("--seed", type=int, default=0, help="the sandbox's seed (with --sandbox)")
    arguments = parser.parse_args()
    if not 0 < arguments.fast < arguments.slow:
        parser.error("--fast must be above 0 and below --slow")
    if not 1 <= arguments.step <= 10_000:
        parser.error("--step must be 1 to 10000")
    sys.exit(asyncio.run(main(arguments)))
