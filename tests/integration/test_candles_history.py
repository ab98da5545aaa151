"""Candles end to end: ticks → dbproc 1m rows (idempotent on redelivery) → history over the bus → REST.

Runs on the selected backend set (tests/conftest.py): the in-process bus and SQLite, or Kafka and PostgreSQL.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator
from decimal import Decimal

import httpx
import pytest
from helpers import REAL, RUN_ID
from litestar import Litestar, Router

from cfd_dbproc.candles import CONSUMER_GROUP, CandleRecorder
from cfd_dbproc.db import Database, migrate, piccolo_conf
from cfd_dbproc.db.tables import ALL_TABLES, Candles
from cfd_server.context import ServerContext
from cfd_server.errors import EXCEPTION_HANDLERS
from cfd_server.market import MARKET_HANDLERS, MarketRuntime, start_market
from shared import candles as maths
from shared import operations as ops
from shared.bus import Bus, Topics, create_bus
from shared.bus.rpc import RequestClient, Responder
from shared.cache.memory import MemoryCache
from shared.contracts import encode
from shared.contracts.bus import CandleGap, CandleHistoryBatch, CoverageQuery, MarketCoverage, PriceTick
from shared.contracts.rest import Candle
from shared.errors import BadRequest
from shared.markets import MARKETS, broker_quote
from shared.settings import Settings

TIMEOUT = 15.0 if REAL else 5.0

# 2026-01-01 00:03:00 UTC: a 5m bucket starts at 00:00, the minutes at :03 and :04 and :05 are used below.
T0 = 1_767_225_780_000


def tick(symbol: str, bid: str, ask: str, ts_ms: int) -> PriceTick:
    return PriceTick(symbol=symbol, bid=Decimal(bid), ask=Decimal(ask), exchange_time_us=ts_ms * 1000,
                     ingest_time_us=ts_ms * 1000)


def mid(t: PriceTick) -> Decimal:
    return broker_quote(MARKETS[t.symbol], t.bid, t.ask, t.exchange_time_us // 1000).mid


# SOL ticks across two minute boundaries (:03 → :04 → :05), the 5m boundary at :05 included
TICKS = [
    tick("SOL_USDC", "185.00", "185.04", T0 + 1_000),
    tick("SOL_USDC", "185.40", "185.44", T0 + 15_000),
    tick("SOL_USDC", "184.60", "184.64", T0 + 40_000),
    tick("SOL_USDC", "185.10", "185.14", T0 + 59_999),
    tick("SOL_USDC", "185.90", "185.94", T0 + 60_000),
    tick("SOL_USDC", "185.70", "185.74", T0 + 90_000),
    tick("SOL_USDC", "186.30", "186.34", T0 + 120_500),
]


def by_hand() -> list[Candle]:
    """The 1m candles of TICKS, computed without the code under test."""
    m = [mid(t) for t in TICKS]
    return [
        Candle(t=T0, o=m[0], h=max(m[0:4]), l=min(m[0:4]), c=m[3], n=4),
        Candle(t=T0 + 60_000, o=m[4], h=max(m[4:6]), l=min(m[4:6]), c=m[5], n=2),
        Candle(t=T0 + 120_000, o=m[6], h=m[6], l=m[6], c=m[6], n=1),
    ]


@pytest.fixture
async def settings(make_settings, tmp_path) -> Settings:
    """The run's backend set (a SQLite file of this test's own when embedded), with topics of its own."""
    return make_settings(data_dir=tmp_path, bus={"topic_prefix": f"t{RUN_ID}.candles{uuid.uuid4().hex[:8]}."})


@pytest.fixture
async def database(settings: Settings) -> AsyncIterator[Database]:
    """The migrated database with no candles; the tables' previous engine is put back afterwards."""
    previous = {table: table._meta._db for table in ALL_TABLES}
    previous_conf = piccolo_conf.DB
    db = Database(settings.database, settings.data_dir)
    await migrate(db)
    await db.start()
    await Candles.delete(force=True).run()
    yield db
    await db.stop()
    for table, engine in previous.items():
        table._meta._db = engine
    piccolo_conf.DB = previous_conf


@pytest.fixture
async def bus(settings: Settings) -> AsyncIterator[Bus]:
    the_bus = create_bus(settings.bus, settings.instance_id)
    await the_bus.start()
    await the_bus.ensure_topics(Topics(settings.bus).all())
    yield the_bus
    await the_bus.stop()


@pytest.fixture
async def recorder(settings: Settings, bus: Bus, database: Database) -> AsyncIterator[CandleRecorder]:
    """The dbproc's candle part, wired as DbProc wires it."""
    topics = Topics(settings.bus)
    recorder = CandleRecorder(database)
    responder = Responder(bus, topics.replies)
    responder.serve(recorder)
    subscriptions = [
        await bus.subscribe([topics.candle_requests], responder, group=settings.bus.topic("cfd-dbproc-candles")),
        await bus.subscribe([topics.prices], recorder.on_tick, group=settings.bus.topic(CONSUMER_GROUP)),
    ]
    yield recorder
    for subscription in subscriptions:
        await subscription.stop()


@pytest.fixture
async def server(settings: Settings, bus: Bus) -> AsyncIterator[tuple[httpx.AsyncClient, MarketRuntime]]:
    topics = Topics(settings.bus)
    rpc = RequestClient(bus, topics.routes(), topics.replies, settings.instance_id, TIMEOUT)
    await rpc.start()
    ctx = ServerContext(settings=settings, bus=bus, cache=MemoryCache(), mailer=None, rpc=rpc,  # type: ignore[arg-type]
                        mail=None, topics=topics)  # type: ignore[arg-type]
    runtime = await start_market(ctx)
    app = Litestar(route_handlers=[Router("/api/v1", route_handlers=MARKET_HANDLERS)],
                   exception_handlers=EXCEPTION_HANDLERS)  # type: ignore[arg-type]
    app.state.ctx = ctx
    app.state.market = runtime
    # in this event loop (Litestar's AsyncTestClient runs the app in a thread of its own)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test.local/api/v1") as client:
        client.app = app  # type: ignore[attr-defined]
        yield client, runtime
    await runtime.stop()
    await rpc.stop()


async def publish_all(bus: Bus, settings: Settings, ticks: list[PriceTick]) -> None:
    for t in ticks:
        await bus.publish(Topics(settings.bus).prices, encode(t), key=t.symbol.encode())


async def wait_for(predicate, timeout: float = TIMEOUT) -> None:
    deadline = time.monotonic() + timeout
    while not await predicate():
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.02)


async def stored() -> list[Candle]:
    rows = await Candles.select().where(Candles.symbol == "SOL_USDC").order_by(Candles.t).run()
    return [Candle(t=r["t"], o=r["o"], h=r["h"], l=r["l"], c=r["c"], n=r["n"]) for r in rows]


async def test_ticks_become_1m_candles_and_a_redelivery_changes_nothing(bus, settings, recorder, server):
    client, _ = server
    await publish_all(bus, settings, TICKS)

    async def all_applied() -> bool:
        return sum(c.n for c in await stored()) == len(TICKS)

    await wait_for(all_applied)
    assert await stored() == by_hand()
    await publish_all(bus, settings, TICKS[2:])  # the same ticks again, as after a crash before the commit
    await wait_for(lambda: _true_after(recorder, len(TICKS) - 2))
    assert await stored() == by_hand()
    assert recorder.applied == len(TICKS)

    response = await client.get("/candles/SOL_USDC", params={"interval": "1m", "limit": 10})
    assert response.status_code == 200, response.text
    expected = [encode_candle(c) for c in by_hand()]
    assert response.json() == expected
    response = await client.get("/candles/sol_usdc", params={"interval": "1m", "limit": 2})
    assert response.json() == expected[-2:]


async def _true_after(recorder: CandleRecorder, skipped: int) -> bool:
    return recorder.skipped >= skipped


def encode_candle(c: Candle) -> dict:
    return {"t": c.t, "o": str(c.o), "h": str(c.h), "l": str(c.l), "c": str(c.c), "n": c.n}


async def test_longer_intervals_roll_up_the_1m_rows(bus, settings, recorder, server):
    client, _ = server
    await publish_all(bus, settings, TICKS)

    async def all_applied() -> bool:
        return sum(c.n for c in await stored()) == len(TICKS)

    await wait_for(all_applied)
    five = maths.aggregate(by_hand(), maths.INTERVALS["5m"])
    assert [c.t for c in five] == [T0 - 180_000, T0 + 120_000]  # 00:00 (minutes :03, :04) and 00:05
    response = await client.get("/candles/SOL_USDC", params={"interval": "5m", "limit": 5})
    assert response.status_code == 200, response.text
    assert response.json() == [encode_candle(c) for c in five]
    hour = await client.get("/candles/SOL_USDC", params={"interval": "1h"})
    assert hour.json() == [encode_candle(c) for c in maths.aggregate(by_hand(), maths.INTERVALS["1h"])]
    assert len(hour.json()) == 1 and hour.json()[0]["n"] == len(TICKS)


async def test_since_pages_forward_from_a_time_as_ccxt_fetch_ohlcv_does(bus, settings, recorder, server):
    client, _ = server
    await publish_all(bus, settings, TICKS)

    async def all_applied() -> bool:
        return sum(c.n for c in await stored()) == len(TICKS)

    await wait_for(all_applied)
    minutes = [encode_candle(c) for c in by_hand()]  # T0, T0 + 1 min, T0 + 2 min

    async def page(**params) -> httpx.Response:
        response = await client.get("/candles/SOL_USDC", params=params)
        assert response.status_code == 200, response.text
        return response

    first = await page(interval="1m", since=T0 + 1, limit=1)  # mid-minute: from the next whole one
    assert first.json() == minutes[1:2]
    next_url = first.headers["link"].removeprefix("<").split(">")[0]
    assert f"since={T0 + 120_000}" in next_url and "limit=1" in next_url
    last = await client.get(next_url.removeprefix("/api/v1"))
    assert last.json() == minutes[2:] and "link" not in last.headers  # the last page says so
    everything = await page(interval="1m", since=T0, limit=10)
    assert everything.json() == minutes and "link" not in everything.headers
    assert (await page(interval="1m", since=T0, until=T0 + 120_000)).json() == minutes[:2]
    assert (await page(interval="1m", until=T0 + 60_000)).json() == minutes[:1]  # the latest before `until`
    assert (await page(interval="1m", since=T0 + 180_000)).json() == []
    five = [encode_candle(c) for c in maths.aggregate(by_hand(), maths.INTERVALS["5m"])]
    rolled = await page(interval="5m", since=0, limit=1)
    assert rolled.json() == five[:1] and f"since={T0 + 120_000}" in rolled.headers["link"]
    assert (await page(interval="5m", since=T0 + 120_000)).json() == five[1:]
    refused = await client.get("/candles/SOL_USDC", params={"since": -1})
    assert refused.status_code == 400


async def test_the_live_candle_is_merged_on_top_of_the_history(bus, settings, recorder, server):
    """The server joined midway: its live candle has the last ticks, the stored one the earlier ones."""
    client, runtime = server
    now = time.time_ns() // 1_000_000
    minute = now - now % 60_000
    early = [tick("SOL_USDC", "185.00", "185.04", minute + 1), tick("SOL_USDC", "183.00", "183.04", minute + 2)]
    await publish_all(bus, settings, early)

    async def stored_twice() -> bool:
        rows = await stored()
        return bool(rows) and rows[-1].n == 2

    await wait_for(stored_twice)
    # a fresh server instance starts now: it sees only the next tick
    await runtime.stop()
    fresh = await start_market(runtime.ctx)
    client.app.state.market = fresh
    try:
        late = tick("SOL_USDC", "186.00", "186.04", minute + 3)
        await publish_all(bus, settings, [late])
        await wait_for(lambda: _has_quote(fresh))
        response = await client.get("/candles/SOL_USDC", params={"limit": 1})
        [candle] = response.json()
        assert candle["t"] == minute
        assert candle["o"] == str(mid(early[0]))  # the open from the history
        assert candle["l"] == str(mid(early[1]))  # the low from the history
        assert candle["c"] == str(mid(late))  # the close from the live candle
        assert Decimal(candle["h"]) == mid(late)
        async def healed() -> bool:  # the server completes the candle it joined midway, in the background
            return fresh.candles.current("SOL_USDC", "1m")[1] is True

        await wait_for(healed)  # later frames are whole
    finally:
        await fresh.stop()


async def _has_quote(runtime: MarketRuntime) -> bool:
    return runtime.quotes.get("SOL_USDC") is not None


async def test_rest_prices_markets_and_bad_input(bus, settings, recorder, server):
    client, runtime = server
    markets = (await client.get("/markets")).json()
    assert [m["symbol"] for m in markets] == list(MARKETS)
    assert markets[0].keys() == {"symbol", "base", "quote", "max_leverage", "min_qty", "qty_step", "price_tick",
                                 "spread_bps", "commission_rate", "financing_long_rate", "financing_short_rate",
                                 "status"}
    assert isinstance(markets[0]["min_qty"], str)

    missing = await client.get("/prices/SOL_USDC")
    assert missing.status_code == 503 and missing.json()["error"]["code"] == "market_unavailable"
    assert missing.headers["Retry-After"]
    now = time.time_ns() // 1_000_000
    t = tick("SOL_USDC", "185.00", "185.04", now)
    await publish_all(bus, settings, [t])
    await wait_for(lambda: _has_quote(runtime))
    quote = broker_quote(MARKETS["SOL_USDC"], t.bid, t.ask, now)
    expected = {"symbol": "SOL_USDC", "bid": str(quote.bid), "ask": str(quote.ask), "mid": str(quote.mid),
                "ts": now, "stale": False}
    assert (await client.get("/prices/SOL_USDC")).json() == expected
    assert (await client.get("/prices")).json() == [expected]

    for path, params, status, code in [
        ("/prices/NOPE_USDC", {}, 404, "unknown_market"),
        ("/candles/NOPE_USDC", {}, 404, "unknown_market"),
        ("/candles/SOL_USDC", {"interval": "2m"}, 400, "invalid_interval"),
        ("/candles/SOL_USDC", {"limit": 0}, 400, "invalid_limit"),
        ("/candles/SOL_USDC", {"limit": 1001}, 400, "invalid_limit"),
        ("/candles/SOL_USDC", {"limit": "many"}, 400, "validation_error"),
    ]:
        response = await client.get(path, params=params)
        assert response.status_code == status, (path, params, response.text)
        assert response.json()["error"]["code"] == code


async def test_a_stale_market_is_flagged_and_not_served_alone(bus, settings, recorder, server):
    client, runtime = server
    await publish_all(bus, settings, [tick("ETH_USDC", "3450.10", "3450.20", time.time_ns() // 1_000_000)])
    await wait_for(lambda: _has_eth(runtime))
    runtime.quotes.stale_after = 0.0
    await asyncio.sleep(0.01)
    listed = (await client.get("/prices")).json()
    assert [p["stale"] for p in listed if p["symbol"] == "ETH_USDC"] == [True]
    response = await client.get("/prices/ETH_USDC")
    assert response.status_code == 503 and response.json()["error"]["code"] == "market_unavailable"


async def _has_eth(runtime: MarketRuntime) -> bool:
    return runtime.quotes.get("ETH_USDC") is not None


# --- history from the poller ------------------------------------------------------------------------------


@pytest.fixture
async def candle_consumer(settings: Settings, bus: Bus, database: Database) -> AsyncIterator[CandleRecorder]:
    """The dbproc's candle consumer as DbProc wires it: ticks, history batches and coverage questions."""
    recorder = CandleRecorder(database, bus, Topics(settings.bus))
    subscription = await bus.subscribe(recorder.consumed_topics, recorder.on_message,
                                       group=settings.bus.topic(CONSUMER_GROUP))
    yield recorder
    await subscription.stop()


def history_candle(t: int, price: str) -> Candle:
    p = Decimal(price)
    return Candle(t=t, o=p, h=p + 1, l=p - 1, c=p, n=60)


async def send_history(bus: Bus, settings: Settings, candles: list[Candle]) -> None:
    batch = CandleHistoryBatch(symbol="SOL_USDC", source="sim", candles=candles)
    await bus.publish(Topics(settings.bus).candle_history, encode(batch), key=b"SOL_USDC")


async def test_history_fills_only_minutes_nothing_built_and_a_redelivery_changes_nothing(
        bus, settings, candle_consumer):
    await publish_all(bus, settings, TICKS[:4])  # live ticks build the minute T0

    async def live_minute() -> bool:
        return sum(c.n for c in await stored()) == 4

    await wait_for(live_minute)
    live = await stored()
    history = [history_candle(T0 - 120_000, "180.000"), history_candle(T0, "150.000"),  # T0: the live ticks'
               history_candle(T0 + 60_000, "181.000")]
    await send_history(bus, settings, history)

    async def three_minutes() -> bool:
        return len(await stored()) == 3

    await wait_for(three_minutes)
    assert await stored() == [history[0], *live, history[2]]
    assert (candle_consumer.history_stored, candle_consumer.history_present) == (2, 1)

    await send_history(bus, settings, history)  # delivered again, as after a crash before the commit
    await wait_for(lambda: _history_seen(candle_consumer, 6))
    assert await stored() == [history[0], *live, history[2]]

    # a live tick of a minute that came as history is folded into it
    later = tick("SOL_USDC", "185.70", "185.74", T0 + 90_000)
    await publish_all(bus, settings, [later])

    async def folded() -> bool:
        return (await stored())[-1].n == 61

    await wait_for(folded)
    assert (await stored())[-1] == Candle(t=T0 + 60_000, o=Decimal("181.000"), h=mid(later), l=Decimal("180.000"),
                                          c=mid(later), n=61)


async def _history_seen(recorder: CandleRecorder, minutes: int) -> bool:
    return recorder.history_stored + recorder.history_present >= minutes


async def test_unsound_history_is_refused(bus, settings, candle_consumer):
    bad = [Candle(t=T0 + 1, o=Decimal(1), h=Decimal(1), l=Decimal(1), c=Decimal(1), n=1),  # not on a minute
           Candle(t=T0, o=Decimal(5), h=Decimal(4), l=Decimal(1), c=Decimal(2), n=1),  # the open above the high
           Candle(t=T0, o=Decimal("NaN"), h=Decimal(4), l=Decimal(1), c=Decimal(2), n=1)]
    await send_history(bus, settings, [*bad, history_candle(T0 + 60_000, "185.000")])
    await wait_for(lambda: _history_seen(candle_consumer, 1))
    assert await stored() == [history_candle(T0 + 60_000, "185.000")]


async def test_coverage_names_the_last_price_and_each_gap_with_the_prices_around_it(bus, settings,
                                                                                   candle_consumer):
    stored_minutes = [history_candle(T0 - 10 * 60_000, "170.000"),  # before the window
                      history_candle(T0, "180.000"), history_candle(T0 + 60_000, "181.000"),
                      history_candle(T0 + 180_000, "183.000")]
    await send_history(bus, settings, stored_minutes)
    await wait_for(lambda: _history_seen(candle_consumer, 4))

    topics = Topics(settings.bus)
    rpc = RequestClient(bus, topics.routes(), topics.replies, settings.instance_id, TIMEOUT)
    await rpc.start()
    try:
        query = CoverageQuery(symbols=["SOL_USDC", "ETH_USDC", "NOPE_USDC"], since=T0 - 120_000,
                              until=T0 + 300_000)
        answer = await rpc.call(ops.CANDLES_COVERAGE, query, key="coverage")
        assert answer.markets == [
            MarketCoverage(symbol="SOL_USDC", last_t=T0 + 180_000, last_close=Decimal("183.000"), gaps=[
                CandleGap(start=T0 - 120_000, end=T0, before=Decimal("170.000"), after=Decimal("180.000")),
                CandleGap(start=T0 + 120_000, end=T0 + 180_000, before=Decimal("181.000"),
                          after=Decimal("183.000")),
                CandleGap(start=T0 + 240_000, end=T0 + 300_000, before=Decimal("183.000")),
            ]),
            MarketCoverage(symbol="ETH_USDC", gaps=[CandleGap(start=T0 - 120_000, end=T0 + 300_000)]),
        ]
        with pytest.raises(BadRequest):
            await rpc.call(ops.CANDLES_COVERAGE, CoverageQuery(symbols=["SOL_USDC"], since=T0 + 1, until=T0 + 60_000),
                           key="coverage")
    finally:
        await rpc.stop()
