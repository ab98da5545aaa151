"""Stops, margin call and stop-out driven by scripted prices from a local Backpack-protocol exchange,
through the real poller: exchange → poller → bus → dbproc risk engine → account channel."""

from __future__ import annotations

import asyncio
import contextlib
import json
from decimal import Decimal

import pytest
import websockets
from helpers import signed_in, start_poller_of

from cfd_dbproc.service import DbProc
from cfd_poller.local_exchange import LocalExchange
from shared.markets import MARKETS, broker_quote

D = Decimal


@pytest.fixture
async def exchange_feed(platform):
    """The local exchange, and a poller (backpack source) publishing its quotes onto the platform's bus."""
    async with LocalExchange() as exchange:
        settings = platform.settings.replace(prices={"source": "backpack", "backpack_ws_url": exchange.url})
        poller = await start_poller_of(settings, platform.bus)
        try:
            await exchange.wait_for_subscribers("ETH_USDC")

            async def quote(symbol: str, bid: str, ask: str) -> int:
                """The exchange quotes; returns its update id once the dbproc trades on the resulting broker
                quote."""
                await exchange.quote(symbol, bid, ask)
                expected = broker_quote(MARKETS[symbol], D(bid), D(ask), 0)
                async with asyncio.timeout(10):
                    while True:
                        live = platform.dbproc.quotes.fresh().get(symbol)
                        if live is not None and (live.bid, live.ask) == (expected.bid, expected.ask):
                            return exchange.last_update_id(symbol)
                        await asyncio.sleep(0.005)

            yield quote
        finally:
            await poller.stop()


async def next_frame(ws, predicate, timeout: float = 10.0) -> dict:
    async with asyncio.timeout(timeout):
        while True:
            frame = json.loads(await ws.recv())
            if predicate(frame):
                return frame


async def account_socket(api, token: str):
    ws = await websockets.connect((await api.get("/info")).json()["ws_url"])
    await ws.send(json.dumps({"op": "auth", "token": token}))
    await next_frame(ws, lambda f: f["type"] == "authenticated")
    await ws.send(json.dumps({"op": "subscribe", "channels": ["account"]}))
    await next_frame(ws, lambda f: f["type"] == "subscribed")
    return ws


async def test_stop_loss_and_take_profit_fill_at_the_exchange_tick(platform, api, mailbox, email, exchange_feed):
    auth = await signed_in(api, mailbox, email)
    await exchange_feed("ETH_USDC", "3000.00", "3000.20")  # broker 2999.25 / 3000.96 (5 bps)
    long = (await api.post("/positions", headers=auth, json={"symbol": "ETH_USDC", "side": "long", "qty": "1",
                                                             "leverage": 10, "take_profit": "3050"})).json()
    short = (await api.post("/positions", headers=auth, json={"symbol": "ETH_USDC", "side": "short", "qty": "1",
                                                              "leverage": 10, "stop_loss": "3050"})).json()
    assert D(long["entry_price"]) == D("3000.96") and D(short["entry_price"]) == D("2999.25")
    ws = await account_socket(api, auth["Authorization"].removeprefix("Bearer "))
    try:
        await exchange_feed("ETH_USDC", "3060.00", "3060.20")  # bid 3059.23 ≥ TP; ask 3060.97 ≥ short's SL
        closes = {}
        while len(closes) < 2:
            frame = await next_frame(ws, lambda f: f["type"] == "position" and f["event"] == "closed")
            closes[frame["position"]["id"]] = frame["position"]
    finally:
        await ws.close()
    assert closes[long["id"]]["close_reason"] == "take_profit" and D(closes[long["id"]]["close_price"]) == D("3059.23")
    assert closes[short["id"]]["close_reason"] == "stop_loss" and D(closes[short["id"]]["close_price"]) == D("3060.97")
    assert D(closes[long["id"]]["realized_pnl"]) == D("58.27") and D(closes[short["id"]]["realized_pnl"]) == D("-61.72")


def _priced_from(receipt: dict, market: dict) -> bool:
    """Whether a fill receipt adds up, as docs/api.md says anyone can check it: a buy at the exchange ask plus half
    the spread rounded up to the price tick, a sell at the exchange bid less half the spread rounded down."""
    half = D(receipt["spread_bps"]) / 20000
    tick = D(market["price_tick"])
    if receipt["side"] == "buy":
        price = (D(receipt["exchange_ask"]) * (1 + half)).quantize(tick, rounding="ROUND_CEILING")
        markup = D(receipt["price"]) - D(receipt["exchange_ask"])
    else:
        price = (D(receipt["exchange_bid"]) * (1 - half)).quantize(tick, rounding="ROUND_FLOOR")
        markup = D(receipt["exchange_bid"]) - D(receipt["price"])
    return price == D(receipt["price"]) and markup == D(receipt["markup"]) and D(receipt["spread_bps"]) == D(
        market["spread_bps"])


async def test_every_fill_carries_the_exchange_quote_it_was_priced_from(platform, api, mailbox, email, exchange_feed):
    auth = await signed_in(api, mailbox, email)
    market = next(m for m in (await api.get("/markets")).json() if m["symbol"] == "ETH_USDC")
    opened_at = await exchange_feed("ETH_USDC", "3000.00", "3000.20")
    ws = await account_socket(api, auth["Authorization"].removeprefix("Bearer "))
    try:
        long = (await api.post("/positions", headers=auth, json={"symbol": "ETH_USDC", "side": "long", "qty": "1",
                                                                 "leverage": 10, "stop_loss": "2950"})).json()
        short = (await api.post("/positions", headers=auth, json={"symbol": "ETH_USDC", "side": "short",
                                                                  "qty": "1", "leverage": 10})).json()
        fed = await next_frame(ws, lambda f: f["type"] == "position" and f["position"]["id"] == long["id"])
        assert fed["position"]["open_receipt"] == long["open_receipt"]
        assert long["open_receipt"] == {
            "side": "buy", "price": long["entry_price"], "exchange_bid": "3000.00", "exchange_ask": "3000.20",
            "exchange_time_us": long["open_receipt"]["exchange_time_us"], "update_id": opened_at,
            "spread_bps": market["spread_bps"], "markup": "0.76"}
        assert short["open_receipt"]["side"] == "sell" and short["open_receipt"]["update_id"] == opened_at

        closed_at = await exchange_feed("ETH_USDC", "3010.00", "3010.30")
        manual = (await api.post(f"/positions/{short['id']}/close", headers=auth, json={})).json()
        stopped_at = await exchange_feed("ETH_USDC", "2940.00", "2940.40")  # the long's stop-loss at 2950
        stop = (await next_frame(ws, lambda f: f["type"] == "position" and f["event"] == "closed"
                                 and f["position"]["id"] == long["id"]))["position"]
    finally:
        await ws.close()
    assert manual["close_receipt"]["side"] == "buy" and manual["close_receipt"]["update_id"] == closed_at
    assert (manual["close_receipt"]["exchange_ask"], manual["close_price"]) == ("3010.30",
                                                                               manual["close_receipt"]["price"])
    assert stop["close_reason"] == "stop_loss" and stop["close_receipt"]["update_id"] == stopped_at
    assert (stop["close_receipt"]["side"], stop["close_receipt"]["exchange_bid"]) == ("sell", "2940.00")
    history = {p["id"]: p for p in (await api.get("/positions?status=closed", headers=auth)).json()}
    receipts = [history[long["id"]]["open_receipt"], history[long["id"]]["close_receipt"],
                history[short["id"]]["open_receipt"], history[short["id"]]["close_receipt"]]
    assert receipts == [long["open_receipt"], stop["close_receipt"], short["open_receipt"], manual["close_receipt"]]
    assert all(_priced_from(r, market) for r in receipts)
    assert D(stop["close_price"]) == D(stop["close_receipt"]["price"])


async def test_margin_call_then_stop_out_from_exchange_prices(platform, api, mailbox, email, exchange_feed):
    auth = await signed_in(api, mailbox, email)
    await exchange_feed("SOL_USDC", "100.00", "100.00")  # broker 99.97 / 100.03
    # 900 SOL at 100.03 with 10x: margin 9002.70, commission 90.03 (a balance of 9909.97); equity falls below
    # the margin (100 %) once the bid < ~99.07
    position = (await api.post("/positions", headers=auth, json={"symbol": "SOL_USDC", "side": "long",
                                                                 "qty": "900", "leverage": 10})).json()
    ws = await account_socket(api, auth["Authorization"].removeprefix("Bearer "))
    try:
        # The marks say where: 50 % of 9002.70 is 4501.35, reached once the bid has fallen (9909.97 − 4501.35) / 900
        # = 6.0096 below 100.03, so at 94.02 (the first tick at or below 94.0204); 100 % at 99.02 likewise.
        mark = await next_frame(ws, lambda f: f["type"] == "account" and f["event"] == "mark" and f["marks"])
        assert (mark["marks"][0]["stop_out_price"], mark["marks"][0]["margin_call_price"]) == ("94.02", "99.02")
        await exchange_feed("SOL_USDC", "99.10", "99.10")  # bid 99.07: equity 9909.97 − 864 = 9046 → level ≈ 100.5 %
        await exchange_feed("SOL_USDC", "98.80", "98.80")  # bid 98.77: equity 8776 → level ≈ 97.5 %: margin call
        call = await next_frame(ws, lambda f: f["type"] == "account" and f["event"] == "margin_call")
        assert D("50") <= D(call["margin_level"]) < D("100")
        assert (await api.get(f"/positions/{position['id']}", headers=auth)).json()["status"] == "open"

        await exchange_feed("SOL_USDC", "94.10", "94.10")  # bid 94.07, above the stop-out price: still open
        await exchange_feed("SOL_USDC", "94.00", "94.00")  # bid 93.97, past it: stop-out
        closed = await next_frame(ws, lambda f: f["type"] == "position" and f["event"] == "closed")
    finally:
        await ws.close()
    assert closed["position"]["id"] == position["id"] and closed["position"]["close_reason"] == "stop_out"
    assert D(closed["position"]["close_price"]) == D("93.97")
    assert D(closed["position"]["realized_pnl"]) == (D("93.97") - D("100.03")) * 900
    assert D(closed["position"]["commission"]) == D("90.03") + D("84.57")  # 0.1 % of the opening and the stop-out
    account = (await api.get("/account", headers=auth)).json()
    assert D(account["balance"]) == D("10000") + (D("93.97") - D("100.03")) * 900 - D("174.60")


async def _margin_events(ws, seconds: float) -> list[str]:
    """The margin-call events that arrive on `ws` within `seconds`."""
    seen: list[str] = []
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(seconds):
            while True:
                frame = json.loads(await ws.recv())
                if frame["type"] == "account" and frame["event"].startswith("margin_call"):
                    seen.append(frame["event"])
    return seen


async def test_two_dbprocs_give_one_margin_call(platform, api, mailbox, email, exchange_feed):
    """Two dbprocs share the accounts by partition: only the one that owns the user's partition checks the
    account, so one margin call is published, and the trader hears it once."""
    second = DbProc(platform.settings, platform.bus, platform.db, platform.cache)
    await second.start()
    published: list[str] = []
    user_id = ""

    async def on_event(message) -> None:
        event = json.loads(message.value)
        if event.get("user_id") == user_id and event["event"].startswith("margin_call"):
            published.append(event["event"])

    watching = await platform.bus.subscribe([platform.dbproc.topics.events], on_event, group=None)
    try:
        first = platform.dbproc.risk
        every = set(range(platform.settings.bus.partitions))
        async with asyncio.timeout(30):  # the group settles: each owns some partitions, none owned twice
            while not (first.owned and second.risk.owned and not first.owned & second.risk.owned  # noqa: ASYNC110
                       and first.owned | second.risk.owned == every):  # polling what the group assigned
                await asyncio.sleep(0.05)
        auth = await signed_in(api, mailbox, email)
        user_id = (await api.get("/auth/me", headers=auth)).json()["user"]["id"]
        await exchange_feed("SOL_USDC", "100.00", "100.00")
        await api.post("/positions", headers=auth, json={"symbol": "SOL_USDC", "side": "long", "qty": "900",
                                                         "leverage": 10})
        ws = await account_socket(api, auth["Authorization"].removeprefix("Bearer "))
        try:
            await exchange_feed("SOL_USDC", "98.80", "98.80")  # level ≈ 99 %: margin call
            assert await _margin_events(ws, 1.5) == ["margin_call"]
            await exchange_feed("SOL_USDC", "100.00", "100.00")  # level back above 100 %
            assert await _margin_events(ws, 1.5) == ["margin_call_cleared"]
        finally:
            await ws.close()
        assert published == ["margin_call", "margin_call_cleared"]  # one dbproc published them, once each
        owner = first if first.partition_of(user_id) in first.owned else second.risk
        assert user_id in owner.book.user_ids()  # the position is still open
        other = second.risk if owner is first else first
        assert user_id not in other.book.user_ids()
    finally:
        await watching.stop()
        await second.stop()
