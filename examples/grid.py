"""A grid of pending orders: buy limits below the price and sell limits above it, each taking its profit one
step further, so a market that swings back and forth fills them again and again.

    python examples/grid.py SOL_USDC --qty 0.5 --levels 3 --step 1.00 [--max-seconds N] [--keep]

It places the grid around the broker mid, prints each fill from the account channel, and, when it stops
(after `--max-seconds`, or Ctrl-C), cancels the orders of its grid still working unless `--keep`.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import sys
from decimal import Decimal

from connect import client

from cfd_client import ApiError
from cfd_client.models import OrderFrame


async def main(args: argparse.Namespace) -> int:
    symbol = args.symbol.upper()
    qty, step = Decimal(args.qty), Decimal(args.step)
    async with client() as api:
        market = next(m for m in await api.markets() if m.symbol == symbol)
        mid = (await api.price(symbol)).mid.quantize(market.price_tick)
        feed = await api.feed(["account"])
        await feed.start()
        placed: list[str] = []
        try:
            for level in range(1, args.levels + 1):
                below, above = mid - step * level, mid + step * level
                buy = await api.place_order(symbol, "long", "limit", qty, below, args.leverage,
                                            take_profit=below + step)
                sell = await api.place_order(symbol, "short", "limit", qty, above, args.leverage,
                                             take_profit=above - step)
                placed += [buy.id, sell.id]
                print(f"level {level}: buy {qty} at {below}, sell {qty} at {above}", flush=True)
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(args.max_seconds):
                    async for event in feed:
                        if isinstance(event, OrderFrame) and event.order.id in placed and event.event != "accepted":
                            o = event.order
                            print(f"{event.event}: {o.side} {o.qty} at {o.price}"
                                  + (f" ({o.reason})" if o.reason else ""), flush=True)
        finally:
            await feed.stop()
            if not args.keep:
                for order_id in placed:
                    with contextlib.suppress(ApiError):  # filled or gone already
                        await api.cancel_order(order_id)
                print("cancelled the grid's working orders", flush=True)
    return 0


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("symbol")
    parser.add_argument("--qty", default="1")
    parser.add_argument("--levels", type=int, default=3)
    parser.add_argument("--step", required=True, help="the price distance between levels")
    parser.add_argument("--leverage", type=int, default=2)
    parser.add_argument("--max-seconds", type=float, default=None)
    parser.add_argument("--keep", action="store_true", help="leave the grid working when it stops")
    arguments = parser.parse_args()
    sys.exit(asyncio.run(main(arguments)))
