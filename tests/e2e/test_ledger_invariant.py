"""Over random price paths and random commands, the ledger invariant holds for every user at all times.

balance = deposits + Σ realised PnL − Σ commissions ± Σ financing − fees + Σ shortfall credits (negative-balance
protection), the balance is never negative, every closed position has exactly its one realised-PnL entry, what
each position shows it paid is its ledger entries, and rounding to cents loses nothing: a position closed in
parts books the exact PnL and the exact commission of its fills, less at most half a cent it carries.
"""

from __future__ import annotations

import asyncio
import os
import random
import uuid
from decimal import Decimal

from helpers import set_price, signed_in

from cfd_dbproc.db.tables import Accounts, LedgerEntries, Positions, Users
from shared.costs import commission
from shared.markets import MARKETS

SYMBOLS = ["SOL_USDC", "ETH_USDC", "DOGE_USDC"]
START = {"SOL_USDC": Decimal("150.00"), "ETH_USDC": Decimal("3000.00"), "DOGE_USDC": Decimal("0.30000")}


async def check_invariant(email: str) -> None:
    user = (await Users.select(Users.id).where(Users.email == email).first().run())["id"]
    balance = (await Accounts.select(Accounts.balance).where(Accounts.user_id == user).first().run())["balance"]
    entries = await LedgerEntries.select().where(LedgerEntries.user_id == user).run()
    by_kind: dict[str, Decimal] = {}
    for entry in entries:
        by_kind[entry["kind"]] = by_kind.get(entry["kind"], Decimal(0)) + entry["amount"]
    assert balance >= 0
    assert balance == sum((e["amount"] for e in entries), Decimal(0))
    assert by_kind.get("commission", 0) <= 0  # commission entries are charges, booked as negative amounts
    assert balance == (by_kind.get("deposit", 0) + by_kind.get("realized_pnl", 0) + by_kind.get("commission", 0)
                       + by_kind.get("financing", 0) - by_kind.get("fee", 0) + by_kind.get("shortfall", 0))
    realized = {e["reference"]: e["amount"] for e in entries if e["kind"] == "realized_pnl"}
    assert len(realized) == sum(1 for e in entries if e["kind"] == "realized_pnl")  # one entry per closed position
    costs: dict[tuple[str, str], Decimal] = {}
    for entry in entries:
        if entry["kind"] in ("commission", "financing"):
            key = (entry["kind"], entry["reference"])
            costs[key] = costs.get(key, Decimal(0)) - entry["amount"]
    positions = await Positions.select().where(Positions.user_id == user).run()
    for position in positions:
        if position["status"] == "closed":
            assert realized.get(str(position["id"])) == position["realized_pnl"], position
        else:
            assert str(position["id"]) not in realized
        for kind in ("commission", "financing"):  # what a position shows it paid is what the ledger charged it
            assert position[kind] == costs.get((kind, str(position["id"])), 0), position
    # Rounding to cents loses nothing: what a position and its closed parts booked, plus what it still carries,
    # is the exact PnL of their fills.
    for root in (p for p in positions if p["parent_id"] is None):
        family = [p for p in positions if p["id"] == root["id"] or p["parent_id"] == root["id"]]
        closed = [p for p in family if p["status"] == "closed"]
        exact = sum(((p["close_price"] - p["entry_price"]) * p["qty"] * (1 if p["side"] == "long" else -1)
                     for p in closed), Decimal(0))
        booked = sum((p["realized_pnl"] for p in closed), Decimal(0))
        assert abs(booked + root["unbooked_pnl"] - exact) < Decimal("1e-8"), family
        assert abs(root["unbooked_pnl"]) <= Decimal("0.005")
        market = MARKETS[root["symbol"]]
        fees = commission(market, sum((p["qty"] for p in family), Decimal(0)), root["entry_price"]) + sum(
            (commission(market, p["qty"], p["close_price"]) for p in closed), Decimal(0))
        paid = sum((p["commission"] for p in family), Decimal(0))
        assert abs(paid + root["unbooked_commission"] - fees) < Decimal("1e-8"), family
        assert abs(root["unbooked_commission"]) <= Decimal("0.005")


async def test_random_price_paths_and_commands_keep_the_ledger_invariant(platform, api, mailbox):
    seed = int(os.environ.get("CFD_TEST_SEED", random.randrange(2**32)))
    rng = random.Random(seed)
    email = f"invariant-{uuid.uuid4().hex[:8]}@example.com"
    auth = await signed_in(api, mailbox, email)
    prices = dict(START)
    for _ in range(120):
        action = rng.random()
        symbol = rng.choice(SYMBOLS)
        market = MARKETS[symbol]
        if action < 0.45:  # a price move, sometimes a gap of several percent
            move = Decimal(str(rng.gauss(0, 0.01 if rng.random() < 0.9 else 0.08)))
            prices[symbol] = max(market.price_tick, (prices[symbol] * (1 + move)).quantize(market.price_tick))
            await set_price(platform, symbol, str(prices[symbol]), str(prices[symbol] + market.price_tick))
            await asyncio.sleep(0.01)  # let triggered stops and stop-outs apply
        elif action < 0.8:
            qty = (market.min_qty * rng.randint(1, 400)).quantize(market.qty_step)
            order = {"symbol": symbol, "side": rng.choice(["long", "short"]), "qty": str(qty),
                     "leverage": rng.randint(1, market.max_leverage)}
            await set_price(platform, symbol, str(prices[symbol]), str(prices[symbol] + market.price_tick))
            response = await api.post("/positions", headers=auth, json=order)
            assert response.status_code in (201, 422), (seed, response.text)
        else:
            open_ = (await api.get("/positions?status=open", headers=auth)).json()
            if open_:
                target = rng.choice(open_)
                tick = MARKETS[target["symbol"]].price_tick
                p = prices[target["symbol"]]
                await set_price(platform, target["symbol"], str(p), str(p + tick))
                qty = Decimal(target["qty"])
                share = Decimal(rng.choice((1, 3, 10, 25, 50))) / 100  # partial closes, small slices included
                part = (qty * share).quantize(MARKETS[target["symbol"]].qty_step)
                body = {"qty": str(part)} if rng.random() < 0.6 and part >= MARKETS[target["symbol"]].min_qty else {}
                response = await api.post(f"/positions/{target['id']}/close", headers=auth, json=body)
                assert response.status_code in (200, 422), (seed, response.text)
        await check_invariant(email)


async def test_a_position_closed_in_300_slices_books_what_its_fills_lost(platform, api, mailbox, email):
    """0.03 BTC closed 0.0001 at a time: each slice loses a fraction of a cent, which must add up, not vanish."""
    auth = await signed_in(api, mailbox, email)
    await set_price(platform, "BTC_USDC", "77500.0", "77500.0")  # broker 77484.5 / 77515.5
    opened = await api.post("/positions", headers=auth, json={"symbol": "BTC_USDC", "side": "long", "qty": "0.03",
                                                              "leverage": 10})
    assert opened.status_code == 201, opened.text
    position = opened.json()
    entry = Decimal(position["entry_price"])
    exact = booked = released = paid = Decimal(0)
    for n in range(300):
        if n % 50 == 0:  # keep the quote live however slow the machine
            await set_price(platform, "BTC_USDC", "77500.0", "77500.0")
        closed = await api.post(f"/positions/{position['id']}/close", headers=auth, json={"qty": "0.0001"})
        assert closed.status_code == 200, closed.text
        part = closed.json()
        exact += (Decimal(part["close_price"]) - entry) * Decimal(part["qty"])
        booked += Decimal(part["realized_pnl"])
        paid += Decimal(part["commission"])
        released += Decimal(part["margin"])
    assert part["id"] == position["id"] and (await api.get("/positions?status=open", headers=auth)).json() == []
    assert exact == Decimal("-0.93")  # 300 × 0.0001 × (77484.5 − 77515.5)
    assert abs(booked - exact) <= Decimal("0.01")
    assert released == Decimal(position["margin"])
    # commission too: 0.05 % of each slice is 0.0039, nothing in cents alone; carried, the slices pay what one
    # close of 0.03 at 77484.5 would (1.16), on top of the opening's 1.16 (0.03 × 77515.5 × 0.05 %)
    assert Decimal(position["commission"]) == Decimal("1.16") and paid == Decimal("2.32")
    account = (await api.get("/account", headers=auth)).json()
    assert Decimal(account["balance"]) == Decimal(10_000) + booked - Decimal("2.32")
    await check_invariant(email)
