"""The cost maths (`shared.costs`) and the market terms in force (`shared.markets.MarketBook`): commission,
daily financing, the rollovers a position owes, and the rules of a market's status and settings."""

from __future__ import annotations

from decimal import Decimal

import msgspec
import pytest
from hypothesis import given
from hypothesis import strategies as st

from shared.contracts import encode
from shared.contracts.bus import PriceTick
from shared.costs import (
    DAY_MS,
    carried,
    check_affordable,
    commission,
    daily_financing,
    last_rollover,
    next_rollover,
    rollovers_between,
)
from shared.errors import Rejected
from shared.markets import MARKETS, MarketBook, check_settings, check_trading, settings_of
from shared.quotes import LatestQuotes
from shared.trading import money

D = Decimal
ETH = MARKETS["ETH_USDC"]  # commission 0.05 %, financing 22 %/yr long, −5 %/yr short
JAN_1 = 1_767_225_600_000  # 2026-01-01 00:00:00 UTC


def test_commission_is_the_notional_times_the_rate_booked_in_cents_half_to_even():
    assert commission(ETH, D(2), D("3001.26")) == D("3.00126")
    assert carried(commission(ETH, D(2), D("3001.26")), D(0)) == (D("3.00"), D("0.00126"))
    assert carried(commission(ETH, D("0.001"), D(3000)), D(0))[0] == D("0.00")  # 0.0015: half to even
    assert carried(commission(ETH, D("0.011"), D(3000)), D(0))[0] == D("0.02")  # 0.0165
    free = msgspec.structs.replace(ETH, commission_rate=D(0))
    assert carried(commission(free, D(100), D(3000)), D(0)) == (D("0.00"), D(0))


def test_what_rounding_leaves_is_carried_so_slices_pay_what_one_fill_would():
    """300 fills of 0.0001 BTC each owe 0.0039 of commission: alone each rounds to nothing, carried they pay."""
    btc = MARKETS["BTC_USDC"]
    carry, paid = D(0), D(0)
    for _ in range(300):
        booked, carry = carried(commission(btc, D("0.0001"), D("77484.5")), carry)
        paid += booked
    assert paid == D("1.16") and abs(paid + carry - commission(btc, D("0.03"), D("77484.5"))) < D("1e-20")


def test_a_long_pays_financing_a_short_is_credited_a_daily_share_of_the_yearly_rate():
    assert money(daily_financing(ETH, "long", D(2), D(3000))) == D("3.62")  # 6000 × 0.22 / 365 = 3.6164
    assert money(daily_financing(ETH, "short", D(2), D(3000))) == D("-0.82")  # 6000 × −0.05 / 365 = −0.8219
    doge = MARKETS["DOGE_USDC"]  # a short pays nothing, and gets nothing
    assert daily_financing(doge, "short", D(10_000), D("0.3")) == 0


def test_the_rollover_is_a_time_of_day_in_utc():
    midnight = 0
    assert last_rollover(JAN_1, midnight) == JAN_1  # at the rollover itself
    assert last_rollover(JAN_1 - 1, midnight) == JAN_1 - DAY_MS
    assert next_rollover(JAN_1, midnight) == JAN_1 + DAY_MS
    ten_pm = 22 * 60
    assert last_rollover(JAN_1, ten_pm) == JAN_1 - 2 * 3_600_000  # 2025-12-31 22:00
    assert next_rollover(JAN_1, ten_pm) == JAN_1 + 22 * 3_600_000


def test_a_position_owes_every_rollover_it_was_open_at_and_none_other():
    opened = JAN_1 - 60_000  # 23:59 the day before
    assert rollovers_between(opened, JAN_1 - 1, 0) == []  # closed before midnight: nothing
    assert rollovers_between(opened, JAN_1, 0) == [JAN_1]  # held over midnight: one day
    assert rollovers_between(opened, JAN_1 + 3 * DAY_MS + 5, 0) == [JAN_1 + n * DAY_MS for n in range(4)]
    assert rollovers_between(JAN_1, JAN_1 + DAY_MS - 1, 0) == []  # opened at the rollover: owes it from the next


@given(st.integers(0, 10 * DAY_MS), st.integers(0, 10 * DAY_MS), st.integers(0, 10 * DAY_MS), st.integers(0, 1439))
def test_settling_in_any_number_of_steps_charges_each_rollover_once(a, b, c, minute):
    """However the settlements fall (the job, a close, a restart), a rollover is owed in exactly one of them."""
    start, middle, end = sorted((JAN_1 + a, JAN_1 + b, JAN_1 + c))
    first = rollovers_between(start, middle, minute)
    second = rollovers_between(max(first, default=start), end, minute)
    assert first + second == rollovers_between(start, end, minute)
    assert len(set(first + second)) == len(first + second)


def test_an_order_needs_its_margin_and_its_commission_in_free_margin():
    check_affordable(D("100"), D("0.50"), D("100.50"), D("100.50"))  # just enough
    with pytest.raises(Rejected) as refused:
        check_affordable(D("100"), D("0.50"), D("100.49"), D("1000"))
    assert refused.value.code == "insufficient_margin"
    assert refused.value.details == {"required_margin": "100", "commission": "0.50", "free_margin": "100.49"}
    with pytest.raises(Rejected) as broke:  # free margin from unrealised profit; the commission comes off the balance
        check_affordable(D("100"), D("0.50"), D("5000"), D("0.40"))
    assert broke.value.code == "insufficient_balance"


def test_a_close_only_market_refuses_opening_a_halted_one_everything():
    open_, close_only, halted = (msgspec.structs.replace(ETH, status=s) for s in ("open", "close_only", "halted"))
    check_trading(open_, "open")
    check_trading(close_only, "close")
    with pytest.raises(Rejected) as refused:
        check_trading(close_only, "open")
    assert refused.value.code == "market_close_only"
    for action in ("open", "close"):
        with pytest.raises(Rejected) as stopped:
            check_trading(halted, action)
        assert stopped.value.code == "market_halted"


@pytest.mark.parametrize(("change", "code"), [
    ({"commission_rate": D("-0.001")}, "invalid_commission_rate"),
    ({"commission_rate": D("0.06")}, "invalid_commission_rate"),
    ({"spread_bps": D("-1")}, "invalid_spread_bps"),
    ({"financing_long_rate": D("1.5")}, "invalid_financing_long_rate"),
    ({"financing_short_rate": D("-1.01")}, "invalid_financing_short_rate"),
    ({"max_leverage": 0}, "invalid_leverage"),
])
def test_settings_a_market_cannot_trade_on_are_refused_naming_the_field(change, code):
    with pytest.raises(Rejected) as refused:
        check_settings(msgspec.structs.replace(settings_of(ETH), **change))
    assert refused.value.code == code


def test_a_credit_and_a_free_market_are_settings_like_any_other():
    check_settings(msgspec.structs.replace(settings_of(ETH), financing_short_rate=D("-0.5"), commission_rate=D(0),
                                           spread_bps=D(0)))


def test_the_book_takes_only_newer_revisions_and_says_what_changed():
    book = MarketBook()
    seen = []
    book.on_change(lambda before, after: seen.append((before.status, after.status)))
    halted = msgspec.structs.replace(settings_of(ETH), status="halted", revision=2)
    assert book.apply(halted) and book.market_of("ETH_USDC").status == "halted"
    older = msgspec.structs.replace(settings_of(ETH), status="open", revision=1)
    assert not book.apply(older) and book.market_of("ETH_USDC").status == "halted"  # late, out of order
    assert not book.apply(halted)  # the same revision again (the bus and the start-up answer both bring it)
    assert seen == [("open", "halted")]
    assert MARKETS["ETH_USDC"].status == "open"  # the catalogue itself never changes
    assert not book.apply(msgspec.structs.replace(halted, symbol="XRP_USDC", revision=9))


def test_a_new_spread_requotes_the_latest_price_at_once():
    book = MarketBook()
    quotes = LatestQuotes(stale_after=10, markets=book)
    tick = PriceTick(symbol="ETH_USDC", bid=D("3000.00"), ask=D("3000.50"), exchange_time_us=1_000_000,
                     ingest_time_us=1_000_000)
    before = quotes.apply(encode(tick))
    assert (before.bid, before.ask) == (D("2999.25"), D("3001.26"))  # 5 bps
    book.apply(msgspec.structs.replace(settings_of(ETH), spread_bps=D(20), revision=1))
    quote, stale = quotes.get("ETH_USDC")
    assert (quote.bid, quote.ask, quote.ts) == (D("2997.00"), D("3003.51"), 1000)  # 20 bps, the same tick
    assert not stale
