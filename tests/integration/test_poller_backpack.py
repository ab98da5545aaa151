"""Local exchange → backpack source → poller → in-process bus → a subscriber, and everything that can go wrong
on the way: drops, Close frames, bad frames, error answers, quiet markets."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from decimal import Decimal
from typing import Any

import msgspec
import pytest
from helpers import start_poller_of

from cfd_poller.local_exchange import LocalExchange
from cfd_poller.service import Poller
from cfd_poller.sources.backpack import BackpackSource
from shared.backoff import Backoff
from shared.bus import Message, Subscription, Topics
from shared.bus.memory import MemoryBus
from shared.contracts.bus import PriceTick
from shared.settings import Settings, load_settings

WAIT = 3.0  # seconds any single expected event may take; the tests finish far sooner


class PriceFeed:
    """What a consumer of `price-updates` sees (like the server or the dbproc would)."""

    def __init__(self) -> None:
        self.messages: asyncio.Queue[Message] = asyncio.Queue()

    async def handler(self, message: Message) -> None:
        await self.messages.put(message)

    async def next(self, timeout: float = WAIT) -> tuple[Message, PriceTick]:
        message = await asyncio.wait_for(self.messages.get(), timeout)
        return message, msgspec.json.decode(message.value, type=PriceTick)

    def pending(self) -> int:
        return self.messages.qsize()


def backpack_settings(exchange: LocalExchange, **overrides: Any) -> Settings:
    return load_settings({}, prices={"source": "backpack", "backpack_ws_url": exchange.url, **overrides})


@pytest.fixture
async def exchange() -> AsyncIterator[LocalExchange]:
    async with LocalExchange() as running:
        yield running


@pytest.fixture
async def bus() -> AsyncIterator[MemoryBus]:
    memory = MemoryBus()
    await memory.start()
    yield memory
    await memory.stop()


OpenFeed = Callable[[Settings], Awaitable[PriceFeed]]


@pytest.fixture
async def subscribe(bus: MemoryBus) -> AsyncIterator[OpenFeed]:
    """Subscribes a `PriceFeed` to the settings' price topic; unsubscribes after the test."""
    subscriptions: list[Subscription] = []

    async def open_feed(settings: Settings) -> PriceFeed:
        feed = PriceFeed()
        subscriptions.append(await bus.subscribe([Topics(settings.bus).prices], feed.handler, group=None))
        return feed

    yield open_feed
    for subscription in subscriptions:
        await subscription.stop()


@pytest.fixture
async def running(exchange: LocalExchange, bus: MemoryBus,
                  subscribe: OpenFeed) -> AsyncIterator[tuple[Poller, PriceFeed]]:
    settings = backpack_settings(exchange)
    feed = await subscribe(settings)
    poller = await start_poller_of(settings, bus)
    await exchange.wait_for_subscribers("SOL_USDC")
    yield poller, feed
    await poller.stop()


async def test_a_subscriber_receives_exactly_the_exchanges_bid_and_ask(
        exchange: LocalExchange, running: tuple[Poller, PriceFeed]) -> None:
    poller, feed = running
    assert all(exchange.subscribers(symbol) == 1 for symbol in exchange.symbols)  # every market subscribed

    assert await exchange.quote("SOL_USDC", "185.05", "185.10") == 1
    message, tick = await feed.next()
    assert (tick.symbol, tick.bid, tick.ask) == ("SOL_USDC", Decimal("185.05"), Decimal("185.10"))
    assert message.key == b"SOL_USDC"
    assert b'"185.10"' in message.value  # a decimal string, trailing zero and all, never a float
    assert 0 <= tick.ingest_time_us - tick.exchange_time_us < 5_000_000

    await exchange.quote("DOGE_USDC", "0.31990", "0.32010")
    _, doge = await feed.next()
    assert (doge.symbol, str(doge.bid), str(doge.ask)) == ("DOGE_USDC", "0.31990", "0.32010")
    assert poller.metrics.ticks_published == 2
    assert poller.metrics.invalid_total == 0


@pytest.mark.parametrize("how", ["drop", "close"])
async def test_the_poller_reconnects_resubscribes_and_prices_resume(
        exchange: LocalExchange, running: tuple[Poller, PriceFeed], how: str,
        caplog: pytest.LogCaptureFixture) -> None:
    poller, feed = running
    await exchange.quote("BTC_USDC", "96500.1", "96500.6")
    await feed.next()

    if how == "drop":
        assert exchange.drop_connections() == 1  # no Close frame: like a network failure
    else:
        assert await exchange.close_connections(1001, "restarting") == 1
    await exchange.wait_until(lambda: exchange.subscribe_count == 2, WAIT)
    await exchange.wait_for_subscribers("BTC_USDC")

    await exchange.quote("BTC_USDC", "96510.0", "96510.5")
    _, tick = await feed.next()
    assert (tick.bid, tick.ask) == (Decimal("96510.0"), Decimal("96510.5"))
    assert poller.metrics.reconnects == 1
    assert poller.metrics.feed_gaps == 1
    assert "feed gap of" in caplog.text and "s on backpack" in caplog.text
    assert ("restarting" in caplog.text) == (how == "close")


async def test_the_poller_keeps_retrying_while_the_exchange_is_down(bus: MemoryBus, subscribe: OpenFeed) -> None:
    exchange = LocalExchange()
    await exchange.start()
    url = exchange.url
    await exchange.stop()  # nothing listens on the port now
    source = BackpackSource(url, backoff=Backoff(initial=0.02, cap=0.1))
    settings = load_settings({}, prices={"source": "backpack", "backpack_ws_url": url})
    poller = await start_poller_of(settings, bus, source=source)
    try:
        await eventually(lambda: poller.metrics.connect_failures >= 3)
        restarted = LocalExchange(port=exchange.port)
        async with restarted:
            feed = await subscribe(settings)
            await restarted.wait_for_subscribers("ETH_USDC")
            await restarted.quote("ETH_USDC", "3450.10", "3450.20")
            _, tick = await feed.next()
            assert tick.ask == Decimal("3450.20")
    finally:
        await poller.stop()


async def test_bad_frames_are_skipped_and_counted_and_nothing_crashes(
        exchange: LocalExchange, running: tuple[Poller, PriceFeed]) -> None:
    poller, feed = running
    good = {"e": "bookTicker", "E": 1_732_000_000_000_000, "T": 1_732_000_000_000_000, "s": "SOL_USDC",
            "a": "185.10", "A": "1", "b": "185.05", "B": "1", "u": 1}
    bad: list[tuple[Any, str]] = [
        ("}}} garbage {{{", "malformed"),
        (b"\x00\x01binary garbage", "malformed"),
        ({"stream": "bookTicker.SOL_USDC", "data": {**good, "b": 185.05}}, "wrong_type"),
        ({"stream": "bookTicker.SOL_USDC", "data": {**good, "E": [1]}}, "wrong_type"),
        ({"stream": "bookTicker.SOL_USDC", "data": {**good, "b": "-185.05"}}, "bad_price"),
        ({"stream": "bookTicker.SOL_USDC", "data": {**good, "a": "NaN"}}, "bad_price"),
        ({"stream": "bookTicker.SOL_USDC", "data": {**good, "b": "185.20"}}, "crossed"),
        ({"stream": "bookTicker.XRP_USDC", "data": {**good, "s": "XRP_USDC"}}, "unknown_symbol"),
        ({"stream": "bookTicker.ETH_USDC", "data": good}, "stream_mismatch"),
        ({"stream": "bookTicker.SOL_USDC"}, "malformed"),
    ]
    for frame, _ in bad:
        await exchange.send_raw(frame)
    await exchange.send_raw({"id": None, "error": {"code": 4006, "message": "Invalid stream"}})
    await exchange.send_raw({"id": 99, "result": None})
    await exchange.quote("SOL_USDC", "185.06", "185.11")

    _, tick = await feed.next()
    assert (tick.bid, tick.ask) == (Decimal("185.06"), Decimal("185.11"))  # the first thing published
    assert feed.pending() == 0
    assert poller.metrics.invalid_frames == Counter(reason for _, reason in bad)
    assert poller.metrics.error_frames == 1
    assert poller.metrics.ticks_published == 1
    assert exchange.subscribe_count == 1 and poller.metrics.reconnects == 0  # the connection survived
    assert poller.running


async def test_an_invalid_stream_answer_is_logged_and_other_markets_keep_flowing(
        exchange: LocalExchange, bus: MemoryBus, subscribe: OpenFeed, caplog: pytest.LogCaptureFixture) -> None:
    settings = backpack_settings(exchange)
    feed = await subscribe(settings)
    source = BackpackSource(exchange.url, ["SOL_USDC", "SHIB_USDC"])  # the exchange does not list SHIB
    poller = await start_poller_of(settings, bus, source=source)
    try:
        await exchange.wait_for_subscribers("SOL_USDC")
        await exchange.quote("SOL_USDC", "185.05", "185.10")
        _, tick = await feed.next()
        assert tick.symbol == "SOL_USDC"
        assert poller.metrics.error_frames == 1
        assert "backpack answered with error 4006: Invalid stream" in caplog.text
    finally:
        await poller.stop()


async def test_a_quiet_market_is_reported_stale_and_recovers(
        exchange: LocalExchange, bus: MemoryBus, subscribe: OpenFeed, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level("INFO")
    settings = backpack_settings(exchange, stale_after_seconds=0.5)
    feed = await subscribe(settings)
    poller = await start_poller_of(settings, bus)
    try:
        await exchange.wait_for_subscribers("SOL_USDC")
        await exchange.quote("SOL_USDC", "185.05", "185.10")
        await feed.next()
        assert poller.stale_symbols() == []
        await eventually(lambda: "SOL_USDC" in poller.stale_symbols())
        assert set(poller.stale_symbols()) == set(exchange.symbols)  # the others never ticked at all
        assert "SOL_USDC is stale" in caplog.text

        await exchange.quote("SOL_USDC", "185.06", "185.11")
        await feed.next()
        assert "SOL_USDC" not in poller.stale_symbols()
        assert "SOL_USDC is live again" in caplog.text
    finally:
        await poller.stop()


async def test_random_mode_feeds_every_market_with_valid_quotes(bus: MemoryBus, subscribe: OpenFeed) -> None:
    async with LocalExchange(rate_hz=100, seed=3) as exchange:
        settings = backpack_settings(exchange)
        feed = await subscribe(settings)
        poller = await start_poller_of(settings, bus)
        try:
            seen: set[str] = set()
            while seen != set(exchange.symbols):
                _, tick = await feed.next()
                assert tick.bid < tick.ask
                seen.add(tick.symbol)
            assert poller.metrics.invalid_total == 0
        finally:
            await poller.stop()


async def test_a_stopped_poller_publishes_nothing(exchange: LocalExchange, running: tuple[Poller, PriceFeed]) -> None:
    poller, feed = running
    await poller.stop()
    assert not poller.running
    await exchange.wait_until(lambda: exchange.connection_count == 0, WAIT)
    assert await exchange.quote("SOL_USDC", "185.05", "185.10") == 0
    assert feed.pending() == 0


async def eventually(condition: Callable[[], bool], timeout: float = WAIT) -> None:
    """Poll `condition` every 10 ms; fail the test if it does not hold within `timeout` seconds."""
    for _ in range(int(timeout / 0.01)):
        if condition():
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"not true within {timeout} s")
