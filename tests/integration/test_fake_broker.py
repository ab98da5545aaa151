"""The tests' `FakeBroker` agrees with the platform: the same exchange ticks and the same orders give the same
fills, margins, realised PnL, ledger and account, and the same refusals."""

from __future__ import annotations

import asyncio
from decimal import Decimal

from fake_broker import FakeBroker
from helpers import set_price, signed_in

from cfd_client import ApiClient, Rejected
from shared.contracts.rest import Account, Order, Position

TICKS = [("SOL_USDC", "184.95", "185.05"), ("ETH_USDC", "3449.95", "3450.05")]
LATER = [("SOL_USDC", "186.05", "186.15"), ("ETH_USDC", "3441.27", "3441.33")]


def trade(position: Position) -> tuple:
    return (position.symbol, position.side, position.qty, position.entry_price, position.leverage, position.margin,
            position.status, position.close_price, position.realized_pnl, position.close_reason, position.commission,
            position.financing)


def figures(account: Account) -> tuple:
    return (account.balance, account.equity, account.used_margin, account.free_margin, account.margin_level,
            account.unrealized_pnl)


async def refusal(call) -> tuple[str, str]:
    try:
        await call
    except Rejected as exc:
        return exc.code, exc.message
    raise AssertionError("not refused")


async def test_the_fake_broker_quotes_fills_and_books_as_the_platform_does(platform, api, mailbox, email):
    auth = await signed_in(api, mailbox, email)
    fake = FakeBroker()
    fake.add_user(email)
    fake.sign_in_as(email)
    async with ApiClient(platform.base_url, token=auth["Authorization"].removeprefix("Bearer ")) as real:

        async def both(name: str, *args, **kwargs) -> tuple:
            return await getattr(real, name)(*args, **kwargs), await getattr(fake, name)(*args, **kwargs)

        async def ticks(prices) -> None:
            for symbol, bid, ask in prices:
                await set_price(platform, symbol, bid, ask)
                fake.push_price(symbol, bid, ask)

        await ticks(TICKS)
        sol = await both("open_position", "SOL_USDC", "long", Decimal(3), 5)
        eth = await both("open_position", "ETH_USDC", "short", Decimal("0.8"), 5)
        for platform_side, fake_side in (sol, eth):
            assert trade(fake_side) == trade(platform_side)
        assert sol[1].entry_price == Decimal("185.11")  # the broker's ask, not the exchange's 185.05
        assert sol[1].commission == Decimal("0.56")  # 3 × 185.11 × 0.1 %
        platform_account, fake_account = await both("account")
        assert figures(fake_account) == figures(platform_account)

        await ticks(LATER)
        platform_account, fake_account = await both("account")
        assert figures(fake_account) == figures(platform_account)
        huge = await refusal(real.open_position("SOL_USDC", "long", Decimal(1000), 1))
        assert await refusal(fake.open_position("SOL_USDC", "long", Decimal(1000), 1)) == huge
        assert huge[0] == "insufficient_margin"
        too_much = await refusal(real.close_position(sol[0].id, Decimal(4)))
        assert await refusal(fake.close_position(sol[1].id, Decimal(4))) == too_much

        # part closes (ETH's PnL has fractions of a cent: what one close leaves unbooked, the next books)
        for (platform_side, fake_side), qty in ((sol, Decimal(1)), (eth, Decimal("0.3")), (eth, Decimal("0.2"))):
            closed = (await real.close_position(platform_side.id, qty), await fake.close_position(fake_side.id, qty))
            assert trade(closed[1]) == trade(closed[0])
        platform_open, fake_open = await both("positions")
        assert sorted(map(trade, fake_open)) == sorted(map(trade, platform_open))
        for platform_side, fake_side in (sol, eth):
            closed = (await real.close_position(platform_side.id), await fake.close_position(fake_side.id))
            assert trade(closed[1]) == trade(closed[0])

        platform_account, fake_account = await both("account")
        assert figures(fake_account) == figures(platform_account)
        platform_ledger, fake_ledger = await both("ledger")
        # (a close's PnL and commission share a millisecond, so the platform may list them either way round)
        assert sorted((e.kind, e.amount, e.balance_after) for e in fake_ledger) == sorted(
            (e.kind, e.amount, e.balance_after) for e in platform_ledger)
        assert [e.kind for e in fake_ledger].count("commission") == 7  # each of the 2 opens and the 5 closes


def order_of(order: Order) -> tuple:
    return (order.symbol, order.side, order.type, order.qty, order.price, order.leverage, order.stop_loss,
            order.take_profit, order.trailing_distance, order.status, order.reason)


async def until_changed(read, done, timeout: float = 10.0):
    """`read()` once `done(value)` holds (the platform fills, trails and expires on its risk engine's time)."""
    deadline = asyncio.get_running_loop().time() + timeout
    while not done(value := await read()):
        assert asyncio.get_running_loop().time() < deadline, f"never done: {value}"
        await asyncio.sleep(0.02)
    return value


async def test_the_fake_broker_places_fills_rejects_and_trails_as_the_platform_does(platform, api, mailbox, email):
    auth = await signed_in(api, mailbox, email)
    fake = FakeBroker(deposit=Decimal(10_000))
    fake.add_user(email)
    fake.sign_in_as(email)
    async with ApiClient(platform.base_url, token=auth["Authorization"].removeprefix("Bearer ")) as real:

        async def both(name: str, *args, **kwargs) -> tuple:
            return await getattr(real, name)(*args, **kwargs), await getattr(fake, name)(*args, **kwargs)

        async def ticks(prices) -> None:
            for symbol, bid, ask in prices:
                await set_price(platform, symbol, bid, ask)
                fake.push_price(symbol, bid, ask)

        await ticks([("SOL_USDC", "100.00", "100.00"), ("BTC_USDC", "90000.0", "90000.0")])
        # refused when placed, with the same code and sentence
        for call in (("SOL_USDC", "long", "limit", Decimal(2), Decimal("95.00"), 5),
                     ("SOL_USDC", "long", "limit", Decimal(2), Decimal("95.005"), 5)):
            kwargs = {"stop_loss": Decimal("96.00")} if call[4] == Decimal("95.00") else {}
            refused = await refusal(real.place_order(*call, **kwargs))
            assert await refusal(fake.place_order(*call, **kwargs)) == refused
        limit = await both("place_order", "SOL_USDC", "long", "limit", Decimal(2), Decimal("95.00"), 5,
                           stop_loss=Decimal("90.00"), take_profit=Decimal("110.00"))
        huge = await both("place_order", "BTC_USDC", "long", "limit", Decimal(10), Decimal("89000.0"), 2)
        for platform_side, fake_side in (limit, huge):
            assert order_of(fake_side) == order_of(platform_side)

        await ticks([("SOL_USDC", "94.50", "94.50"), ("BTC_USDC", "88000.0", "88000.0")])
        for platform_side, fake_side in (limit, huge):
            final = await until_changed(lambda o=platform_side: real.order(o.id), lambda o: o.status != "working")
            mine = await fake.order(fake_side.id)
            assert order_of(mine) == order_of(final)
        assert (await fake.order(huge[1].id)).reason.startswith("insufficient_margin")
        filled = await real.position((await real.order(limit[0].id)).position_id)
        mine = await fake.position((await fake.order(limit[1].id)).position_id)
        assert trade(mine) == trade(filled) and mine.stop_loss == filled.stop_loss == Decimal("90.00")

        # a trailing stop: it starts behind the close price, ratchets up, and closes as a trailing stop
        trailing = await both("open_position", "SOL_USDC", "long", Decimal(1), 5, trailing_distance=Decimal("5.00"))
        assert (trailing[1].stop_loss, trailing[1].trailing_distance) == (trailing[0].stop_loss,
                                                                          trailing[0].trailing_distance)
        await ticks([("SOL_USDC", "110.00", "110.00")])
        raised = await until_changed(lambda: real.position(trailing[0].id),
                                     lambda p: p.stop_loss != trailing[0].stop_loss)
        assert (await fake.position(trailing[1].id)).stop_loss == raised.stop_loss
        await ticks([("SOL_USDC", "104.00", "104.00")])
        done = await until_changed(lambda: real.position(trailing[0].id), lambda p: p.status == "closed")
        assert trade(await fake.position(trailing[1].id)) == trade(done)
        assert done.close_reason == "trailing_stop"

        closed = await both("close_all", "SOL_USDC")
        assert [trade(p) for p in closed[1]] == [trade(p) for p in closed[0]]
        platform_account, fake_account = await both("account")
        assert figures(fake_account) == figures(platform_account)
