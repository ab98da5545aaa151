"""A chart with history, prices that continue: at start-up the poller hands the dbproc hours of 1m candles (the
simulator's, or Backpack's klines from the local exchange) and the simulator resumes at the last stored price.

Runs on the selected backend set (tests/conftest.py); each test has a fresh database and topics of its own.
"""

from __future__ import annotations

import asyncio
import itertools
import math
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from decimal import Decimal
from typing import Any

import httpx
import msgspec
import pytest
from helpers import REAL, RUN_ID, merged, postgres_database, start_poller_of

from cfd_cli.platform import Platform
from cfd_dbproc.db.tables import Candles
from cfd_poller.local_exchange import LocalExchange
from cfd_poller.service import Poller
from cfd_poller.simulation import SIMULATION
from shared.bus import Message, Topics
from shared.bus.memory import MemoryBus
from shared.candles import MINUTE_MS
from shared.contracts import encode
from shared.contracts.bus import PriceTick
from shared.markets import MARKETS, broker_quote
from shared.settings import Settings, load_settings

WAIT = 60.0 if REAL else 30.0
DAY_OF_MINUTES = 24 * 60


@pytest.fixture
async def fresh_settings(make_settings, tmp_path) -> AsyncIterator[Callable[..., Settings]]:
    """Settings for a platform of the test's own: a fresh database (SQLite file, or a new PostgreSQL
    database) and topics no other test uses; keyword overrides win."""
    overrides: dict[str, Any] = {"data_dir": tmp_path,
                                 "bus": {"topic_prefix": f"t{RUN_ID}.hist{uuid.uuid4().hex[:8]}."},
                                 "prices": {"sim_seed": 5, "poller_resume_timeout": 20.0 if REAL else 5.0}}
    database = None
    if REAL:
        base = make_settings().database.url
        database = f"cfd_test_{RUN_ID}_hist{uuid.uuid4().hex[:6]}"
        overrides["database"] = {"url": await postgres_database(base, database)}
    yield lambda **more: make_settings(**merged(overrides, more))
    if database is not None:
        await postgres_database(base, database, drop=True)


@pytest.fixture
async def running() -> AsyncIterator[Callable[[Settings], Awaitable[Platform]]]:
    """Starts platforms (dbproc, server, poller unless told otherwise); stops them after the test."""
    started: list[Platform] = []

    async def start(settings: Settings, services: tuple[str, ...] = ("dbproc", "server", "poller")) -> Platform:
        platform = Platform(settings, services, migrate_db=True)
        await platform.start()
        started.append(platform)
        return platform

    yield start
    for platform in reversed(started):
        await platform.stop()


async def candles_until(platform: Platform, symbol: str, done: Callable[[list[dict]], bool]) -> list[dict]:
    """`GET /candles/{symbol}?interval=1m&limit=200`, asked until `done` says the answer is complete (the
    dbproc stores the history a batch at a time)."""
    deadline = time.monotonic() + WAIT
    async with httpx.AsyncClient(base_url=platform.base_url + "/api/v1", timeout=15) as api:
        while True:
            response = await api.get(f"/candles/{symbol}", params={"interval": "1m", "limit": 200})
            assert response.status_code == 200, response.text
            if done(response.json()) or time.monotonic() > deadline:
                return response.json()
            await asyncio.sleep(0.1)


async def stored_at_last(condition: Callable[[], Any]) -> None:
    """Wait until `condition()` (maybe a coroutine) holds: the dbproc stores what it is sent a moment later."""
    deadline = time.monotonic() + WAIT
    while True:
        held = condition()
        if asyncio.iscoroutine(held):
            held = await held
        if held:
            return
        assert time.monotonic() < deadline, "the dbproc did not store it in time"
        await asyncio.sleep(0.05)


async def _last_close_is(price: Decimal) -> bool:
    row = await Candles.select(Candles.c).where(Candles.symbol == "SOL_USDC").order_by(
        Candles.t, ascending=False).first().run()
    return row is not None and Decimal(str(row["c"])) == price


def whole(candles: list[dict]) -> bool:
    return len(candles) == 200 and all(b["t"] - a["t"] == MINUTE_MS for a, b in itertools.pairwise(candles))


async def test_a_fresh_platform_charts_200_minutes_that_lead_into_the_live_price(fresh_settings, running, caplog):
    caplog.set_level("INFO", logger="cfd_poller.history")
    platform = await running(fresh_settings())
    poller: Poller = platform.poller
    assert await asyncio.wait_for(poller.wait_history(), WAIT) == len(MARKETS) * DAY_OF_MINUTES

    candles = await candles_until(platform, "SOL_USDC", whole)
    assert len(candles) == 200
    assert all(b["t"] - a["t"] == MINUTE_MS for a, b in itertools.pairwise(candles))  # no holes
    start = poller.history.until
    history = [c for c in candles if c["t"] < start]
    assert len(history) >= 198 and history[-1]["t"] == start - MINUTE_MS  # up to the minute the poller started in
    for c in candles:
        assert 0 < Decimal(c["l"]) <= min(Decimal(c["o"]), Decimal(c["c"])) <= max(
            Decimal(c["o"]), Decimal(c["c"])) <= Decimal(c["h"])
    # the history ends where the live prices begin: at the simulator's first mid, the catalogue price
    assert Decimal(history[-1]["c"]) == SIMULATION["SOL_USDC"].price
    live = candles[len(history)]
    assert abs(Decimal(live["o"]) / SIMULATION["SOL_USDC"].price - 1) < Decimal("0.01")
    assert "history: SOL_USDC misses 1440 minutes" in caplog.text and "history: sent 7200 minutes" in caplog.text


async def test_a_restarted_poller_continues_from_the_last_stored_price_and_sends_only_what_it_missed(
        fresh_settings, running):
    settings = fresh_settings()
    platform = await running(settings)
    first: Poller = platform.poller
    platform.poller = None  # stopped here, not by the platform
    sent = await asyncio.wait_for(first.wait_history(), WAIT)
    await stored_at_last(lambda: platform.dbproc.candles.history_stored == sent)
    await first.stop()

    # the market moved far from the catalogue price (185) before the restart
    now_us = time.time_ns() // 1000
    moved = PriceTick(symbol="SOL_USDC", bid=Decimal("200.00"), ask=Decimal("200.04"), exchange_time_us=now_us,
                      ingest_time_us=now_us)
    topics = Topics(settings.bus)
    await platform.bus.publish(topics.prices, encode(moved), key=b"SOL_USDC")
    last = broker_quote(MARKETS["SOL_USDC"], moved.bid, moved.ask, now_us // 1000).mid
    await stored_at_last(lambda: _last_close_is(last))

    ticks: asyncio.Queue[PriceTick] = asyncio.Queue()

    async def on_tick(message: Message) -> None:
        tick = msgspec.json.decode(message.value, type=PriceTick)
        if tick.symbol == "SOL_USDC":
            await ticks.put(tick)

    subscription = await platform.bus.subscribe([topics.prices], on_tick, group=None)
    second = await start_poller_of(settings, platform.bus)
    try:
        tick = await asyncio.wait_for(ticks.get(), WAIT)
        step = SIMULATION["SOL_USDC"].volatility * math.sqrt(1 / settings.prices.sim_tick_hz)  # one tick's move
        assert abs(float((tick.bid + tick.ask) / 2 / last) - 1) < 6 * step  # within a tick or two, not at 185
        assert await asyncio.wait_for(second.wait_history(), WAIT) <= 2 * len(MARKETS)  # the minutes it missed
    finally:
        await second.stop()
        await subscription.stop()


async def test_the_backpack_source_backfills_from_the_exchanges_klines(fresh_settings, running):
    async with LocalExchange(seed=9) as exchange:
        settings = fresh_settings(prices={"source": "backpack", "backpack_ws_url": exchange.url})
        platform = await running(settings)
        poller: Poller = platform.poller
        sent = await asyncio.wait_for(poller.wait_history(), WAIT)
        await stored_at_last(lambda: platform.dbproc.candles.history_stored == sent)
        start = poller.history.until
        served = exchange.klines("SOL_USDC", start - DAY_OF_MINUTES * MINUTE_MS, start)
        assert len(served) >= DAY_OF_MINUTES - 1 and sent >= len(MARKETS) * len(served)
        assert exchange.kline_requests >= 2 * len(MARKETS)  # a day is two pages of at most 1,000 klines

        await exchange.wait_for_subscribers("SOL_USDC")
        await exchange.quote("SOL_USDC", "185.05", "185.10")  # and the live minute on top

        def complete(candles: list[dict]) -> bool:
            return len(candles) == 200 and candles[-1]["t"] >= start

        candles = await candles_until(platform, "SOL_USDC", complete)
        assert len(candles) == 200
        history = [c for c in candles if c["t"] < start]
        assert history == [msgspec.to_builtins(c) for c in served[-len(history):]]
        assert len(history) >= 198


async def test_without_a_dbproc_the_simulator_starts_at_the_catalogue_price_and_sends_no_history(caplog):
    settings = load_settings({}, env="test", prices={"sim_seed": 3, "poller_resume_timeout": 0.2})
    bus = MemoryBus()
    topics = Topics(settings.bus)
    seen: list[Message] = []
    sol = asyncio.Event()

    async def keep(message: Message) -> None:
        seen.append(message)
        if message.key == b"SOL_USDC" and message.topic == topics.prices:
            sol.set()

    subscription = await bus.subscribe([topics.prices, topics.candle_history], keep, group=None)
    poller = await start_poller_of(settings, bus)
    try:
        assert await asyncio.wait_for(poller.wait_history(), WAIT) == 0
        await asyncio.wait_for(sol.wait(), WAIT)
    finally:
        await poller.stop()
        await subscription.stop()
    first = next(msgspec.json.decode(m.value, type=PriceTick) for m in seen if m.key == b"SOL_USDC")
    step = SIMULATION["SOL_USDC"].volatility * math.sqrt(1 / settings.prices.sim_tick_hz)
    assert abs(float((first.bid + first.ask) / 2 / SIMULATION["SOL_USDC"].price) - 1) < 6 * step
    assert not [m for m in seen if m.topic == topics.candle_history]
    assert "history: no dbproc told what is stored" in caplog.text
