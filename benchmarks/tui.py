"""TUI benchmark: key press → screen latency under 50 ticks/s, and start-up to the first price.

1. **Key latency under load.** The app runs headless (140×45) against `FakeBroker` (no network, so this
   measures the TUI alone) while 50 ticks/s arrive across the five markets and three positions are marked to
   market. Keys that change what is drawn (`i`: chart interval, `↓`/`↑`: market) are pressed one at a time;
   the latency is from the key event to the first frame the app paints after handling it.
2. **Start-up to first price.** The embedded platform (dbproc, server, poller; fresh SQLite in a temporary
   directory) is started, a trader signs up over REST, then the TUI starts with that session: the time
   until the watchlist shows a price. Also reported: the platform's own start-up time.

    python benchmarks/tui.py [--seconds 10] [--out benchmarks/results/tui.json]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform as host
import random
import re
import statistics
import sys
import tempfile
import time
from decimal import Decimal
from pathlib import Path

from textual import events

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from cfd_tui.app import create_app  # noqa: E402
from cfd_tui.client.fake import FakeBroker  # noqa: E402
from cfd_tui.screens.dashboard import DashboardScreen  # noqa: E402
from cfd_tui.widgets.candle_chart import CandleChart  # noqa: E402
from shared.markets import MARKETS  # noqa: E402

SIZE = (140, 45)


def _next_key(app, chart, i: int):
    """Alternate the chart interval and the market; returns the key and a test for its visible effect."""
    if i % 2 == 0:
        intervals = ("1m", "5m", "15m", "1h")
        target = intervals[(intervals.index(chart.interval) + 1) % len(intervals)]
        return "i", lambda: chart.interval == target and chart.candles and str(chart.border_title).endswith(target)
    symbols = app.board.symbols
    key = "down" if (i // 2) % 8 < 4 else "up"
    current = symbols.index(chart.symbol)
    target = symbols[min(len(symbols) - 1, current + 1) if key == "down" else max(0, current - 1)]
    return key, lambda: chart.symbol == target and chart.candles


def percentiles(samples: list[float]) -> dict[str, float]:
    ordered = sorted(samples)

    def at(q: float) -> float:
        return round(ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000, 2)

    return {"n": len(ordered), "p50_ms": at(0.5), "p95_ms": at(0.95), "max_ms": round(ordered[-1] * 1000, 2),
            "mean_ms": round(statistics.fmean(ordered) * 1000, 2)}


async def key_latency(seconds: float, tick_hz: float = 50.0) -> dict:
    fake = FakeBroker()
    fake.add_user("bench@example.com")
    fake.sign_in_as("bench@example.com")
    for symbol, qty in (("SOL_USDC", "10"), ("BTC_USDC", "0.05"), ("ETH_USDC", "1")):
        await fake.open_position(symbol, "long", Decimal(qty), 5)
    app = create_app("http://bench.invalid", fake, session_store=False)
    shown = asyncio.Event()
    waiting_for = [lambda: False]
    original = app._display

    def display(screen, renderable) -> None:
        original(screen, renderable)
        if not shown.is_set() and waiting_for[0]():
            shown.set()  # the first frame painted with the key's effect in it

    app._display = display  # type: ignore[method-assign]
    rng = random.Random(7)
    symbols = list(MARKETS)
    sent = 0

    async def ticks() -> None:
        nonlocal sent
        interval = 1 / tick_hz
        next_at = time.perf_counter()
        while True:
            symbol = rng.choice(symbols)
            quote = fake.quotes[symbol]
            step = MARKETS[symbol].price_tick * rng.randint(-3, 3)
            fake.push_price(symbol, quote.bid + step, quote.ask + step)
            sent += 1
            next_at += interval
            await asyncio.sleep(max(0.0, next_at - time.perf_counter()))

    latencies: list[float] = []
    async with app.run_test(size=SIZE) as pilot:
        while not (isinstance(app.screen, DashboardScreen) and len(app.board.tickers) == len(MARKETS)):
            await pilot.pause(0.02)
        chart = app.screen.query_one(CandleChart)
        ticker = asyncio.get_running_loop().create_task(ticks())
        await asyncio.sleep(1.0)  # warm up under load
        start_sent, start_versions, started = sent, app.market_version, time.perf_counter()
        while time.perf_counter() - started < seconds:
            key, effect = _next_key(app, chart, len(latencies))
            waiting_for[0] = effect
            shown.clear()
            t0 = time.perf_counter()
            app._driver.send_message(events.Key(key, None))  # as a terminal would deliver it
            await asyncio.wait_for(shown.wait(), 5.0)
            latencies.append(time.perf_counter() - t0)
            await asyncio.sleep(rng.uniform(0.1, 0.3))  # a trader's pace, not a key-repeat storm
        elapsed = time.perf_counter() - started
        ticker.cancel()
    return {
        "ticks_per_s": round((sent - start_sent) / elapsed, 1),
        "redraw_batches_per_s": round((app.market_version - start_versions) / elapsed, 1),
        "keys": percentiles(latencies),
        "seconds": round(elapsed, 1),
    }


async def startup_to_first_price() -> dict:
    import httpx

    from cfd_cli.platform import Platform
    from cfd_tui.client.api import ApiClient
    from shared.settings import load_settings

    with tempfile.TemporaryDirectory() as data:
        settings = load_settings(environ={}, data_dir=Path(data), http_port=0, ws_port=_free_port(),
                                 bcrypt_rounds=4, env="dev")
        t0 = time.perf_counter()
        platform = Platform(settings, ("dbproc", "server", "poller"), migrate_db=True)
        await platform.start()
        ready = time.perf_counter() - t0
        try:
            async with httpx.AsyncClient(base_url=platform.base_url + "/api/v1") as http:
                if (await http.get("/prices")).status_code == 404:
                    return {"platform_ready_s": round(ready, 3), "tui_start_to_first_price_s": None,
                            "note": "this server build does not serve /prices and /ws yet"}
                email = "bench@example.com"
                await http.post("/auth/signup", json={"email": email})
                code = await _code(Path(data) / "outbox", email)
                body = (await http.post("/auth/verify", json={"email": email, "otp": code, "name": "Bench",
                                                              "password": "correct horse battery"})).json()
            app = create_app(platform.base_url, ApiClient(platform.base_url, token=body["access_token"]),
                             session_store=False)
            t1 = time.perf_counter()
            async with app.run_test(size=SIZE) as pilot:
                while not (isinstance(app.screen, DashboardScreen) and app.board.tickers):
                    await pilot.pause(0.005)
                first_price = time.perf_counter() - t1
            return {"platform_ready_s": round(ready, 3), "tui_start_to_first_price_s": round(first_price, 3),
                    "platform_start_to_first_price_s": round(ready + first_price, 3)}
        finally:
            await platform.stop()


def _find_code(outbox: Path, email: str) -> str | None:
    for mail in outbox.glob("*.eml") if outbox.exists() else []:
        text = mail.read_text(errors="replace")
        if email in text and (found := re.search(r"\b(\d{6})\b", text)):
            return found.group(1)
    return None


async def _code(outbox: Path, email: str) -> str:
    for _ in range(200):
        if code := _find_code(outbox, email):
            return code
        await asyncio.sleep(0.05)
    raise RuntimeError("no sign-up code arrived")


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def main(seconds: float) -> dict:
    return {
        "benchmark": "tui",
        "machine": {"python": host.python_version(), "cpus": os.cpu_count(), "system": host.system()},
        "key_latency_under_50_ticks_per_s": await key_latency(seconds),
        "startup": await startup_to_first_price(),
    }


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=10.0, help="how long to press keys under load")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "tui.json")
    args = parser.parse_args()
    import logging

    logging.disable(logging.WARNING)
    result = asyncio.run(main(args.seconds))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))
