"""Live stop-out prices: the price of a position's market at which its cross-margin account would reach the
stop-out (and margin call) level, every other price unchanged, as the risk book marks it."""

from __future__ import annotations

from decimal import Decimal

from hypothesis import given, settings
from hypothesis import strategies as st

from cfd_dbproc.risk.book import OpenPosition, RiskBook
from shared.contracts.quote import Quote
from shared.markets import MARKETS
from shared.trading import HUNDRED, MARGIN_CALL_LEVEL, STOP_OUT_LEVEL, close_price, unrealized_pnl

D = Decimal
SYMBOLS = ("SOL_USDC", "ETH_USDC")


def quote(symbol: str, bid: Decimal, spread: Decimal) -> Quote:
    return Quote(symbol=symbol, bid=bid, ask=bid + spread, mid=bid + spread / 2, ts=1)


def exact_level(balance: Decimal, positions: list[OpenPosition], quotes: dict[str, Quote]) -> Decimal:
    equity = balance + sum((unrealized_pnl(p.side, p.qty, p.entry_price, quotes[p.symbol]) for p in positions), D(0))
    return equity / sum((p.margin for p in positions), D(0)) * HUNDRED


positions_st = st.lists(st.tuples(st.sampled_from(SYMBOLS), st.sampled_from(("long", "short")),
                                  st.integers(1, 50), st.integers(50, 150), st.sampled_from((2, 5, 10, 20))),
                        min_size=1, max_size=5)


@settings(max_examples=300, deadline=None)
@given(positions_st, st.integers(100, 20_000), st.integers(60, 140), st.integers(1, 50))
def test_at_the_stop_out_price_the_account_is_at_the_level_and_one_tick_before_it_is_not(held, balance, bid, spread):
    tick = {s: MARKETS[s].price_tick for s in SYMBOLS}
    positions = [OpenPosition(id=f"p{i}", user_id="ada", symbol=s, side=side, qty=D(qty), entry_price=D(entry),
                              margin=D(qty) * entry / lev) for i, (s, side, qty, entry, lev) in enumerate(held)]
    quotes = {s: quote(s, D(bid), spread * tick[s]) for s in SYMBOLS}
    book = RiskBook()
    book.add_accounts(positions, {"ada": D(balance)})
    for q in quotes.values():
        book.on_quote(q)
    _, marks = book.marked("ada")  # type: ignore[misc]
    assert [m.id for m in marks] == [p.id for p in positions]
    for p, mark in zip(positions, marks, strict=True):
        assert mark.price == close_price(p.side, quotes[p.symbol])
        net_long = sum(q.qty if q.side == "long" else -q.qty for q in positions if q.symbol == p.symbol)
        for level, price in ((STOP_OUT_LEVEL, mark.stop_out_price), (MARGIN_CALL_LEVEL, mark.margin_call_price)):
            if net_long == 0:  # held flat: no price of this market moves the account
                assert price is None
                continue
            if price is None:  # no price above zero takes the account there (or back there)
                continue
            # Move this market alone (its spread kept) so that the position closes at `price`.
            spread_now = quotes[p.symbol].ask - quotes[p.symbol].bid
            at_bid = price if p.side == "long" else price - spread_now
            moved = dict(quotes, **{p.symbol: quote(p.symbol, at_bid, spread_now)})
            assert exact_level(D(balance), positions, moved) <= level
            better = at_bid + tick[p.symbol] if net_long > 0 else at_bid - tick[p.symbol]  # one tick in its favour
            moved[p.symbol] = quote(p.symbol, better, spread_now)
            assert exact_level(D(balance), positions, moved) > level


def test_a_hedged_position_gets_its_own_side_of_the_book():
    """Net long: the account falls with the bid; the short of the pair closes at the ask, a spread above."""
    book = RiskBook()
    book.add_accounts([OpenPosition(id="long", user_id="ada", symbol="SOL_USDC", side="long", qty=D(10),
                                    entry_price=D(100), margin=D(100)),
                       OpenPosition(id="short", user_id="ada", symbol="SOL_USDC", side="short", qty=D(4),
                                    entry_price=D(100), margin=D(40))], {"ada": D(500)})
    book.on_quote(quote("SOL_USDC", D(100), D("0.5")))
    _, marks = book.marked("ada")  # type: ignore[misc]
    # equity 500 − 2 (the short's spread) = 498; 50 % of 140 = 70: the bid falls by 428 / 6 = 71.333… → 28.66
    assert [(m.id, m.stop_out_price) for m in marks] == [("long", D("28.66")), ("short", D("29.16"))]
