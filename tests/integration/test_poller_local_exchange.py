"""The local exchange answers like Backpack: subscriptions, errors, quotes only to subscribers."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import msgspec
import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, ConnectionClosedOK

from cfd_poller.local_exchange import LocalExchange

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
