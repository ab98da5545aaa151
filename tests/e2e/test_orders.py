"""Pending orders, trailing stops, the slippage guard and close-all, through the public API and the `account`
channel, as a trader or a bot would use them."""

from __future__ import annotations

import asyncio
import json
import time
from decimal import Decimal

import websockets
from helpers import set_price, signed_in

from shared.markets import MARKETS, broker_quote

D = Decimal


def quote(symbol: str, bid: str, ask: str):
    """The broker quote the platform makes of an exchange bid/ask."""
    return broker_quote(MARKETS[symbol], D(bid), D(ask), 0)


async def eventually(check, timeout: float = 10.0):
    loop = asyncio.get_running_loop()
    end = loop.time() + timeout
    while True:
        result = await check()
        if result:
            return result
        if loop.time() > end:
            raise AssertionError("not reached in time")
        await asyncio.sleep(0.02)


async def order_status(api, auth, order_id: str, status: str):
    async def check():
        order = (await api.get(f"/orders/{order_id}", headers=auth)).json()
        return order if order["status"] == status else None
    return await eventually(check)


async def test_a_buy_limit_fills_at_the_ask_of_the_tick_that_reaches_it_and_reports_on_the_account_channel(
        platform, api, mailbox, email):
    auth = await signed_in(api, mailbox, email)
    await set_price(platform, "SOL_USDC", "100.00", "100.00")  # broker 99.97 / 100.03
    token = auth["Authorization"].split()[1]
    async with websockets.connect(platform.ws_url) as ws:
        await ws.send(json.dumps({"op": "auth", "token": token}))
        await ws.send(json.dumps({"op": "subscribe", "channels": ["account"]}))
        placed = await api.post("/orders", headers=auth, json={
            "symbol": "SOL_USDC", "side": "long", "type": "limit", "qty": "2", "price": "95.00", "leverage": 5,
            "stop_loss": "90.00", "take_profit": "110.00"})
        assert placed.status_code == 201, placed.text
        order = placed.json()
        assert order["status"] == "working" and order["expires_at"] is None and order["position_id"] is None

        await set_price(platform, "SOL_USDC", "96.00", "96.00")  # ask 96.03: above the limit, nothing happens
        await asyncio.sleep(0.3)
        assert (await api.get(f"/orders/{order['id']}", headers=auth)).json()["status"] == "working"

        await set_price(platform, "SOL_USDC", "94.50", "94.50")  # ask 94.53 ≤ 95.00: fills at 94.53
        filled = await order_status(api, auth, order["id"], "filled")
        position = (await api.get(f"/positions/{filled['position_id']}", headers=auth)).json()
        assert D(position["entry_price"]) == quote("SOL_USDC", "94.50", "94.50").ask == D("94.53")
        assert position["order_id"] == order["id"] and D(position["stop_loss"]) == D("90.00")
        assert D(position["take_profit"]) == D("110.00") and position["leverage"] == 5

        seen = []
        while not any(f.get("type") == "order" and f["event"] == "filled" for f in seen):
            seen.append(json.loads(await asyncio.wait_for(ws.recv(), 10)))
        events = [(f["type"], f["event"]) for f in seen if f["type"] in ("order", "position")]
        assert events.index(("order", "accepted")) < events.index(("position", "opened")) < events.index(
            ("order", "filled"))


async def test_stop_orders_trigger_on_the_far_side_and_each_order_fills_once(platform, api, mailbox, email):
    auth = await signed_in(api, mailbox, email)
    await set_price(platform, "ETH_USDC", "3000.00", "3000.00")  # broker 2999.25 / 3000.75
    buy_stop = (await api.post("/orders", headers=auth, json={
        "symbol": "ETH_USDC", "side": "long", "type": "stop", "qty": "0.1", "price": "3050.00",
        "leverage": 10})).json()
    sell_stop = (await api.post("/orders", headers=auth, json={
        "symbol": "ETH_USDC", "side": "short", "type": "stop", "qty": "0.1", "price": "2950.00",
        "leverage": 10})).json()
    sell_limit = (await api.post("/orders", headers=auth, json={
        "symbol": "ETH_USDC", "side": "short", "type": "limit", "qty": "0.1", "price": "3100.00",
        "leverage": 10})).json()
    await set_price(platform, "ETH_USDC", "3060.00", "3060.00")  # ask 3060.77 ≥ 3050: the buy stop only
    await order_status(api, auth, buy_stop["id"], "filled")
    for _ in range(3):  # more ticks past the price: still one fill
        await set_price(platform, "ETH_USDC", "3061.00", "3061.00")
    await set_price(platform, "ETH_USDC", "3120.00", "3120.00")  # bid 3119.22 ≥ 3100: the sell limit
    await order_status(api, auth, sell_limit["id"], "filled")
    assert (await api.get(f"/orders/{sell_stop['id']}", headers=auth)).json()["status"] == "working"
    positions = (await api.get("/positions?status=open", headers=auth)).json()
    assert sorted((p["side"], p["order_id"]) for p in positions) == sorted(
        [("long", buy_stop["id"]), ("short", sell_limit["id"])])
    filled = (await api.get("/orders?status=filled", headers=auth)).json()
    assert {o["id"] for o in filled} == {buy_stop["id"], sell_limit["id"]}


async def test_an_order_the_account_cannot_afford_is_rejected_when_it_triggers(platform, api, mailbox, email):
    auth = await signed_in(api, mailbox, email)
    await set_price(platform, "BTC_USDC", "90000.0", "90000.0")
    order = await api.post("/orders", headers=auth, json={  # margin 90,000 × 10 / 2 = 450,000 > 10,000
        "symbol": "BTC_USDC", "side": "long", "type": "limit", "qty": "10", "price": "89000.0", "leverage": 2})
    assert order.status_code == 201, order.text  # placing is allowed: it is judged when it triggers
    await set_price(platform, "BTC_USDC", "88000.0", "88000.0")
    rejected = await order_status(api, auth, order.json()["id"], "rejected")
    assert rejected["reason"].startswith("insufficient_margin") and rejected["position_id"] is None
    assert (await api.get("/positions?status=open", headers=auth)).json() == []


async def test_orders_expire_and_can_be_modified_and_cancelled_while_working(platform, api, mailbox, email):
    auth = await signed_in(api, mailbox, email)
    await set_price(platform, "BNB_USDC", "600.00", "600.00")
    soon = int(time.time() * 1000) + 1500
    expiring = (await api.post("/orders", headers=auth, json={
        "symbol": "BNB_USDC", "side": "long", "type": "limit", "qty": "1", "price": "500.00", "leverage": 5,
        "expires_at": soon})).json()
    assert expiring["expires_at"] == soon
    other = (await api.post("/orders", headers=auth, json={
        "symbol": "BNB_USDC", "side": "long", "type": "limit", "qty": "1", "price": "500.00", "leverage": 5})).json()
    moved = await api.patch(f"/orders/{other['id']}", headers=auth, json={"price": "550.00", "take_profit": "700.00"})
    assert moved.status_code == 200, moved.text
    assert D(moved.json()["price"]) == D("550.00") and D(moved.json()["take_profit"]) == D("700.00")
    bad = await api.patch(f"/orders/{other['id']}", headers=auth, json={"stop_loss": "560.00"})  # above the price
    assert bad.status_code == 422 and bad.json()["error"]["code"] == "invalid_stop_loss"
    cancelled = await api.delete(f"/orders/{other['id']}", headers=auth)
    assert cancelled.status_code == 200 and cancelled.json()["status"] == "cancelled"
    again = await api.delete(f"/orders/{other['id']}", headers=auth)
    assert again.status_code == 409 and again.json()["error"]["code"] == "order_not_working"

    expired = await order_status(api, auth, expiring["id"], "expired")
    assert expired["position_id"] is None
    await set_price(platform, "BNB_USDC", "450.00", "450.00")  # below both prices: neither fills now
    await asyncio.sleep(0.3)
    assert (await api.get("/positions?status=open", headers=auth)).json() == []


async def test_bad_orders_are_refused_and_change_nothing(platform, api, mailbox, email):
    auth = await signed_in(api, mailbox, email)
    good = {"symbol": "DOGE_USDC", "side": "long", "type": "limit", "qty": "100", "price": "0.10000", "leverage": 2}
    cases = [
        ({"price": "0.100001"}, 422, "invalid_price"),
        ({"price": "-1"}, 422, "invalid_price"),
        ({"type": "market"}, 400, None),
        ({"symbol": "XRP_USDC"}, 404, "unknown_market"),
        ({"expires_at": 1000}, 422, "invalid_expiry"),
        ({"trailing_distance": "0.000001"}, 422, "invalid_trailing_distance"),
        ({"stop_loss": "0.20000"}, 422, "invalid_stop_loss"),
        ({"qty": "0.5"}, 422, None),
        ({"leverage": 11}, 422, None),
        ({"surprise": 1}, 400, None),
    ]
    for change, status, code in cases:
        response = await api.post("/orders", headers=auth, json=good | change)
        assert response.status_code == status, (change, response.text)
        assert "error" in response.json()
        if code is not None:
            assert response.json()["error"]["code"] == code, (change, response.text)
    assert (await api.get("/orders", headers=auth)).json() == []
    missing = await api.get("/orders/not-an-id", headers=auth)
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "order_not_found"

    theirs = (await api.post("/orders", headers=auth, json=good)).json()
    stranger = await signed_in(api, mailbox, "stranger-" + email)
    for method, path in (("GET", ""), ("PATCH", ""), ("DELETE", "")):
        response = await api.request(method, f"/orders/{theirs['id']}{path}", headers=stranger,
                                     json={"price": "0.09000"} if method == "PATCH" else None)
        assert response.status_code == 404 and response.json()["error"]["code"] == "order_not_found"
    assert D((await api.get(f"/orders/{theirs['id']}", headers=auth)).json()["price"]) == D("0.1")


async def test_a_trailing_stop_follows_the_price_up_never_back_and_closes_as_a_trailing_stop(
        platform, api, mailbox, email):
    auth = await signed_in(api, mailbox, email)
    await set_price(platform, "SOL_USDC", "200.00", "200.00")  # broker 199.94 / 200.06
    opened = await api.post("/positions", headers=auth, json={
        "symbol": "SOL_USDC", "side": "long", "qty": "1", "leverage": 5, "trailing_distance": "5.00"})
    assert opened.status_code == 201, opened.text
    position = opened.json()
    assert D(position["trailing_distance"]) == D("5.00") and D(position["stop_loss"]) == D("194.94")  # bid − 5

    async def stop_at(level: str):
        async def check():
            p = (await api.get(f"/positions/{position['id']}", headers=auth)).json()
            return p if D(p["stop_loss"] or 0) == D(level) else None
        return await eventually(check)

    await set_price(platform, "SOL_USDC", "210.00", "210.00")  # bid 209.93: the stop follows to 204.93
    await stop_at("204.93")
    await set_price(platform, "SOL_USDC", "206.00", "206.00")  # bid 205.93 falls: the stop stays
    await asyncio.sleep(0.8)
    assert D((await api.get(f"/positions/{position['id']}", headers=auth)).json()["stop_loss"]) == D("204.93")
    await set_price(platform, "SOL_USDC", "204.00", "204.00")  # bid 203.93 ≤ 204.93: closed

    async def closed():
        p = (await api.get(f"/positions/{position['id']}", headers=auth)).json()
        return p if p["status"] == "closed" else None
    done = await eventually(closed)
    assert done["close_reason"] == "trailing_stop" and D(done["close_price"]) == D("203.93")


async def test_a_short_trailing_stop_set_later_with_patch(platform, api, mailbox, email):
    auth = await signed_in(api, mailbox, email)
    await set_price(platform, "ETH_USDC", "3000.00", "3000.00")  # broker 2999.25 / 3000.75
    short = (await api.post("/positions", headers=auth, json={
        "symbol": "ETH_USDC", "side": "short", "qty": "0.1", "leverage": 10})).json()
    patched = await api.patch(f"/positions/{short['id']}", headers=auth, json={"trailing_distance": "20.00"})
    assert patched.status_code == 200, patched.text
    assert D(patched.json()["stop_loss"]) == D("3020.75")  # ask + 20
    await set_price(platform, "ETH_USDC", "2900.00", "2900.00")  # ask 2900.73: the stop comes down to 2920.73

    async def lowered():
        p = (await api.get(f"/positions/{short['id']}", headers=auth)).json()
        return p if D(p["stop_loss"]) == D("2920.73") else None
    await eventually(lowered)
    off = await api.patch(f"/positions/{short['id']}", headers=auth, json={"trailing_distance": None})
    assert off.json()["trailing_distance"] is None and D(off.json()["stop_loss"]) == D("2920.73")


async def test_the_slippage_guard_refuses_a_fill_that_moved_too_far(platform, api, mailbox, email):
    auth = await signed_in(api, mailbox, email)
    await set_price(platform, "BNB_USDC", "600.00", "600.00")  # broker ask 600.18
    order = {"symbol": "BNB_USDC", "side": "long", "qty": "1", "leverage": 5}
    moved = await api.post("/positions", headers=auth, json=order | {"expected_price": "599.00",
                                                                     "max_deviation": "1.00"})
    assert moved.status_code == 422 and moved.json()["error"]["code"] == "price_moved"
    assert moved.json()["error"]["details"]["price"] == "600.18"
    assert (await api.get("/positions?status=open", headers=auth)).json() == []
    half = await api.post("/positions", headers=auth, json=order | {"expected_price": "599.00"})
    assert half.status_code == 422 and half.json()["error"]["code"] == "invalid_slippage"
    within = await api.post("/positions", headers=auth, json=order | {"expected_price": "599.50",
                                                                      "max_deviation": "1.00"})
    assert within.status_code == 201, within.text


async def test_close_all_closes_one_market_or_everything(platform, api, mailbox, email):
    auth = await signed_in(api, mailbox, email)
    await set_price(platform, "SOL_USDC", "150.00", "150.00")
    await set_price(platform, "DOGE_USDC", "0.20000", "0.20000")
    for symbol, qty in (("SOL_USDC", "1"), ("SOL_USDC", "2"), ("DOGE_USDC", "100")):
        assert (await api.post("/positions", headers=auth, json={"symbol": symbol, "side": "long", "qty": qty,
                                                                 "leverage": 2})).status_code == 201
    sol = await api.post("/positions/close-all", headers=auth, json={"symbol": "SOL_USDC"})
    assert sol.status_code == 200, sol.text
    assert sorted(p["qty"] for p in sol.json()["closed"]) == ["1", "2"]
    assert all(p["status"] == "closed" and p["close_reason"] == "manual" for p in sol.json()["closed"])
    left = (await api.get("/positions?status=open", headers=auth)).json()
    assert [p["symbol"] for p in left] == ["DOGE_USDC"]
    unknown = await api.post("/positions/close-all", headers=auth, json={"symbol": "NOPE"})
    assert unknown.status_code == 404 and unknown.json()["error"]["code"] == "unknown_market"
    everything = await api.post("/positions/close-all", headers=auth)
    assert [p["symbol"] for p in everything.json()["closed"]] == ["DOGE_USDC"]
    assert (await api.post("/positions/close-all", headers=auth)).json() == {"closed": []}


async def test_a_trailing_stop_turned_off_just_after_it_moved_stays_where_it_got_to(platform, api, mailbox, email):
    """The risk engine ratchets a trailing stop on the tick and stores it within half a second; turning the
    trailing off in between must keep the stop where it got to, not where it was last stored."""
    auth = await signed_in(api, mailbox, email)
    await set_price(platform, "SOL_USDC", "200.00", "200.00")  # broker 199.94 / 200.06
    position = (await api.post("/positions", headers=auth, json={
        "symbol": "SOL_USDC", "side": "long", "qty": "1", "leverage": 5, "trailing_distance": "5.00"})).json()
    assert D(position["stop_loss"]) == D("194.94")
    await set_price(platform, "SOL_USDC", "210.00", "210.00")  # bid 209.93: the stop moves up to 204.93
    off = await api.patch(f"/positions/{position['id']}", headers=auth, json={"trailing_distance": None})
    assert off.status_code == 200, off.text
    assert off.json()["trailing_distance"] is None and D(off.json()["stop_loss"]) == D("204.93")
    await asyncio.sleep(1.0)  # past the round that stores ratcheted stops
    assert D((await api.get(f"/positions/{position['id']}", headers=auth)).json()["stop_loss"]) == D("204.93")
    await set_price(platform, "SOL_USDC", "204.50", "204.50")  # bid 204.43: through 204.93, not through 194.94

    async def closed():
        p = (await api.get(f"/positions/{position['id']}", headers=auth)).json()
        return p if p["status"] == "closed" else None
    done = await eventually(closed, timeout=5)
    assert done["close_reason"] == "stop_loss" and D(done["close_price"]) == D("204.43")
