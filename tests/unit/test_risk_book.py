"""The risk book on hand-computed cases: stops on the right side of the quote, pending, margin call and stop-out."""

from __future__ import annotations

from decimal import Decimal, Inexact

import pytest

from cfd_dbproc.risk import OpenPosition, RiskBook, Trigger
from shared.contracts.quote import Quote
from shared.trading import account_state

D = Decimal


def quote(symbol: str, bid: str, ask: str | None = None) -> Quote:
    b, a = D(bid), D(ask if ask is not None else bid)
    return Quote(symbol=symbol, bid=b, ask=a, mid=(b + a) / 2, ts=0)


def position(pid: str, side: str, qty: str, entry: str, margin: str, *, user: str = "u", symbol: str = "X",
             sl: str | None = None, tp: str | None = None) -> OpenPosition:
    return OpenPosition(id=pid, user_id=user, symbol=symbol, side=side, qty=D(qty), entry_price=D(entry),
                        margin=D(margin), stop_loss=D(sl) if sl else None, take_profit=D(tp) if tp else None)


def book_with(*positions: OpenPosition, balance: str = "1000000") -> RiskBook:
    book = RiskBook()
    book.load(positions, {p.user_id: D(balance) for p in positions} or {"u": D(balance)})
    return book


def kinds(triggers: list[Trigger]) -> list[tuple[str, str | None]]:
    return [(t.kind, t.position_id or t.user_id) for t in triggers]


# --- stop-loss and take-profit --------------------------------------------------------------------------


def test_a_long_stop_loss_fires_on_the_bid_whatever_the_ask():
    book = book_with(position("p", "long", "1", "100", "10", sl="90"))
    assert book.on_quote(quote("X", "90.01", "89.00")) == []  # ask below the stop: irrelevant for a long
    fired = book.on_quote(quote("X", "89.99", "90.50"))
    assert kinds(fired) == [("stop_loss", "p")]
    assert fired[0].price == D("89.99") and fired[0].user_id == "u" and fired[0].quote.bid == D("89.99")


def test_a_short_stop_loss_fires_on_the_ask_whatever_the_bid():
    book = book_with(position("p", "short", "1", "100", "10", sl="110"))
    assert book.on_quote(quote("X", "111", "109.99")) == []  # bid above the stop: irrelevant for a short
    fired = book.on_quote(quote("X", "109.90", "110.00"))  # reached exactly
    assert kinds(fired) == [("stop_loss", "p")] and fired[0].price == D("110.00")


def test_take_profits_fire_on_the_close_side_of_both_sides():
    book = book_with(position("L", "long", "1", "100", "10", tp="120"),
                     position("S", "short", "1", "100", "10", tp="80"))
    assert book.on_quote(quote("X", "119.99", "121")) == []
    assert kinds(book.on_quote(quote("X", "120", "121"))) == [("take_profit", "L")]
    assert book.on_quote(quote("X", "79", "80.01")) == []
    fired = book.on_quote(quote("X", "79", "80"))
    assert kinds(fired) == [("take_profit", "S")] and fired[0].price == D("80")


def test_stop_loss_wins_when_a_tick_hits_both():
    # Stops the order rules would refuse, but the book must still say which one: the stop-loss, once.
    book = book_with(position("p", "long", "1", "100", "10", sl="100", tp="95"))
    assert kinds(book.on_quote(quote("X", "97", "98"))) == [("stop_loss", "p")]


def test_a_pending_position_does_not_fire_again_and_release_re_arms_it():
    book = book_with(position("p", "long", "1", "100", "10", sl="90", tp="130"))
    assert kinds(book.on_quote(quote("X", "89", "90"))) == [("stop_loss", "p")]
    assert book.is_pending("p")
    assert book.on_quote(quote("X", "88", "89")) == []
    assert book.on_quote(quote("X", "131", "132")) == []  # its take-profit is suspended as well
    assert book.release("p") and not book.is_pending("p")
    assert not book.release("p")  # not pending any more
    assert kinds(book.on_quote(quote("X", "131", "132"))) == [("take_profit", "p")]
    assert book.position_closed("p") and not book.position_closed("p")
    assert len(book) == 0 and book.on_quote(quote("X", "50", "51")) == []


def test_moving_the_stops_re_arms_a_pending_position_with_the_new_levels():
    book = book_with(position("p", "short", "2", "100", "10", sl="105"))
    assert kinds(book.on_quote(quote("X", "105", "105.5"))) == [("stop_loss", "p")]
    book.position_updated(position("p", "short", "2", "100", "10", sl="107"))
    assert not book.is_pending("p")
    assert book.on_quote(quote("X", "106", "106.5")) == []
    assert kinds(book.on_quote(quote("X", "106.9", "107"))) == [("stop_loss", "p")]


def test_stops_are_compared_exactly_beyond_the_default_decimal_precision():
    # 31 significant digits: the default context (28) would round both to 100 and fire too early.
    book = book_with(position("p", "long", "1", "100", "10", sl="100.0000000000000000000000000004"),
                     position("s", "short", "1", "100", "10", sl="100.0000000000000000000000000006"))
    assert book.on_quote(quote("X", "100.0000000000000000000000000005")) == []
    assert kinds(book.on_quote(quote("X", "100.0000000000000000000000000004"))) == [("stop_loss", "p")]
    assert kinds(book.on_quote(quote("X", "100.0000000000000000000000000006"))) == [("stop_loss", "s")]


def test_only_the_positions_of_the_ticking_market_fire():
    book = book_with(position("x", "long", "1", "100", "10", sl="90", symbol="X"),
                     position("y", "long", "1", "100", "10", sl="90", symbol="Y"))
    assert kinds(book.on_quote(quote("Y", "80", "81"))) == [("stop_loss", "y")]


# --- margin call and stop-out -----------------------------------------------------------------------------


def test_margin_call_is_emitted_once_then_cleared_once():
    # balance 1000, long 10 @ 100 with margin 200: level = (1000 + 10 × (bid − 100)) / 200 × 100.
    book = book_with(position("p", "long", "10", "100", "200"), balance="1000")
    assert book.on_quote(quote("X", "20", "21")) == []  # exactly 100 %: not below
    fired = book.on_quote(quote("X", "19.99", "20.5"))
    assert kinds(fired) == [("margin_call", "u")] and fired[0].margin_level == D("99.95")
    assert fired[0].position_id is None and fired[0].price is None
    assert book.on_quote(quote("X", "15", "16")) == []  # still below: not again
    fired = book.on_quote(quote("X", "20", "21"))
    assert kinds(fired) == [("margin_call_cleared", "u")] and fired[0].margin_level == D("100.00")
    assert book.on_quote(quote("X", "30", "31")) == []
    assert kinds(book.on_quote(quote("X", "19", "20"))) == [("margin_call", "u")]


def test_levels_are_judged_as_account_state_rounds_them():
    # level = 5 × bid. account_state rounds to 0.01, half-even: 99.995 % shows as 100.00 %, 99.99 % as 99.99 %.
    book = book_with(position("p", "long", "10", "100", "200"), balance="1000")
    assert book.on_quote(quote("X", "50")) == []
    assert book.on_quote(quote("X", "19.999")) == []  # 99.995 %: shown as 100.00, so no margin call yet
    assert kinds(book.on_quote(quote("X", "19.998"))) == [("margin_call", "u")]  # 99.99 %: now
    assert book.on_quote(quote("X", "15")) == []
    fired = book.on_quote(quote("X", "19.999"))  # back to a shown 100.00 %: cleared, though not quite 100
    assert kinds(fired) == [("margin_call_cleared", "u")] and fired[0].margin_level == D("100.00")


def test_a_single_market_stop_out_is_emitted_until_pending_and_again_after_a_release():
    # level < 50 % once 1000 + 10 × (bid − 100) < 100, i.e. bid < 10.
    book = book_with(position("p", "long", "10", "100", "200"), balance="1000")
    assert book.on_quote(quote("X", "10", "11")) == [Trigger(kind="margin_call", user_id="u", margin_level=D("50.00"),
                                                             quote=quote("X", "10", "11"))]
    fired = book.on_quote(quote("X", "9.5", "10"))
    assert kinds(fired) == [("stop_out", "u")] and fired[0].margin_level == D("47.50")
    assert book.on_quote(quote("X", "9", "10")) == []  # pending
    assert book.account("u").margin_level == D("45.00")
    assert book.worst_first("u") == ["p"]
    assert book.release_user("u") and not book.release_user("u")
    assert kinds(book.on_quote(quote("X", "9", "10"))) == [("stop_out", "u")]
    book.balance_changed("u", D("1000"))  # a balance change re-arms it too
    assert kinds(book.on_quote(quote("Y", "1", "2"))) == [("stop_out", "u")]  # any tick: the level did not move


def test_a_tick_can_bring_the_margin_call_and_the_stop_out_at_once():
    book = book_with(position("p", "short", "10", "100", "200"), balance="1000")
    # short: level = (1000 + 10 × (100 − ask)) / 200 × 100; below 50 % once ask > 190.
    assert kinds(book.on_quote(quote("X", "190", "190.01"))) == [("margin_call", "u"), ("stop_out", "u")]


def test_a_multi_market_stop_out_on_a_tick_of_either_market():
    # balance 1000; X: long 10 @ 100 (margin 200); Y: short 10 @ 50 (margin 100). used 300, stop-out below 150:
    # 1000 + 10 × (bidX − 100) + 10 × (50 − askY) < 150.
    x = position("x", "long", "10", "100", "200", symbol="X")
    y = position("y", "short", "10", "50", "100", symbol="Y")
    book = book_with(x, y, balance="1000")
    assert book.on_quote(quote("X", "100")) == [] and book.on_quote(quote("Y", "50")) == []
    assert book.on_quote(quote("X", "60")) == []  # 1000 − 400 = 600: 200 %
    assert book.on_quote(quote("Y", "80")) == []  # 600 − 300 = 300: 100 %
    assert book.on_quote(quote("X", "120")) == []  # 300 + 600 = 900 (Y's threshold is now stale, and safe)
    assert book.on_quote(quote("Y", "120")) == []  # 900 − 400 = 500: 166.67 %
    assert kinds(book.on_quote(quote("X", "90"))) == [("margin_call", "u")]  # 1000 − 100 − 700 = 200: 66.67 %
    assert kinds(book.on_quote(quote("X", "84.99"))) == [("stop_out", "u")]  # 1000 − 150.1 − 700 = 149.9


def test_a_multi_market_stop_out_reached_through_the_other_market():
    x = position("x", "long", "10", "100", "200", symbol="X")
    y = position("y", "short", "10", "50", "100", symbol="Y")
    book = book_with(x, y, balance="1000")
    book.on_quote(quote("X", "100"))
    book.on_quote(quote("Y", "50"))
    assert book.on_quote(quote("X", "40")) == []  # 1000 − 600 = 400: 133 %
    assert kinds(book.on_quote(quote("Y", "75.01"))) == [("margin_call", "u"), ("stop_out", "u")]  # 149.9
    assert book.account("u").margin_level == D("49.97")


def test_the_stop_is_applied_before_the_stop_out():
    # Without the stop this tick would take the account to 40 % (1000 − 920 = 80 over 200).
    # The stop closes the position instead: no margin in use, so no stop-out (and no margin call).
    book = book_with(position("p", "long", "10", "100", "200", sl="10"), balance="1000")
    assert kinds(book.on_quote(quote("X", "8", "9"))) == [("stop_loss", "p")]


def test_a_stop_that_closes_one_position_lifts_the_level_of_the_rest():
    # level = (1000 + 20 × (bid − 100)) / 400 while both are open.
    a = position("a", "long", "10", "100", "200", sl="69")
    b = position("b", "long", "10", "100", "200")
    book = book_with(a, b, balance="1000")
    assert book.on_quote(quote("X", "75")) == []  # 125 %
    assert kinds(book.on_quote(quote("X", "69.5"))) == [("margin_call", "u")]  # 97.5 %
    fired = book.on_quote(quote("X", "69"))  # a's stop: equity 380 over b's 200 alone
    assert kinds(fired) == [("stop_loss", "a"), ("margin_call_cleared", "u")]
    assert fired[1].margin_level == D("190.00") == book.account("u").margin_level
    book.position_closed("a", balance=D("690"))  # realised (69 − 100) × 10: same equity, 190 %
    assert book.account("u").margin_level == D("190.00") and book.on_quote(quote("X", "69")) == []


def test_a_partial_close_moves_the_thresholds():
    # Before: balance 300, long 10 @ 100, margin 100: equity = 10 × bid − 700 → margin call below 80.
    # Partial close of 5 at 90 (realised −50): balance 250, long 5, margin 50: equity = 5 × bid − 250 →
    # margin call below 60 and stop-out below 55.
    book = book_with(position("p", "long", "10", "100", "100"), balance="300")
    assert book.on_quote(quote("X", "90")) == []
    book.position_updated(position("p", "long", "5", "100", "50"))
    book.balance_changed("u", D("250"))
    assert book.on_quote(quote("X", "79")) == []  # would have been a margin call before
    assert book.on_quote(quote("X", "60")) == []  # exactly 100 %
    assert kinds(book.on_quote(quote("X", "59.99"))) == [("margin_call", "u")]
    assert book.on_quote(quote("X", "55")) == []  # exactly 50 %
    fired = book.on_quote(quote("X", "54.99"))
    assert kinds(fired) == [("stop_out", "u")] and fired[0].margin_level == D("49.90")


def test_a_market_without_a_quote_counts_at_the_entry_price():
    x = position("x", "long", "10", "100", "200", symbol="X")
    y = position("y", "long", "10", "100", "200", symbol="Y")  # never quoted
    book = book_with(x, y, balance="1000")
    # used 400, equity 1000 + 10 × (bidX − 100): stop-out below 200, i.e. bidX < 20.
    assert kinds(book.on_quote(quote("X", "50"))) == []
    assert book.account("u").margin_level == D("125.00")
    assert kinds(book.on_quote(quote("X", "19"))) == [("margin_call", "u"), ("stop_out", "u")]


def test_a_hedged_account_is_stopped_out_by_a_widening_spread():
    # long 10 and short 10 @ 100, margin 200 each: the prices cancel out, only the spread counts.
    book = book_with(position("L", "long", "10", "100", "200"), position("S", "short", "10", "100", "200"),
                     balance="500")
    # equity = 500 − 10 × spread; margin call below 400 (spread > 10), stop-out below 200 (spread > 30).
    assert book.on_quote(quote("X", "100", "101")) == []
    assert book.on_quote(quote("X", "95", "105")) == []  # spread 10: exactly 100 %
    assert kinds(book.on_quote(quote("X", "95", "105.01"))) == [("margin_call", "u")]
    assert kinds(book.on_quote(quote("X", "80", "110.01"))) == [("stop_out", "u")]


def test_a_net_long_hedge_is_caught_when_the_spread_outgrows_the_allowance():
    # long 30, short 10 @ 100 (margins 600 + 200): equity = B + 30 × (bid − 100) + 10 × (100 − ask).
    book = book_with(position("L", "long", "30", "100", "600"), position("S", "short", "10", "100", "200"),
                     balance="1000")
    assert book.on_quote(quote("X", "100", "100.01")) == []  # allowance now 0.02 of spread
    # same bid, spread 50: equity = 1000 − 500 = 500 < 800 → margin call, though the bid did not move
    assert kinds(book.on_quote(quote("X", "100", "150"))) == [("margin_call", "u")]


def test_a_net_long_hedge_loses_to_a_wider_spread_within_the_allowance():
    # long 30, short 10 @ 100 (margins 600 + 200), balance 905: equity = 905 + 30 × (bid − 100) + 10 × (100 − ask).
    book = book_with(position("L", "long", "30", "100", "600"), position("S", "short", "10", "100", "200"),
                     balance="905")
    assert book.on_quote(quote("X", "100", "110")) == []  # 805 over 800; the allowance becomes 20
    assert kinds(book.on_quote(quote("X", "100", "115"))) == [("margin_call", "u")]  # 755: only the ask moved


# --- loading and errors -------------------------------------------------------------------------------------


def test_a_user_loaded_below_stop_out_is_caught_at_the_first_tick_of_any_market():
    book = RiskBook()
    book.on_quote(quote("X", "5"))
    book.load([position("p", "long", "10", "100", "200")], {"u": D("1000"), "v": D("5")})
    fired = book.on_quote(quote("Z", "1"))
    assert kinds(fired) == [("margin_call", "u"), ("stop_out", "u")] and fired[1].margin_level == D("25.00")


def test_bad_input_is_refused():
    book = RiskBook()
    with pytest.raises(ValueError, match="no balance"):
        book.load([position("p", "long", "1", "100", "10")], {})
    with pytest.raises(KeyError, match="unknown user"):
        book.position_opened(position("p", "long", "1", "100", "10"))
    book.balance_changed("u", D("100"))
    with pytest.raises(ValueError, match="must be positive"):
        book.position_opened(position("p", "long", "0", "100", "10"))
    with pytest.raises(KeyError, match="unknown user"):
        book.position_updated(position("p", "long", "1", "100", "10", user="nobody"))
    book.position_updated(position("p", "long", "1", "100", "10", sl="90"))  # unknown: opened (event replay)
    book.position_opened(position("p", "long", "1", "100", "10"))  # known: updated, the stop-loss dropped
    assert len(book) == 1 and book.on_quote(quote("X", "80")) == []
    with pytest.raises(ValueError, match="keeps its user, symbol and side"):
        book.position_updated(position("p", "short", "1", "100", "10"))
    assert "p" in book and not book.release("p") and not book.release_user("nobody")


def test_numbers_beyond_exact_arithmetic_are_refused_or_watched_on_every_tick():
    book = book_with(position("p", "long", "10", "100", "200"), balance="1000")
    huge = "1" + "3" * 60
    with pytest.raises(Inexact):
        book.position_opened(position("q", "long", huge, "1." + "7" * 60, "1"))
    with pytest.raises(Inexact):
        book.position_updated(position("p", "long", huge, "1." + "7" * 60, "1"))
    assert "q" not in book and "p" in book and book.account("u").used_margin == D("200")
    # A balance with 102 significant digits: the index cannot be exact, so the user is checked on every tick.
    book.balance_changed("u", D("1000." + "0" * 97 + "1"))
    assert book.on_quote(quote("X", "20.01")) == []
    checks = book.verifications
    assert book.on_quote(quote("X", "20.02")) == [] and book.verifications == checks + 1
    assert kinds(book.on_quote(quote("X", "19.99"))) == [("margin_call", "u")]


# --- what the book holds -----------------------------------------------------------------------------------


def test_the_book_holds_no_user_once_every_position_is_closed():
    book = RiskBook()
    book.load([], {})
    for i in range(1000):
        user = f"u{i}"
        book.balance_changed(user, D("10000"))  # as the risk runner does before an `opened` event
        book.position_opened(position(f"p{i}", "long", "1", "100", "10", user=user, sl="50"))
        book.on_quote(quote("X", "100"))
    assert book.users() == 1000
    for i in range(1000):
        book.position_closed(f"p{i}", D("10000"))
    book.on_quote(quote("X", "100"))
    assert book.users() == 0 and len(book) == 0
    assert book.on_quote(quote("X", "40")) == []  # no stop of a closed position fires


def test_a_user_with_only_a_balance_change_is_dropped_at_the_next_tick():
    book = book_with(position("p", "long", "1", "100", "10", user="trader"))
    book.balance_changed("watcher", D("500"))  # a snapshot event of a user with nothing open
    book.on_quote(quote("X", "100"))
    assert book.users() == 1


def test_a_user_whose_margin_call_is_out_keeps_it_until_it_is_cleared():
    book = book_with(position("p", "long", "10", "100", "1000"), balance="1000")
    assert kinds(book.on_quote(quote("X", "95"))) == [("margin_call", "u")]
    book.position_closed("p", D("950"))
    assert kinds(book.on_quote(quote("X", "95"))) == [("margin_call_cleared", "u")]
    assert book.users() == 0


def test_the_load_keeps_only_users_with_open_positions():
    book = RiskBook()
    book.load([position("p", "long", "1", "100", "10", user="a")], {f"u{i}": D("1") for i in range(500)} | {"a": D(5)})
    assert book.users() == 1


# --- taking accounts in and letting them go (the instance that owns a user's partition checks them) ---------


def test_accounts_taken_in_are_checked_beside_the_rest_and_replace_what_the_book_held_of_those_users():
    book = book_with(position("a1", "long", "1", "100", "10", user="a", sl="90"))
    book.add_accounts([position("b1", "long", "1", "100", "10", user="b", sl="95"),
                       position("b2", "short", "1", "100", "10", user="b", sl="105")], {"b": D("1000")})
    assert book.user_ids() == ["a", "b"] and len(book) == 3
    assert kinds(book.on_quote(quote("X", "94"))) == [("stop_loss", "b1")]
    book.add_accounts([position("b2", "short", "1", "100", "10", user="b", sl="110")], {"b": D("2000")})
    assert book.positions_of("b") == ["b2"] and not book.is_pending("b2") and "b1" not in book
    assert book.on_quote(quote("X", "106")) == []  # b2's stop moved to 110 with the new load
    assert kinds(book.on_quote(quote("X", "89"))) == [("stop_loss", "a1")]
    with pytest.raises(ValueError):
        book.add_accounts([position("a1", "long", "1", "100", "10", user="c")], {"c": D("1")})
    with pytest.raises(ValueError):
        book.add_accounts([position("c1", "long", "1", "100", "10", user="c")], {})
    assert "c" not in book.user_ids()


def test_a_dropped_user_is_forgotten_whole_and_emits_nothing():
    book = book_with(position("p", "long", "10", "100", "1000", sl="50"),
                     position("q", "long", "10", "100", "1000", user="v", symbol="Y", sl="50"), balance="1000")
    assert kinds(book.on_quote(quote("X", "95"))) == [("margin_call", "u")]
    assert book.drop_user("u") and not book.drop_user("u")
    assert book.user_ids() == ["v"] and "p" not in book
    assert book.on_quote(quote("X", "40")) == []  # no stop, no margin call, no stop-out of the user let go
    assert book.on_quote(quote("X", "100")) == []  # and no clearing of the margin call it had
    book.add_accounts([position("p", "long", "10", "100", "1000", sl="50")], {"u": D("1000")})
    assert kinds(book.on_quote(quote("X", "95"))) == [("margin_call", "u")]  # taken back: checked afresh
    assert kinds(book.on_quote(quote("Y", "40"))) == [("stop_loss", "q")]


def test_a_margin_call_a_previous_owner_told_is_not_told_again_and_is_cleared_on_recovery():
    # balance 1000, long 10 @ 100 with margin 200: level = 5 × bid; below 100 % under a bid of 20.
    book = book_with(position("p", "long", "10", "100", "200"), balance="1000")
    assert book.margin_call_out("u") and not book.margin_call_out("nobody")
    assert book.on_quote(quote("X", "15", "16")) == []  # still below: the trader was told already
    assert kinds(book.on_quote(quote("X", "30", "31"))) == [("margin_call_cleared", "u")]
    recovered = book_with(position("p", "long", "10", "100", "200"), balance="1000")
    recovered.on_quote(quote("X", "30", "31"))
    recovered.margin_call_out("u")  # it recovered while the account changed hands
    assert kinds(recovered.on_quote(quote("X", "30", "31"))) == [("margin_call_cleared", "u")]


def test_the_account_from_the_book_s_sums_counts_a_position_whose_close_is_in_flight():
    """`GET /account` answered from the book: every open position uses its margin until it is closed, the one
    whose stop fired too, as when the account is summed position by position."""
    held = [position("p", "long", "2", "100", "20", sl="90"), position("q", "short", "1.5", "101", "15.15"),
            position("r", "long", "3", "50", "15", symbol="Y")]
    book = book_with(*held, balance="1000")
    assert kinds(book.on_quote(quote("X", "89.99", "90.10"))) == [("stop_loss", "p")]
    assert book.is_pending("p")
    book.on_quote(quote("Y", "52", "52.5"))
    summed = book.holdings("u")
    assert summed is not None
    balance, holdings = summed
    quotes = {"X": quote("X", "89.99", "90.10"), "Y": quote("Y", "52", "52.5")}
    assert account_state(balance, holdings, quotes) == account_state(D(1000), held, quotes)
    assert account_state(balance, holdings, quotes).used_margin == D("50.15")
