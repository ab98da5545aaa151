"""Trading maths against a reference written independently with exact fractions."""

from __future__ import annotations

from decimal import Decimal
from fractions import Fraction

import msgspec
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from shared.contracts.quote import Quote
from shared.markets import MARKETS
from shared.trading import (
    Exposure,
    account_state,
    check_close,
    check_margin,
    check_stops,
    margin,
    stop_out_price,
    stop_trigger,
    unrealized_pnl,
)

prices = st.decimals(min_value=Decimal("0.01"), max_value=Decimal("200000"), places=2)
qtys = st.decimals(min_value=Decimal("0.001"), max_value=Decimal("1000"), places=3)
sides = st.sampled_from(["long", "short"])


def quote(symbol: str, bid: Decimal, spread: Decimal) -> Quote:
    return Quote(symbol=symbol, bid=bid, ask=bid + spread, mid=bid + spread / 2, ts=0)


@given(side=sides, qty=qtys, entry=prices, bid=prices, spread=st.decimals(min_value=0, max_value=5, places=2))
def test_unrealised_pnl_is_marked_at_the_closing_side(side, qty, entry, bid, spread):
    q = quote("SOL_USDC", bid, spread)
    exit_price = Fraction(q.bid) if side == "long" else Fraction(q.ask)
    expected = (exit_price - Fraction(entry)) * Fraction(qty) * (1 if side == "long" else -1)
    assert Fraction(unrealized_pnl(side, qty, entry, q)) == expected


@given(st.lists(st.tuples(st.sampled_from(list(MARKETS)), sides, qtys, prices, st.integers(1, 50)), max_size=6),
       st.decimals(min_value=0, max_value=1_000_000, places=2), prices)
@settings(max_examples=200)
def test_account_state_matches_the_definitions(positions, balance, bid):
    quotes = {s: quote(s, bid, Decimal("0.10")) for s in MARKETS}
    exposures = [Exposure(s, side, q, entry, margin(q, entry, lev)) for s, side, q, entry, lev in positions]
    state = account_state(balance, exposures, quotes)
    used = sum((Fraction(e.margin) for e in exposures), Fraction(0))
    upnl = sum((Fraction(unrealized_pnl(e.side, e.qty, e.entry_price, quotes[e.symbol])) for e in exposures),
               Fraction(0))
    equity = Fraction(balance) + upnl
    cent = Fraction(1, 100)
    assert abs(Fraction(state.used_margin) - used) <= cent / 2
    assert abs(Fraction(state.equity) - equity) <= cent / 2
    assert abs(Fraction(state.free_margin) - (equity - used)) <= cent / 2
    if used == 0:
        assert state.margin_level is None
    else:
        assert abs(Fraction(state.margin_level) - equity / used * 100) <= cent / 2


@given(side=sides, qty=qtys, entry=prices, lev=st.integers(1, 50))
def test_margin_is_notional_over_leverage_in_cents(side, qty, entry, lev):
    assert abs(Fraction(margin(qty, entry, lev)) - Fraction(qty) * Fraction(entry) / lev) <= Fraction(1, 200)


@given(side=sides, qty=qtys, entry=prices, balance=st.decimals(min_value=1, max_value=100_000, places=2),
       lev=st.integers(1, 50))
def test_at_the_stop_out_price_the_level_is_exactly_the_stop_out_level(side, qty, entry, balance, lev):
    used = margin(qty, entry, lev)
    assume(used > 0)
    price = stop_out_price(side, qty, entry, balance, used)
    if price is None:
        return
    q = Quote(symbol="X", bid=price, ask=price, mid=price, ts=0)
    equity = Fraction(balance) + Fraction(unrealized_pnl(side, qty, entry, q))
    assert abs(equity / Fraction(used) * 100 - 50) < Fraction(1, 10**6)


def test_stop_triggers_long_on_bid_short_on_ask_and_stop_loss_first():
    q = Quote(symbol="X", bid=Decimal(95), ask=Decimal(105), mid=Decimal(100), ts=0)
    assert stop_trigger("long", Decimal(96), None, q) == "stop_loss"
    assert stop_trigger("long", Decimal(94), Decimal(95), q) == "take_profit"
    assert stop_trigger("long", Decimal(94), Decimal(96), q) is None
    assert stop_trigger("short", Decimal(104), None, q) == "stop_loss"
    assert stop_trigger("short", Decimal(106), Decimal(105), q) == "take_profit"
    assert stop_trigger("long", Decimal(100), Decimal(90), q) == "stop_loss"  # both hit: the stop-loss wins


def test_stops_must_be_on_the_right_side_of_the_fill():
    import pytest

    from shared.errors import Rejected

    market = MARKETS["SOL_USDC"]
    check_stops("long", Decimal(100), Decimal(90), Decimal(110), market)
    check_stops("short", Decimal(100), Decimal(110), Decimal(90), market)
    for side, sl, tp in (("long", 100, None), ("long", None, 100), ("short", 90, None), ("short", None, 110)):
        with pytest.raises(Rejected):
            check_stops(side, Decimal(100), None if sl is None else Decimal(sl), None if tp is None else Decimal(tp),
                        market)


def test_an_order_needs_no_more_margin_than_is_free():
    import pytest

    from shared.errors import Rejected

    check_margin(Decimal("100.00"), Decimal("100.00"))
    with pytest.raises(Rejected) as refused:
        check_margin(Decimal("100.01"), Decimal("100.00"))
    assert refused.value.code == "insufficient_margin"
    assert refused.value.details == {"required_margin": "100.01", "free_margin": "100.00"}


def test_a_close_is_above_zero_at_most_all_in_whole_steps_and_leaves_at_least_the_minimum():
    import pytest

    from shared.errors import Rejected

    market = MARKETS["SOL_USDC"]  # min 0.01, step 0.01
    for qty in ("3", "1", "2.99"):
        check_close(market, Decimal(3), Decimal(qty))
    for qty, code in (("0", "invalid_quantity"), ("-1", "invalid_quantity"), ("3.01", "invalid_quantity"),
                      ("NaN", "invalid_quantity"), ("1.005", "invalid_quantity_step")):
        with pytest.raises(Rejected) as refused:
            check_close(market, Decimal(3), Decimal(qty))
        assert refused.value.code == code
    whole_units = msgspec.structs.replace(market, min_qty=Decimal(1))
    check_close(whole_units, Decimal(3), Decimal(2))
    with pytest.raises(Rejected) as refused:
        check_close(whole_units, Decimal(3), Decimal("2.5"))  # would leave 0.5, below the minimum of 1
    assert refused.value.code == "quantity_too_small"
