"""TUI benchmark: key press → screen latency under 50 ticks/s, start-up to the first price, and a memory soak.

1. **Key latency under load.** The app runs headless (140×45) against `FakeBroker` (no network, so this
   measures the TUI alone) while 50 ticks/s arrive across the five markets and three positions are marked to
   market. Keys that change what is drawn (`i`: chart interval, `↓`/`↑`: market) are pressed one at a time;
   the latency is from the key event to the first frame the app paints after handling it.
2. **Start-up to first price.** The embedded platform (dbproc, server, poller; fresh SQLite in a temporary
   directory) is started, a trader signs up over REST, then the TUI starts with that session: the time
   until the watchlist shows a price. Also reported: the platform's own start-up time.

3. **Soak (`--soak`).** The same headless app against `FakeBroker` for `--minutes` (60 by default) at 50
   ticks/s across the markets, with the feed's live candles rolling into new buckets, a trader's keys (chart
   interval and market) every 2 s, a position opened with close stops every 20 s (so the broker's stop-loss
   and take-profit toasts arrive), one closed by hand every 60 s, and the history screen opened and left
   every 5 minutes. Every 30 s it samples the process's RSS and tracemalloc's traced memory, with the counts
   that would show a leak (toasts, widgets, workers, asyncio tasks, the feed's backlog). Writes the samples,
   the growth per hour (least squares over the samples after the warm-up) and the allocation sites that
   grew most from the middle of the warm-up to the end.

    python benchmarks/tui.py [--seconds 10] [--out benchmarks/results/tui.json]
    python benchmarks/tui.py --soak [--minutes 60] [--out benchmarks/results/tui-soak.json]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
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
sys.path.insert(0, str(ROOT / "tests"))  # FakeBroker is a test helper, not part of the product

from fake_broker import FakeBroker  # noqa: E402

from cfd_client.errors import ClientError  # noqa: E402
from cfd_tui.app import create_app  # noqa: E402
from cfd_tui.screens.dashboard import DashboardScreen  # noqa: E402
from cfd_tui.widgets.candle_chart import CandleChart  # noqa: E402
from shared.candles import INTERVALS as CANDLE_INTERVALS  # noqa: E402
from shared.candles import bucket_start  # noqa: E402
from shared.contracts.rest import Candle  # noqa: E402
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
            bid, ask = fake.exchange[symbol]
            step = MARKETS[symbol].price_tick * rng.randint(-3, 3)
            fake.push_price(symbol, bid + step, ask + step)
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
    from cfd_client.api import ApiClient
    from shared.settings import load_settings

    with tempfile.TemporaryDirectory() as data:
        settings = load_settings(environ={}, data_dir=Path(data), http={"port": 0, "ws_port": _free_port()},
                                 auth={"bcrypt_rounds": 4}, env="dev")
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


# --- soak ---------------------------------------------------------------------------------------------------

SOAK_SAMPLE_S = 30.0
SOAK_KEY_EVERY_S = 2.0
SOAK_OPEN_EVERY_S = 20.0
SOAK_CLOSE_EVERY_S = 60.0
SOAK_HISTORY_EVERY_S = 300.0
SOAK_STOP_TICKS = 20  # stops this many price ticks from the fill: the random walk reaches one in seconds


def _rss_mb() -> float:
    status = Path("/proc/self/status").read_text()
    fields = dict(line.split(":", 1) for line in status.splitlines() if ":" in line)
    return round(int(fields["VmRSS"].split()[0]) / 1024, 2)


def growth_per_hour(samples: list[dict], key: str, after_s: float) -> float | None:
    """Least-squares slope of `key` against time (per hour), over the samples after the warm-up."""
    points = [(s["t_s"], s[key]) for s in samples if s["t_s"] >= after_s]
    if len(points) < 3:
        return None
    return round(statistics.linear_regression([p[0] for p in points], [p[1] for p in points]).slope * 3600, 2)


def _site(frame) -> str:
    """An allocation site as `package/module.py:line`, without the machine's paths."""
    name = Path(frame.filename).as_posix()
    for marker in ("/site-packages/", f"/{ROOT.name}/"):
        if marker in name:
            name = name.split(marker, 1)[1]
            break
    else:
        name = "/".join(Path(name).parts[-2:])
    return f"{name}:{frame.lineno}"


def _top_growth(before, after, limit: int = 12) -> list[dict]:
    import tracemalloc

    mine = [tracemalloc.Filter(False, tracemalloc.__file__)]  # the snapshots' own bookkeeping
    stats = after.filter_traces(mine).compare_to(before.filter_traces(mine), "lineno")
    stats.sort(key=lambda stat: stat.size_diff, reverse=True)
    return [{"site": _site(stat.traceback[0]), "kb": round(stat.size_diff / 1024, 1), "blocks": stat.count_diff}
            for stat in stats[:limit] if stat.size_diff > 0]


class _LiveCandles:
    """The candles in progress of every market and interval, as the server's candle channels would send them."""

    def __init__(self, fake: FakeBroker) -> None:
        self.fake = fake
        self.current: dict[tuple[str, str], Candle] = {}

    def tick(self, symbol: str, mid: Decimal, now_ms: int) -> None:
        for interval in ("1m", "5m", "15m", "1h"):
            start = bucket_start(now_ms, CANDLE_INTERVALS[interval])
            candle = self.current.get((symbol, interval))
            if candle is None or candle.t != start:
                candle = Candle(t=start, o=mid, h=mid, l=mid, c=mid, n=1)
            else:
                candle = Candle(t=start, o=candle.o, h=max(candle.h, mid), l=min(candle.l, mid), c=mid,
                                n=candle.n + 1)
            self.current[(symbol, interval)] = candle
            self.fake.push_candle(symbol, interval, candle)


async def soak(minutes: float, warm_up_s: float, tick_hz: float = 50.0) -> dict:
    """The app for `minutes` under a steady feed and a trader's pace; memory sampled every 30 s."""
    import tracemalloc

    tracemalloc.start()
    fake = FakeBroker(now_ms=int(time.time() * 1000))
    fake.add_user("soak@example.com")
    fake.sign_in_as("soak@example.com")
    for symbol, qty in (("SOL_USDC", "10"), ("BTC_USDC", "0.05"), ("ETH_USDC", "1")):
        await fake.open_position(symbol, "long", Decimal(qty), 5)
    app = create_app("http://soak.invalid", fake, session_store=False)
    rng = random.Random(11)
    symbols = list(MARKETS)
    candles = _LiveCandles(fake)
    counts = {"ticks": 0, "keys": 0, "opened": 0, "closed_by_hand": 0, "history_visits": 0}

    async def ticks() -> None:
        interval = 1 / tick_hz
        next_at = time.perf_counter()
        while True:
            symbol = rng.choice(symbols)
            bid, ask = fake.exchange[symbol]
            step = MARKETS[symbol].price_tick * rng.randint(-3, 3)
            fake.now_ms = int(time.time() * 1000)
            fake.push_price(symbol, bid + step, ask + step)
            candles.tick(symbol, fake.quotes[symbol].mid, fake.now_ms)
            counts["ticks"] += 1
            next_at = max(next_at + interval, time.perf_counter() - 1.0)  # fall behind by a second at most
            await asyncio.sleep(max(0.0, next_at - time.perf_counter()))

    def press(key: str) -> None:
        app._driver.send_message(events.Key(key, None))  # as a terminal would deliver it
        counts["keys"] += 1

    async def trader() -> None:
        started = time.perf_counter()
        keys = 0
        next_open = next_close = next_history = 0.0
        while True:
            await asyncio.sleep(SOAK_KEY_EVERY_S)
            elapsed = time.perf_counter() - started
            if isinstance(app.screen, DashboardScreen):
                press("i" if keys % 2 == 0 else ("down" if (keys // 2) % 8 < 4 else "up"))
                keys += 1
            if elapsed >= next_open:
                next_open += SOAK_OPEN_EVERY_S
                symbol = rng.choice(symbols)
                market, quote = MARKETS[symbol], fake.quotes[symbol]
                distance = market.price_tick * SOAK_STOP_TICKS
                with contextlib.suppress(ClientError):
                    await fake.open_position(symbol, "long", market.min_qty, 2, stop_loss=quote.bid - distance,
                                             take_profit=quote.ask + distance)
                    counts["opened"] += 1
            if elapsed >= next_close:
                next_close += SOAK_CLOSE_EVERY_S
                held = [p for p in await fake.positions("open") if p.stop_loss is None]
                if held:  # close one of the held positions by hand, and hold a fresh one instead
                    position = held[-1]
                    await fake.close_position(position.id)
                    await fake.open_position(position.symbol, position.side, position.qty, position.leverage)
                    counts["closed_by_hand"] += 1
            if elapsed >= next_history and isinstance(app.screen, DashboardScreen):
                next_history += SOAK_HISTORY_EVERY_S
                press("h")
                await asyncio.sleep(3.0)
                press("escape")
                counts["history_visits"] += 1

    samples: list[dict] = []
    baseline = None
    async with app.run_test(size=SIZE) as pilot:
        while not (isinstance(app.screen, DashboardScreen) and len(app.board.tickers) == len(MARKETS)):
            await pilot.pause(0.02)
        tasks = [asyncio.get_running_loop().create_task(ticks()), asyncio.get_running_loop().create_task(trader())]
        started = time.perf_counter()
        last_ticks, last_at, last_versions = 0, started, app.market_version
        try:
            while (elapsed := time.perf_counter() - started) < minutes * 60:
                await asyncio.sleep(min(SOAK_SAMPLE_S, minutes * 60 - elapsed))
                now = time.perf_counter()
                feed = app.feed
                sample = {
                    "t_s": round(now - started, 1),
                    "rss_mb": _rss_mb(),
                    "traced_mb": round(tracemalloc.get_traced_memory()[0] / 2**20, 2),
                    "ticks_per_s": round((counts["ticks"] - last_ticks) / (now - last_at), 1),
                    "redraws_per_s": round((app.market_version - last_versions) / (now - last_at), 1),
                    "toasts": len(app._notifications),
                    "notice_log": len(app.notice_log),
                    "widgets": sum(len(list(screen.walk_children())) for screen in app.screen_stack),
                    "workers": len(app.workers),
                    "tasks": len(asyncio.all_tasks()),
                    "feed_backlog": feed._queue.qsize() if feed is not None else 0,
                    "open_positions": len(app.portfolio.positions),
                }
                last_ticks, last_at, last_versions = counts["ticks"], now, app.market_version
                samples.append(sample)
                print(json.dumps(sample), file=sys.stderr, flush=True)
                if baseline is None and sample["t_s"] >= warm_up_s / 2:
                    # halfway through the warm-up: a snapshot takes memory the process keeps, which must not
                    # count as growth
                    baseline = tracemalloc.take_snapshot()
        finally:
            for task in tasks:
                task.cancel()
        end = tracemalloc.take_snapshot()
    tracemalloc.stop()
    after = [s for s in samples if s["t_s"] >= warm_up_s]
    return {
        "benchmark": "tui-soak",
        "machine": {"python": host.python_version(), "cpus": os.cpu_count(), "system": host.system()},
        "minutes": minutes,
        "warm_up_s": warm_up_s,
        "load": {"ticks_per_s": round(counts["ticks"] / (minutes * 60), 1), **counts},
        "rss_mb_after_warm_up": after[0]["rss_mb"] if after else None,
        "rss_mb_end": samples[-1]["rss_mb"] if samples else None,
        "rss_mb_growth_per_hour": growth_per_hour(samples, "rss_mb", warm_up_s),
        "traced_mb_after_warm_up": after[0]["traced_mb"] if after else None,
        "traced_mb_end": samples[-1]["traced_mb"] if samples else None,
        "traced_mb_growth_per_hour": growth_per_hour(samples, "traced_mb", warm_up_s),
        "grew_most_after_warm_up": _top_growth(baseline, end) if baseline is not None else [],
        "samples": samples,
    }


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
    parser.add_argument("--soak", action="store_true", help="run the memory soak instead")
    parser.add_argument("--minutes", type=float, default=60.0, help="how long the soak runs")
    parser.add_argument("--warm-up", type=float, default=120.0, help="seconds of the soak left out of the growth")
    parser.add_argument("--out", type=Path, default=None,
                        help="results file (benchmarks/results/tui.json, or tui-soak.json with --soak)")
    args = parser.parse_args()
    args.out = args.out or ROOT / "benchmarks" / "results" / ("tui-soak.json" if args.soak else "tui.json")
    import logging

    logging.disable(logging.WARNING)
    result = asyncio.run(soak(args.minutes, args.warm_up) if args.soak else main(args.seconds))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))
