"""Trading through the public API: open, mark to market, close, partial close, stops, stop-out, ledger."""

from __future__ import annotations

import asyncio
from decimal import Decimal

from helpers import set_price, signed_in

D = Decimal


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


async def test_open_mark_to_market_and_close_books_the_pnl(platform, api, mailbox, email):
    auth = await signed_in(api, mailbox, email)
    await set_price(platform, "ETH_USDC", "3000.00", "3000.50")  # broker quote 2999.25 / 3001.26 (5 bps)
    opened = await api.post("/positions", headers=auth, json={"symbol": "ETH_USDC", "side": "long", "qty": "2",
                                                              "leverage": 10})
    assert opened.status_code == 201, opened.text
    position = opened.json()
    assert D(position["entry_price"]) == D("3001.26")  # a long fills at the broker's ask
    assert D(position["margin"]) == D("600.25")  # 2 × 3001.26 / 10, in cents
    assert D(position["commission"]) == D("3.00")  # 2 × 3001.26 × 0.05 %, paid on opening

    account = (await api.get("/account", headers=auth)).json()
    assert D(account["balance"]) == D("9997.00")
    assert D(account["unrealized_pnl"]) == D("-4.02")  # (2999.25 − 3001.26) × 2 at the bid
    assert D(account["equity"]) == D("9992.98") and D(account["used_margin"]) == D("600.25")
    assert D(account["free_margin"]) == D("9392.73")
    assert D(account["margin_level"]) == (D("9992.98") / D("600.25") * 100).quantize(D("0.01"))

    await set_price(platform, "ETH_USDC", "3100.00", "3100.50")  # bid 3099.22
    closed = await api.post(f"/positions/{position['id']}/close", headers=auth, json={})
    assert closed.status_code == 200, closed.text
    closed = closed.json()
    assert closed["status"] == "closed" and closed["close_reason"] == "manual"
    assert D(closed["close_price"]) == D("3099.22") and D(closed["realized_pnl"]) == D("195.92")
    assert D(closed["commission"]) == D("6.10")  # and 2 × 3099.22 × 0.05 % = 3.10 on closing

    account = (await api.get("/account", headers=auth)).json()
    assert D(account["balance"]) == D("10189.82") and account["margin_level"] is None
    ledger = (await api.get("/ledger", headers=auth)).json()
    assert sorted((e["kind"], D(e["amount"])) for e in ledger) == [  # the close's two entries share a millisecond
        ("commission", D("-3.10")), ("commission", D("-3.00")), ("deposit", D("10000")),
        ("realized_pnl", D("195.92"))]
    assert sum(D(e["amount"]) for e in ledger) == D("10189.82")  # the balance: every entry, counted once
    history = (await api.get("/positions?status=closed", headers=auth)).json()
    assert [p["id"] for p in history] == [position["id"]]
    assert (await api.get("/positions?status=open", headers=auth)).json() == []


async def test_a_short_fills_at_the_bid_and_closes_at_the_ask(platform, api, mailbox, email):
    auth = await signed_in(api, mailbox, email)
    await set_price(platform, "BTC_USDC", "90000.0", "90001.0")  # broker 89982.0 / 90019.1 (4 bps)
    short = (await api.post("/positions", headers=auth, json={"symbol": "BTC_USDC", "side": "short",
                                                              "qty": "0.01", "leverage": 20})).json()
    assert D(short["entry_price"]) == D("89982.0")
    await set_price(platform, "BTC_USDC", "89000.0", "89001.0")  # ask 89018.9
    closed = (await api.post(f"/positions/{short['id']}/close", headers=auth)).json()
    assert D(closed["close_price"]) == D("89018.9")
    assert D(closed["realized_pnl"]) == D("9.63")  # (89982.0 − 89018.9) × 0.01 = 9.631


async def test_partial_close_splits_the_position(platform, api, mailbox, email):
    auth = await signed_in(api, mailbox, email)
    await set_price(platform, "SOL_USDC", "200.00", "200.02")  # broker 199.94 / 200.09
    position = (await api.post("/positions", headers=auth, json={"symbol": "SOL_USDC", "side": "long",
                                                                 "qty": "10", "leverage": 5})).json()
    part = await api.post(f"/positions/{position['id']}/close", headers=auth, json={"qty": "4"})
    assert part.status_code == 200, part.text
    part = part.json()
    assert D(part["qty"]) == 4 and part["status"] == "closed" and part["parent_id"] == position["id"]
    assert D(part["realized_pnl"]) == D("-0.60")  # (199.94 − 200.09) × 4
    rest = (await api.get(f"/positions/{position['id']}", headers=auth)).json()
    assert rest["status"] == "open" and D(rest["qty"]) == 6
    assert D(rest["margin"]) + D(part["margin"]) == D(position["margin"])
    leftover = await api.post(f"/positions/{position['id']}/close", headers=auth, json={"qty": "5.995"})
    assert leftover.status_code == 422 and leftover.json()["error"]["code"] == "invalid_quantity_step"


async def test_stop_loss_and_take_profit_close_at_the_tick_that_hits_them(platform, api, mailbox, email):
    auth = await signed_in(api, mailbox, email)
    await set_price(platform, "BNB_USDC", "600.00", "600.10")  # broker 599.82 / 600.29 (6 bps)
    long = (await api.post("/positions", headers=auth, json={
        "symbol": "BNB_USDC", "side": "long", "qty": "1", "leverage": 10, "stop_loss": "590", "take_profit": "620",
    })).json()
    short = (await api.post("/positions", headers=auth, json={
        "symbol": "BNB_USDC", "side": "short", "qty": "1", "leverage": 10, "stop_loss": "620", "take_profit": "590",
    })).json()
    assert long["stop_loss"] == "590" and short["take_profit"] == "590"

    # bid 589.32 ≤ 590: the long's stop-loss; ask 589.78 ≤ 590: the short's take-profit
    await set_price(platform, "BNB_USDC", "589.50", "589.60")

    async def both_closed():
        positions = (await api.get("/positions?status=closed", headers=auth)).json()
        return positions if len(positions) == 2 else None

    closed = {p["id"]: p for p in await eventually(both_closed)}
    assert closed[long["id"]]["close_reason"] == "stop_loss" and D(closed[long["id"]]["close_price"]) == D("589.32")
    assert closed[short["id"]]["close_reason"] == "take_profit"
    assert D(closed[short["id"]]["close_price"]) == D("589.78")
    balance = D((await api.get("/account", headers=auth)).json()["balance"])
    fees = D(closed[long["id"]]["commission"]) + D(closed[short["id"]]["commission"])
    assert fees == D("0.60") + D("0.60") + D("0.59") + D("0.59")  # 0.1 % of each fill: two opens, two stops
    assert balance == D("10000") + (D("589.32") - D("600.29")) + (D("599.82") - D("589.78")) - fees


async def test_stop_out_closes_the_worst_loser_first_and_never_goes_negative(platform, api, mailbox, email):
    auth = await signed_in(api, mailbox, email)
    await set_price(platform, "DOGE_USDC", "1.00000", "1.00010")  # broker 0.99950 / 1.00061 (10 bps)
    await set_price(platform, "SOL_USDC", "100.00", "100.02")  # broker 99.97 / 100.06
    doge = (await api.post("/positions", headers=auth, json={"symbol": "DOGE_USDC", "side": "long",
                                                             "qty": "95000", "leverage": 10})).json()
    sol = (await api.post("/positions", headers=auth, json={"symbol": "SOL_USDC", "side": "long",
                                                            "qty": "10", "leverage": 20})).json()
    # DOGE −9 %: equity ≈ 10000 − 95000 × 0.0906 ≈ 1393 against 9558 of margin → level ≈ 14.6 % < 50 %
    await set_price(platform, "DOGE_USDC", "0.91000", "0.91010")

    async def doge_stopped():
        positions = (await api.get("/positions?status=closed", headers=auth)).json()
        return positions or None

    stopped = await eventually(doge_stopped)
    assert [p["id"] for p in stopped] == [doge["id"]] and stopped[0]["close_reason"] == "stop_out"
    open_ = (await api.get("/positions?status=open", headers=auth)).json()
    assert [p["id"] for p in open_] == [sol["id"]]  # the level recovered once the worst loser closed
    account = (await api.get("/account", headers=auth)).json()
    assert D(account["balance"]) >= 0 and D(account["margin_level"]) >= 50


async def test_a_loss_beyond_the_balance_is_a_shortfall_not_a_debt(platform, api, mailbox, email):
    auth = await signed_in(api, mailbox, email)
    await set_price(platform, "BTC_USDC", "100000.0", "100000.0")  # broker 99980.0 / 100020.0
    position = (await api.post("/positions", headers=auth, json={"symbol": "BTC_USDC", "side": "long",
                                                                 "qty": "4", "leverage": 50})).json()
    # a gap through the stop-out level: the price falls 5 % in one tick
    await set_price(platform, "BTC_USDC", "95000.0", "95000.0")

    async def closed():
        p = (await api.get(f"/positions/{position['id']}", headers=auth)).json()
        return p if p["status"] == "closed" else None

    done = await eventually(closed)
    assert done["close_reason"] == "stop_out" and D(done["realized_pnl"]) < -10000
    account = (await api.get("/account", headers=auth)).json()
    assert D(account["balance"]) == 0
    kinds = [e["kind"] for e in (await api.get("/ledger", headers=auth)).json()]
    assert kinds[-2:] == ["commission", "deposit"]  # the opening's, then what the stop-out booked, in one ms
    assert sorted(kinds[:-2]) == ["commission", "realized_pnl", "shortfall"]


async def test_fifty_concurrent_opens_with_margin_for_ten(platform, api, mailbox, email):
    auth = await signed_in(api, mailbox, email)
    await set_price(platform, "ETH_USDC", "1000.00", "1000.00")  # broker 999.75 / 1000.25
    # each needs 998.25 of margin and 0.50 of commission, and is worth 0.50 less at the bid than it cost:
    # exactly 10 fit in 10000
    order = {"symbol": "ETH_USDC", "side": "long", "qty": "0.998", "leverage": 1}
    answers = await asyncio.gather(*(api.post("/positions", headers=auth, json=order) for _ in range(50)))
    codes = [a.status_code for a in answers]
    assert codes.count(201) == 10, codes
    assert all(a.json()["error"]["code"] == "insufficient_margin" for a in answers if a.status_code == 422)
    assert codes.count(422) == 40
    account = (await api.get("/account", headers=auth)).json()
    assert D(account["used_margin"]) == 10 * D("998.25") and D(account["balance"]) == D("10000") - 10 * D("0.50")
    assert len((await api.get("/positions?status=open", headers=auth)).json()) == 10


async def test_idempotency_key_applies_an_open_once(platform, api, mailbox, email):
    auth = await signed_in(api, mailbox, email)
    await set_price(platform, "SOL_USDC", "150.00", "150.00")
    headers = {**auth, "Idempotency-Key": "order-1"}
    order = {"symbol": "SOL_USDC", "side": "long", "qty": "1", "leverage": 2}
    first = await api.post("/positions", headers=headers, json=order)
    again = await api.post("/positions", headers=headers, json=order)
    assert first.status_code == again.status_code == 201 and first.json() == again.json()
    assert len((await api.get("/positions?status=open", headers=auth)).json()) == 1


async def test_modify_sets_and_removes_stops(platform, api, mailbox, email):
    auth = await signed_in(api, mailbox, email)
    await set_price(platform, "SOL_USDC", "150.00", "150.00")  # broker 149.95 / 150.05
    position = (await api.post("/positions", headers=auth, json={"symbol": "SOL_USDC", "side": "long", "qty": "1",
                                                                 "leverage": 2})).json()
    set_ = await api.patch(f"/positions/{position['id']}", headers=auth,
                           json={"stop_loss": "140", "take_profit": "160"})
    assert set_.status_code == 200 and set_.json()["stop_loss"] == "140" and set_.json()["take_profit"] == "160"
    removed = await api.patch(f"/positions/{position['id']}", headers=auth, json={"stop_loss": None})
    assert removed.json()["stop_loss"] is None and removed.json()["take_profit"] == "160"
    wrong = await api.patch(f"/positions/{position['id']}", headers=auth, json={"stop_loss": "155"})
    assert wrong.status_code == 422 and wrong.json()["error"]["code"] == "invalid_stop_loss"
