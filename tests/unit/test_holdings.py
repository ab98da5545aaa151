"""`Holdings` (positions summed per market and side) values an account exactly as adding up its positions one
by one does, however they were added and let go."""

from __future__ import annotations

from decimal import Decimal

from hypothesis import given
from hypothesis import strategies as st

from shared.contracts.quote import Quote
from shared.trading import Exposure, Holdings, account_state, money, unrealized_pnl

SYMBOLS = ("BTC_USDC", "ETH_USDC", "DOGE_USDC")


def _decimal(low: int, high: int, places: int) -> st.SearchStrategy[Decimal]:
    return st.integers(min_value=low, max_value=high).map(lambda n: Decimal(n).scaleb(-places))


positions = st.builds(Exposure, symbol=st.sampled_from(SYMBOLS), side=st.sampled_from(("long", "short")),
                      qty=_decimal(1, 10**12, 10), entry_price=_decimal(1, 10**13, 8),
                      margin=_decimal(1, 10**10, 2))
quotes = st.dictionaries(st.sampled_from(SYMBOLS), _decimal(1, 10**13, 8), min_size=0, max_size=3).map(
    lambda bids: {s: Quote(symbol=s, bid=b, ask=b + Decimal("0.5"), mid=b, ts=0) for s, b in bids.items()})


def _one_by_one(balance: Decimal, held: list[Exposure], quotes: dict[str, Quote]):
    """The account as the sum over the positions (what `account_state` computed before `Holdings`)."""
    used = sum((p.margin for p in held), Decimal(0))
    unrealized = sum((unrealized_pnl(p.side, p.qty, p.entry_price, quotes[p.symbol])
                      for p in held if p.symbol in quotes), Decimal(0))
    equity = balance + unrealized
    return money(equity), money(used), money(equity - used), money(unrealized)


@given(balance=_decimal(0, 10**12, 2), held=st.lists(positions, max_size=30), quotes=quotes)
def test_an_account_of_holdings_is_the_sum_over_its_positions(balance, held, quotes):
    account = account_state(balance, held, quotes)
    assert (account.equity, account.used_margin, account.free_margin, account.unrealized_pnl) == _one_by_one(
        balance, held, quotes)


@given(kept=st.lists(positions, max_size=20), gone=st.lists(positions, max_size=20), quotes=quotes)
def test_holdings_that_took_positions_in_and_let_some_go_value_what_is_left(kept, gone, quotes):
    holdings = Holdings()
    for p in [*gone, *kept]:
        holdings.add(p)
    for p in gone:
        holdings.add(p, -1)
    assert holdings.consistent and holdings.count == len(kept)
    assert account_state(Decimal(1000), holdings, quotes) == account_state(Decimal(1000), kept, quotes)


def test_letting_go_of_a_position_not_held_is_seen():
    holdings = Holdings([Exposure("BTC_USDC", "long", Decimal(1), Decimal(100), Decimal(10))])
    holdings.add(Exposure("BTC_USDC", "short", Decimal(1), Decimal(100), Decimal(10)), -1)
    assert not holdings.consistent
