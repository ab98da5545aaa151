"""A price-alert notifier: sets an alert on the platform and tells you when it fires.

    python examples/price_alert.py SOL_USDC above 200 [--mail] [--max-seconds N]

The platform watches the price (the broker bid) in its risk engine, so the alert fires even while this script
is not running; the script sets it, follows the account channel, prints the alert when it fires and exits 0
(or exits 2 when `--max-seconds` pass first; the alert stays set).
"""

from __future__ import annotations

import argparse
import asyncio
import sys

import msgspec
from connect import client

from cfd_client.models import AlertFrame


async def main(symbol: str, condition: str, price: str, mail: bool, max_seconds: float | None) -> int:
    async with client() as api:
        feed = await api.feed(["account"])
        await feed.start()  # first, so that an alert firing at once is not missed
        try:
            created = await api.request("POST", "/alerts", body={
                "symbol": symbol, "condition": condition, "price": price,
                "notify": ["ws", "mail"] if mail else ["ws"]})
            alert_id = msgspec.json.decode(created.content)["id"]
            print(f"alert {alert_id[:8]} set: {symbol} {condition} {price} (the broker bid)", flush=True)
            async with asyncio.timeout(max_seconds):
                async for event in feed:
                    if isinstance(event, AlertFrame) and event.event == "triggered" and event.alert.id == alert_id:
                        print(f"ALERT {symbol} {condition} {price}: the bid is {event.price}", flush=True)
                        return 0
        except TimeoutError:
            print("not yet; the alert stays set on the platform", flush=True)
            return 2
        finally:
            await feed.stop()
    return 1


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("symbol")
    parser.add_argument("condition", choices=["above", "below"])
    parser.add_argument("price")
    parser.add_argument("--mail", action="store_true", help="also mail me when it fires")
    parser.add_argument("--max-seconds", type=float, default=None)
    args = parser.parse_args()
    sys.exit(asyncio.run(main(args.symbol.upper(), args.condition, args.price, args.mail, args.max_seconds)))
