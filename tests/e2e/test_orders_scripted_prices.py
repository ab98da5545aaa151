"""Pending orders triggered by scripted prices from a local Backpack-protocol exchange, through the real poller:
exchange → poller → bus → dbproc risk engine → REST and the `account` channel.

The contract (docs/api.md, "Orders"): a long limit fills when the broker ask ≤ price, a long stop when the ask ≥
price, a short limit when the bid ≥ price, a short stop when the bid ≤ price; the fill opens a position at that
tick's broker ask (long) or bid (short). Each order is walked to its price: a tick one price tick short of it
leaves it working, the tick exactly at it fills it. The tick short of the trigger has the *other* side of the
quote (and the exchange's own price, before the broker's markup) already past the order's price, so an order
checked on the wrong side of the quote, or on the exchange's price, fills one tick early and fails the test.
"""

from __future__ import annotations

import asyncio
import json
import time
from decimal import ROUND_CEILING, ROUND_FLOOR, Decimal
from typing import Any

import pytest
import websockets
from helpers import signed_in, start_poller_of

from cfd_poller.local_exchange import LocalExchange
from shared.contracts.quote import Quote
from shared.markets import Market, broker_quote

D = Decimal
SYMBOL = "ETH_USDC"  # price tick 0.01, a 5 bps markup, commission 0.05 % a side


def exchange_prices_for(market: Market, broker_bid: Decimal, broker_ask: Decimal) -> tuple[Decimal, Decimal]:
    """The exchange bid and ask whose broker quote (`broker_quote`: the markup applied, rounded to the tick) is
    exactly `broker_bid` / `broker_ask`."""
    half = market.spread_bps / 2 / 10_000
    fine = market.price_tick / 100
    bid = (broker_bid / (1 - half)).quantize(fine, rounding=ROUND_CEILING)
    ask = (broker_ask / (1 + half)).quantize(fine, rounding=ROUND_FLOOR)
    assert bid <= ask, f"a broker spread of {broker_ask - broker_bid} is narrower than the markup"
    made = broker_quote(market, bid, ask, 0)
    assert (made.bid, made.ask) == (broker_bid, broker_ask), (bid, ask, made)
    return bid, ask


class Feed:
    """Scripted broker quotes, sent as exchange bookTicker frames and waited for at the dbproc."""

    def __init__(self, platform: Any, exchange: LocalExchange) -> None:
        self.platform = platform
        self.exchange = exchange

    async def quote(self, symbol: str, bid: str, ask: str) -> Quote:
        """The exchange quotes so that the broker quote is `bid` / `ask`; returns once the dbproc has that tick
        (its prices and its time: two ticks at one price are two ticks)."""
        market = self.platform.dbproc.markets.market_of(symbol)  # the terms in force
        exchange_bid, exchange_ask = exchange_prices_for(market, D(bid), D(ask))
        sent_us = time.time_ns() // 1000
        assert await self.exchange.quote(symbol, exchange_bid, exchange_ask, event_time_us=sent_us) == 1
        expected = broker_quote(market, exchange_bid, exchange_ask, sent_us // 1000)
        async with asyncio.timeout(10):
            while True:
                live = self.platform.dbproc.quotes.fresh().get(symbol)
                if live is not None and (live.bid, live.ask, live.ts) == (expected.bid, expected.ask, expected.ts):
                    return expected
                await asyncio.sleep(0.005)


@pytest.fixture
async def feed(platform):
    """The local exchange, and a poller (backpack source) publishing its quotes onto the platform's bus."""
    async with LocalExchange() as exchange:
        settings = platform.settings.replace(prices={"source": "backpack", "backpack_ws_url": exchange.url})
        poller = await start_poller_of(settings, platform.bus)
        try:
            await exchange.wait_for_subscribers(SYMBOL)
            yield Feed(platform, exchange)
        finally:
            await poller.stop()


class AccountChannel:
    """The trader's `account` channel over the WebSocket feed, every frame kept."""

    def __init__(self, ws: Any) -> None:
        self.ws = ws
        self.frames: list[dict] = []

    @classmethod
    async def open(cls, api, auth: dict[str, str]) -> AccountChannel:
        ws = await websockets.connect((await api.get("/info")).json()["ws_url"])
        channel = cls(ws)
        await ws.send(json.dumps({"op": "auth", "token": auth["Authorization"].removeprefix("Bearer ")}))
        await channel.wait_for(lambda f: f["type"] == "authenticated")
        await ws.send(json.dumps({"op": "subscribe", "channels": ["account"]}))
        await channel.wait_for(lambda f: f["type"] == "subscribed")
        return channel

    async def wait_for(self, predicate, timeout: float = 10.0) -> dict:
        for frame in self.frames:
            if predicate(frame):
                return frame
        async with asyncio.timeout(timeout):
            while True:
                frame = json.loads(await self.ws.recv())
                self.frames.append(frame)
                if predicate(frame):
                    return frame

    def events(self, order_id: str, position_id: str | None = None) -> list[tuple[str, str]]:
        """(type, event) of the frames about the order (and the position it opened), in arrival order."""
        return [(f["type"], f["event"]) for f in self.frames
                if (f["type"] == "order" and f["order"]["id"] == order_id)
                or (f["type"] == "position" and f["position"]["id"] == position_id)]

    async def close(self) -> None:
        await self.ws.close()


async def wait_for_status(api, auth, order_id: str, *statuses: str, timeout: float = 10.0) -> dict:
    async with asyncio.timeout(timeout):
        while True:
            order = (await api.get(f"/orders/{order_id}", headers=auth)).json()
            if order["status"] in statuses:
                return order
            await asyncio.sleep(0.02)


async def assert_still_working(api, auth, order_id: str) -> None:
    """Give the risk engine time to act on the last tick (a fill it sent would land well within it), then the
    order is still working and nothing opened."""
    await asyncio.sleep(0.4)
    assert (await api.get(f"/orders/{order_id}", headers=auth)).json()["status"] == "working"
    assert (await api.get("/positions?status=open", headers=auth)).json() == []


# (side, type, order price, the quote before placing it, the quote one tick short of it, the quote exactly at it),
# broker bid / ask each. The side of the quote the order is not checked on is past the price on the tick short of
# it (a long limit's bid is below 2990, a short limit's ask above 3010): an order checked on it fills early.
CASES = {
    "long limit: ask falls to the price": (
        "long", "limit", "2990.00", ("2995.00", "3000.00"), ("2980.00", "2990.01"), ("2985.00", "2990.00")),
    "long stop: ask rises to the price": (
        "long", "stop", "3010.00", ("2995.00", "3000.00"), ("3005.00", "3009.99"), ("3005.00", "3010.00")),
    "short limit: bid rises to the price": (
        "short", "limit", "3010.00", ("3000.00", "3005.00"), ("3009.99", "3015.00"), ("3010.00", "3013.00")),
    "short stop: bid falls to the price": (
        "short", "stop", "2990.00", ("3000.00", "3005.00"), ("2990.01", "2995.00"), ("2990.00", "2995.00")),
}


@pytest.mark.parametrize("case", CASES.values(), ids=CASES.keys())
async def test_an_order_stays_working_a_tick_short_of_its_price_and_fills_at_the_tick_that_reaches_it(
        platform, api, mailbox, email, feed, case):
    side, order_type, price, before, short_of_it, at_it = case
    auth = await signed_in(api, mailbox, email)
    await feed.quote(SYMBOL, *before)
    channel = await AccountChannel.open(api, auth)
    try:
        placed = await api.post("/orders", headers=auth, json={
            "symbol": SYMBOL, "side": side, "type": order_type, "qty": "0.5", "price": price, "leverage": 10})
        assert placed.status_code == 201, placed.text
        order = placed.json()
        await assert_still_working(api, auth, order["id"])  # the quote it was placed at does not reach it

        await feed.quote(SYMBOL, *short_of_it)
        await assert_still_working(api, auth, order["id"])

        tick = await feed.quote(SYMBOL, *at_it)
        filled = await wait_for_status(api, auth, order["id"], "filled", "rejected", "expired", "cancelled")
        assert filled["status"] == "filled", filled
        position = (await api.get(f"/positions/{filled['position_id']}", headers=auth)).json()
        fill = tick.ask if side == "long" else tick.bid
        assert D(position["entry_price"]) == fill == D(price)
        assert position["order_id"] == order["id"] and filled["position_id"] == position["id"]
        assert (position["status"], position["side"], D(position["qty"]), position["leverage"]) == (
            "open", side, D("0.5"), 10)
        assert D(position["margin"]) == (D("0.5") * fill / 10).quantize(D("0.01"))
        rate = platform.dbproc.markets.market_of(SYMBOL).commission_rate  # the terms in force
        assert D(position["commission"]) == (D("0.5") * fill * rate).quantize(D("0.01"))
        assert [p["id"] for p in (await api.get("/positions?status=open", headers=auth)).json()] == [position["id"]]

        await channel.wait_for(lambda f: f["type"] == "order" and f["event"] == "filled")
        assert channel.events(order["id"], position["id"]) == [
            ("order", "accepted"), ("position", "opened"), ("order", "filled")]
        opened = next(f for f in channel.frames if f["type"] == "position" and f["event"] == "opened")
        assert opened["position"]["order_id"] == order["id"] and D(opened["position"]["entry_price"]) == fill
        filled_frame = next(f for f in channel.frames if f["type"] == "order" and f["event"] == "filled")
        assert filled_frame["order"]["position_id"] == position["id"]

        await feed.quote(SYMBOL, *at_it)  # more ticks at the price: the order filled once
        await feed.quote(SYMBOL, *short_of_it)
        await feed.quote(SYMBOL, *at_it)
        await asyncio.sleep(0.4)
        assert [p["id"] for p in (await api.get("/positions?status=open", headers=auth)).json()] == [position["id"]]
    finally:
        await channel.close()


# (side, type, order price, a quote past the price by a gap): the fill is at the quote after the gap.
GAPS = {
    "long limit": ("long", "limit", "2990.00", ("2960.00", "2962.37")),
    "long stop": ("long", "stop", "3010.00", ("3038.00", "3041.13")),
    "short limit": ("short", "limit", "3010.00", ("3038.59", "3041.00")),
    "short stop": ("short", "stop", "2990.00", ("2957.41", "2960.00")),
}


@pytest.mark.parametrize("case", GAPS.values(), ids=GAPS.keys())
async def test_an_order_the_price_gaps_through_fills_at_the_quote_after_the_gap(
        platform, api, mailbox, email, feed, case):
    side, order_type, price, gap = case
    auth = await signed_in(api, mailbox, email)
    await feed.quote(SYMBOL, "3000.00", "3003.00")
    order = (await api.post("/orders", headers=auth, json={
        "symbol": SYMBOL, "side": side, "type": order_type, "qty": "0.2", "price": price, "leverage": 5})).json()
    assert order["status"] == "working", order
    await assert_still_working(api, auth, order["id"])
    tick = await feed.quote(SYMBOL, *gap)
    filled = await wait_for_status(api, auth, order["id"], "filled", "rejected", "expired", "cancelled")
    assert filled["status"] == "filled", filled
    position = (await api.get(f"/positions/{filled['position_id']}", headers=auth)).json()
    fill = tick.ask if side == "long" else tick.bid
    assert D(position["entry_price"]) == fill != D(price)  # the tick's quote, not the order's price
    assert position["order_id"] == order["id"]


async def test_an_order_expires_at_its_time_and_never_fills_after(platform, api, mailbox, email, feed):
    """Three buy limits at 2990: two expire 2.5 s after they are placed, one is good till cancelled. A tick one
    price tick short of them before the expiry fills none; the tick that reaches them, sent just after the expiry
    time (before the platform's expiry round may have run), fills only the one without an expiry, and so does
    every tick after. The expired ones say so within a second of their time, on REST and the account channel."""
    auth = await signed_in(api, mailbox, email)
    await feed.quote(SYMBOL, "2995.00", "3000.00")
    channel = await AccountChannel.open(api, auth)
    try:
        expires_at = int(time.time() * 1000) + 2500
        body = {"symbol": SYMBOL, "side": "long", "type": "limit", "qty": "0.1", "price": "2990.00", "leverage": 10}
        expiring = []
        for _ in range(2):
            placed = await api.post("/orders", headers=auth, json=body | {"expires_at": expires_at})
            assert placed.status_code == 201, placed.text
            assert placed.json()["expires_at"] == expires_at and placed.json()["status"] == "working"
            expiring.append(placed.json())
        lasting = (await api.post("/orders", headers=auth, json=body)).json()
        await feed.quote(SYMBOL, "2980.00", "2990.01")  # one tick short
        await asyncio.sleep(0.3)
        assert int(time.time() * 1000) < expires_at, "the machine is too slow for this test's 2.5 s"
        for order in [*expiring, lasting]:
            assert (await api.get(f"/orders/{order['id']}", headers=auth)).json()["status"] == "working"

        await asyncio.sleep(max(0.0, expires_at / 1000 - time.time()) + 0.02)
        await feed.quote(SYMBOL, "2985.00", "2990.00")  # reaches all three, just after the expiry time
        filled = await wait_for_status(api, auth, lasting["id"], "filled", "rejected", "expired", "cancelled")
        assert filled["status"] == "filled", filled
        for order in expiring:
            expired = await wait_for_status(api, auth, order["id"], "expired", "filled", "rejected", "cancelled")
            assert expired["status"] == "expired" and expired["position_id"] is None, expired
            assert expires_at <= expired["updated_at"] <= expires_at + 1000, expired
            await channel.wait_for(lambda f, o=order: f["type"] == "order" and f["event"] == "expired"
                                   and f["order"]["id"] == o["id"])

        for bid, ask in (("2980.00", "2985.00"), ("2970.00", "2975.00")):  # further through the price
            await feed.quote(SYMBOL, bid, ask)
        await asyncio.sleep(0.4)
        for order in expiring:
            assert (await api.get(f"/orders/{order['id']}", headers=auth)).json()["status"] == "expired"
            assert channel.events(order["id"]) == [("order", "accepted"), ("order", "expired")]
        positions = (await api.get("/positions", headers=auth)).json()
        assert [(p["order_id"], D(p["entry_price"])) for p in positions] == [(lasting["id"], D("2990.00"))]
        expired_list = (await api.get("/orders?status=expired", headers=auth)).json()
        assert {o["id"] for o in expired_list} == {o["id"] for o in expiring}
    finally:
        await channel.close()
