"""The tests' `FakeBroker` agrees with the platform: the same exchange ticks and the same orders give the same
fills, margins, realised PnL, ledger and account, and the same refusals."""

from __future__ import annotations

from decimal import Decimal

from fake_broker import FakeBroker
from helpers import set_price, signed_in

from cfd_client import ApiClient, Rejected
from shared.contracts.rest import Account, Position

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
