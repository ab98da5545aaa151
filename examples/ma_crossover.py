"""A moving-average crossover trader: prices over the feed, trading over REST, always with a stop-loss.

    python examples/ma_crossover.py SOL_USDC --qty 1 [--fast 5] [--slow 20] [--stop-pct 2] [--max-seconds N]

It averages the broker mid of each tick: when the fast average crosses above the slow one it goes long, when
it crosses below it goes short, closing the position it had first. Every position gets a stop-loss
`--stop-pct` percent from its entry, placed with the order itself. It stops after `--max-seconds` (closing its
position unless `--keep`), or on Ctrl-C.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import sys
from collections import deque
from decimal import Decimal

from connect import client

from cfd_client import ApiClient, ApiError
from cfd_client.models import Position, Side
from shared.contracts.ws import PriceFrame


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


async def flip(api: ApiClient, symbol: str, position: Position | None, side: Side, qty: Decimal,
               stop_pct: Decimal, tick: Decimal) -> Position | None:
    """Close `position` (if any) and open `side` with its stop-loss; None if the platform refused."""
    if position is not None:
        closed = await api.close_position(position.id)
        print(f"closed {closed.side} at {closed.close_price}: {closed.realized_pnl}", flush=True)
    price = (await api.price(symbol))
    entry = price.ask if side == "long" else price.bid
    away = entry * stop_pct / 100
    stop = (entry - away if side == "long" else entry + away).quantize(tick)
    try:
        opened = await api.open_position(symbol, side, qty, 1, stop_loss=stop)
    except ApiError as exc:
        print(f"not opened: {exc.message}", flush=True)
        return None
    print(f"opened {opened.side} {opened.qty} at {opened.entry_price}, stop-loss {opened.stop_loss}", flush=True)
    return opened


async def main(args: argparse.Namespace) -> int:
    symbol = args.symbol.upper()
    async with client() as api:
        market = next(m for m in await api.markets() if m.symbol == symbol)
        signal = Crossover(args.fast, args.slow)
        position = next((p for p in await api.positions("open") if p.symbol == symbol), None)
        state = 0 if position is None else 1 if position.side == "long" else -1
        feed = await api.feed([f"prices.{symbol}"])
        await feed.start()
        print(f"watching {symbol}: {args.fast}/{args.slow} moving averages of the mid", flush=True)
        try:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(args.max_seconds):
                    async for event in feed:
                        if not isinstance(event, PriceFrame) or event.symbol != symbol:
                            continue
                        wanted = signal.add(event.mid)
                        if wanted and wanted != state:
                            position = await flip(api, symbol, position, "long" if wanted > 0 else "short",
                                                  Decimal(args.qty), Decimal(args.stop_pct), market.price_tick)
                            state = wanted if position is not None else 0
        finally:
            await feed.stop()
            if position is not None and not args.keep:
                with contextlib.suppress(ApiError):  # a stop-loss may have closed it already
                    closed = await api.close_position(position.id)
                    print(f"closed {closed.side} at {closed.close_price}: {closed.realized_pnl}", flush=True)
    return 0


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("symbol")
    parser.add_argument("--qty", default="1")
    parser.add_argument("--fast", type=int, default=5)
    parser.add_argument("--slow", type=int, default=20)
    parser.add_argument("--stop-pct", default="2")
    parser.add_argument("--max-seconds", type=float, default=None)
    parser.add_argument("--keep", action="store_true", help="leave the last position open")
    arguments = parser.parse_args()
    if not 0 < arguments.fast < arguments.slow:
        parser.error("--fast must be above 0 and below --slow")
    sys.exit(asyncio.run(main(arguments)))
