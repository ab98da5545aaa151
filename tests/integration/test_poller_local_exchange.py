"""The local exchange answers like Backpack: subscriptions, errors, quotes only to subscribers, and REST klines."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

import httpx
import msgspec
import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, ConnectionClosedOK

from cfd_poller.klines import KlineClient, KlineError, parse_time
from cfd_poller.local_exchange import LocalExchange
from shared.markets import MARKETS

WAIT = 2.0


@pytest.fixture
async def exchange() -> AsyncIterator[LocalExchange]:
    async with LocalExchange() as running:
        yield running


async def receive(ws: ClientConnection) -> Any:
    return msgspec.json.decode(await asyncio.wait_for(ws.recv(), WAIT))


async def request(ws: ClientConnection, **body: Any) -> None:
    await ws.send(msgspec.json.encode(body).decode())


async def test_it_listens_on_a_free_port_on_localhost(exchange: LocalExchange) -> None:
    assert exchange.port != 0
    assert exchange.url == f"ws://127.0.0.1:{exchange.port}/"


async def test_subscribers_get_quotes_for_their_streams_only(exchange: LocalExchange) -> None:
    async with connect(exchange.url) as ws:
        await request(ws, method="SUBSCRIBE", params=["bookTicker.SOL_USDC"], id=1)
        assert await receive(ws) == {"id": 1, "result": None}
        assert await exchange.quote("BTC_USDC", "96500.0", "96500.5") == 0
        assert await exchange.quote("SOL_USDC", "185.05", "185.10", bid_qty="8.1", ask_qty="12.3") == 1

        frame = await receive(ws)
        assert frame["stream"] == "bookTicker.SOL_USDC"
        data = frame["data"]
        assert {k: data[k] for k in ("e", "s", "b", "a", "B", "A", "u")} == {
            "e": "bookTicker", "s": "SOL_USDC", "b": "185.05", "a": "185.10", "B": "8.1", "A": "12.3", "u": 1}
        assert isinstance(data["E"], int) and isinstance(data["T"], int)


async def test_unsubscribe_stops_the_stream(exchange: LocalExchange) -> None:
    async with connect(exchange.url) as ws:
        await request(ws, method="SUBSCRIBE", params=["bookTicker.SOL_USDC", "bookTicker.ETH_USDC"])
        await exchange.wait_for_subscribers("ETH_USDC")
        await request(ws, method="UNSUBSCRIBE", params=["bookTicker.SOL_USDC"])
        await exchange.wait_until(lambda: exchange.subscribers("SOL_USDC") == 0, WAIT)
        assert await exchange.quote("SOL_USDC", "185.05", "185.10") == 0
        assert await exchange.quote("ETH_USDC", "3450.10", "3450.20") == 1
        assert (await receive(ws))["stream"] == "bookTicker.ETH_USDC"
    assert exchange.subscribe_count == 1


async def test_unknown_streams_and_bad_requests_get_error_answers(exchange: LocalExchange) -> None:
    async with connect(exchange.url) as ws:
        await request(ws, method="SUBSCRIBE", params=["bookTicker.NOPE_USDC", "bookTicker.SOL_USDC"], id=5)
        assert await receive(ws) == {"id": 5, "error": {"code": 4006, "message": "Invalid stream"}}
        await request(ws, method="SUBSCRIBE", params=["depth.SOL_USDC"])
        assert await receive(ws) == {"id": None, "error": {"code": 4006, "message": "Invalid stream"}}
        await ws.send("{not json")
        assert (await receive(ws))["error"]["code"] == 4000
        await request(ws, method="LIST", id=6)
        assert await receive(ws) == {"id": 6, "error": {"code": 4000, "message": "Invalid method"}}
        assert exchange.subscribers("SOL_USDC") == 1  # the valid stream of the first request still counts
    assert exchange.subscribe_count == 2


async def test_drop_cuts_connections_without_a_close_frame(exchange: LocalExchange) -> None:
    async with connect(exchange.url) as ws:
        await exchange.wait_until(lambda: exchange.connection_count == 1, WAIT)
        assert exchange.drop_connections() == 1
        with pytest.raises(ConnectionClosed) as closed:
            await asyncio.wait_for(ws.recv(), WAIT)
        assert closed.value.rcvd is None


async def test_close_sends_a_close_frame(exchange: LocalExchange) -> None:
    async with connect(exchange.url) as ws:
        await exchange.wait_until(lambda: exchange.connection_count == 1, WAIT)
        assert await exchange.close_connections(1001, "maintenance") == 1
        with pytest.raises(ConnectionClosedOK) as closed:
            await asyncio.wait_for(ws.recv(), WAIT)
        assert closed.value.rcvd is not None
        assert (closed.value.rcvd.code, closed.value.rcvd.reason) == (1001, "maintenance")


async def test_raw_frames_go_out_untouched(exchange: LocalExchange) -> None:
    async with connect(exchange.url) as ws:
        await exchange.wait_until(lambda: exchange.connection_count == 1, WAIT)
        assert await exchange.send_raw("}}garbage") == 1
        assert await exchange.send_raw(b"\x00\xff") == 1
        assert await asyncio.wait_for(ws.recv(), WAIT) == "}}garbage"
        assert await asyncio.wait_for(ws.recv(), WAIT) == b"\x00\xff"


# --- REST klines on the same port ------------------------------------------------------------------------


async def test_klines_are_served_like_backpack_serves_them(exchange: LocalExchange) -> None:
    await exchange.quote("SOL_USDC", "185.00", "185.10")
    await exchange.quote("SOL_USDC", "186.00", "186.10")
    now_s = time.time_ns() // 1_000_000_000
    async with httpx.AsyncClient(base_url=exchange.rest_url, timeout=WAIT) as client:
        answer = await client.get("/api/v1/klines", params={"symbol": "SOL_USDC", "interval": "1m",
                                                            "startTime": now_s - 3 * 3600, "endTime": now_s + 60})
        assert answer.status_code == 200 and answer.headers["content-type"] == "application/json"
        klines = answer.json()
        assert 180 <= len(klines) <= 182  # three hours of history, then the minute it quoted in
        assert set(klines[0]) == {"start", "end", "open", "high", "low", "close", "volume", "quoteVolume",
                                  "trades"}
        assert [parse_time(k["start"]) for k in klines] == sorted(parse_time(k["start"]) for k in klines)
        assert {k: klines[-1][k] for k in ("open", "high", "low", "close", "trades")} == {
            "open": "185.050", "high": "186.050", "low": "185.050", "close": "186.050", "trades": "2"}

        hourly = (await client.get("/api/v1/klines", params={"symbol": "SOL_USDC", "interval": "1h",
                                                             "startTime": now_s - 6 * 3600})).json()
        assert 6 <= len(hourly) <= 7 and all(parse_time(k["start"]) % 3_600_000 == 0 for k in hourly)

        for params, code in [({"symbol": "PEPE_USDC", "interval": "1m", "startTime": now_s}, "INVALID_MARKET"),
                             ({"symbol": "SOL_USDC", "interval": "2m", "startTime": now_s}, "INVALID_CLIENT_REQUEST"),
                             ({"symbol": "SOL_USDC", "interval": "1m"}, "INVALID_CLIENT_REQUEST")]:
            refused = await client.get("/api/v1/klines", params=params)
            assert refused.status_code == 400 and refused.json()["code"] == code
    async with connect(exchange.url) as ws:  # and the port still speaks WebSocket
        await request(ws, method="SUBSCRIBE", params=["bookTicker.SOL_USDC"], id=1)
        assert await receive(ws) == {"id": 1, "result": None}


async def test_the_history_is_the_same_for_the_same_seed() -> None:
    async with LocalExchange(seed=4) as one, LocalExchange(seed=4) as two, LocalExchange(seed=5) as other:
        start = one.started_minute - 120 * 60_000
        if not one.started_minute == two.started_minute == other.started_minute:
            pytest.skip("a minute began between the three starts")
        assert one.klines("BTC_USDC", start, one.started_minute) == two.klines("BTC_USDC", start, two.started_minute)
        assert one.klines("BTC_USDC", start, one.started_minute) != other.klines("BTC_USDC", start,
                                                                                  other.started_minute)


async def test_the_kline_client_pages_through_answers_shorter_than_it_asked_for() -> None:
    async with LocalExchange(seed=2, max_klines=100) as exchange:  # an exchange with a smaller limit than ours
        end = exchange.started_minute
        start = end - 1500 * 60_000
        pages: list[int] = []
        candles = await KlineClient(exchange.rest_url).minutes(MARKETS["ETH_USDC"], start, end, pages.append)
        assert candles == exchange.klines("ETH_USDC", start, end)
        assert len(candles) == 1500 and exchange.kline_requests == 15
        assert pages[-1] == 1500


async def test_the_kline_client_says_why_it_got_nothing() -> None:
    async with LocalExchange() as exchange:
        url = exchange.rest_url
    client = KlineClient(url, attempts=2, retry_delay=0.01)
    with pytest.raises(KlineError, match=f"cannot reach {url}"):
        await client.minutes(MARKETS["SOL_USDC"], 0, 60_000)
    async with LocalExchange(symbols=["SOL_USDC"]) as exchange:
        with pytest.raises(KlineError, match="answered 400"):
            await KlineClient(exchange.rest_url).minutes(MARKETS["BTC_USDC"], 0, 60_000)


async def test_a_long_running_exchange_keeps_only_its_history_window_of_minutes() -> None:
    exchange = LocalExchange(symbols=["BTC_USDC"], history_hours=1, seed=1)
    start_us = time.time_ns() // 1000
    for minute in range(3 * 24 * 60):  # three days of quotes, one a minute (no subscriber: nothing is sent)
        await exchange.quote("BTC_USDC", "100", "101", event_time_us=start_us + minute * 60_000_000)
    last_ms = (start_us + (3 * 24 * 60 - 1) * 60_000_000) // 1000
    kept = exchange.klines("BTC_USDC", 0, last_ms + 60_000, limit=10_000)
    quoted = [c for c in kept if c.t >= exchange.started_minute]
    assert 60 <= len(quoted) <= 61
