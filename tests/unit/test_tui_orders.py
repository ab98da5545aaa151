"""What the order ticket, the close dialog and the stops dialog accept, and what they say otherwise."""

from __future__ import annotations

from datetime import UTC, timedelta, timezone
from decimal import Decimal

import pytest

from cfd_client.models import Account, Order, Position
from cfd_tui.orders import (
    OrderPreview,
    ParsedTicket,
    ValidTicket,
    check_close,
    check_new_stops,
    check_order_edit,
    check_ticket,
    close_estimate,
    parse_expiry,
    parse_ticket,
    preview_order,
    suggested_price,
    validate_ticket,
)
from shared.contracts.quote import Quote
from shared.markets import MARKETS

SOL = MARKETS["SOL_USDC"]
QUOTE = Quote(symbol="SOL_USDC", bid=Decimal("184.90"), ask=Decimal("185.10"), mid=Decimal("185.000"), ts=1)
ACCOUNT = Account(currency="USD", balance=Decimal(10000), equity=Decimal(10000), used_margin=Decimal(0),
                  free_margin=Decimal(10000), margin_level=None, unrealized_pnl=Decimal(0))


def ticket(**fields):
    values = {"side": "long", "amount": "2", "in_usd": False, "leverage": "10", "stop_loss": "", "take_profit": ""}
    values.update(fields)
    return check_ticket(SOL, QUOTE, ACCOUNT, **values)


def test_a_valid_long_previews_margin_and_stop_out():
    checked = ticket(stop_loss="180", take_profit="200")
    assert checked.errors == {}
    plan, preview = checked.plan, checked.preview
    assert plan.qty == Decimal(2) and plan.leverage == 10 and plan.stop_loss == Decimal(180)
    assert preview.price == Decimal("185.10") and preview.margin == Decimal("37.02")
    assert preview.commission == Decimal("0.37")  # 2 × 185.10 × 0.1 %
    assert preview.financing_per_day == Decimal("0.25")  # 370.20 × 25 % / 365
    assert preview.free_after == Decimal("9962.61")  # less the margin and the commission
    # equity + (p - 185.10) * 2 = 50 % of 37.02  →  p = 185.10 - (10000 - 18.51) / 2
    assert preview.stop_out is None  # 10,000 USD behind 2 SOL: the price would have to go below zero


def test_stop_out_estimate_for_a_position_that_uses_most_of_the_account():
    checked = ticket(amount="500", leverage="20")
    assert checked.errors == {}
    # margin 4,627.50; equity after the commission of 92.55: 9,907.45; cushion (9907.45 - 2313.75) / 500 = 15.1874
    assert checked.preview.stop_out == Decimal("185.10") - Decimal("15.1874")


@pytest.mark.parametrize("side", ["long", "short"])
def test_an_order_the_account_cannot_afford_has_a_shortfall_and_no_stop_out(side):
    checked = ticket(side=side, amount="1000", leverage="5")  # margin about 37,000 against 10,000 free
    preview = checked.preview
    assert checked.plan is None and "Not enough free margin" in checked.errors["amount"]
    assert preview.stop_out is None
    assert preview.shortfall == preview.margin + preview.commission - ACCOUNT.free_margin > 0


@pytest.mark.parametrize(("fields", "field", "words"), [
    ({"amount": "abc"}, "amount", "must be a number"),
    ({"amount": "1e"}, "amount", "must be a number"),
    ({"amount": ""}, "amount", "Enter a quantity"),
    ({"amount": "-1"}, "amount", "must be positive"),
    ({"amount": "0.001"}, "amount", "minimum quantity"),
    ({"amount": "1.005"}, "amount", "multiple of 0.01"),
    ({"leverage": "21"}, "leverage", "1 to 20"),
    ({"leverage": "0"}, "leverage", "1 to 20"),
    ({"leverage": "ten"}, "leverage", "whole number"),
    ({"stop_loss": "190"}, "stop_loss", "must be below"),
    ({"side": "short", "stop_loss": "180"}, "stop_loss", "must be above"),
    ({"take_profit": "150"}, "take_profit", "must be above"),
    ({"stop_loss": "180.001"}, "stop_loss", "multiples of 0.01"),
    ({"amount": "1000", "leverage": "1"}, "amount", "Not enough free margin"),
])
def test_bad_input_names_the_field_and_gives_no_plan(fields, field, words):
    checked = ticket(**fields)
    assert checked.plan is None
    assert words in checked.errors[field], checked.errors


def test_a_usd_amount_becomes_a_quantity_rounded_down_to_the_step():
    checked = ticket(amount="1,000", in_usd=True)
    assert checked.plan.qty == Decimal("5.40")  # 1000 / 185.10 = 5.402…
    assert ticket(amount="1", in_usd=True).errors["amount"].endswith("Enter a larger amount.")


def test_no_price_yet_means_no_order():
    checked = check_ticket(SOL, None, ACCOUNT, side="long", amount="1", in_usd=False, leverage="5", stop_loss="",
                           take_profit="")
    assert checked.plan is None and "no price" in checked.errors["price"]


# --- the three steps of a check: parse, validate, preview ---------------------------------------------------


def parse(**fields) -> ParsedTicket:
    values = {"amount": "2", "in_usd": False, "leverage": "10", "stop_loss": "", "take_profit": ""}
    values.update(fields)
    return parse_ticket(**values)


def test_parsing_reads_numbers_as_typed_and_leaves_the_rules_to_validation():
    parsed = parse(amount=" 1,000.5 ", leverage="10×", stop_loss="180", take_profit="")
    assert (parsed.amount, parsed.leverage, parsed.stop_loss, parsed.take_profit) == (
        Decimal("1000.5"), 10, Decimal(180), None)
    assert parsed.errors == {}
    assert parse(amount="-3", leverage="99").errors == {}  # numbers, however wrong: validation says so


def test_parsing_names_each_field_that_is_not_a_number():
    parsed = parse(amount="abc", in_usd=True, leverage="ten", stop_loss="19O")
    assert parsed.amount is None and parsed.leverage is None and parsed.stop_loss is None
    assert list(parsed.errors) == ["amount", "stop_loss", "leverage"]
    assert parsed.errors["amount"] == "The amount in USD must be a number, like 0.5."
    assert parsed.errors["leverage"] == "The leverage must be a whole number, like 10."
    assert parse(amount="").errors == {}  # empty is not a parse error: validation asks for it


def test_validation_holds_the_ticket_to_the_market_rules():
    valid = validate_ticket(SOL, "long", QUOTE, parse(stop_loss="180"))
    assert valid.errors == {} and (valid.price, valid.qty, valid.leverage) == (Decimal("185.10"), Decimal(2), 10)
    valid = validate_ticket(SOL, "long", QUOTE, parse(amount="0.001", leverage="21", stop_loss="190"))
    assert valid.qty == Decimal("0.001") and valid.leverage is None  # the preview still shows the quantity
    assert "1 to 20" in valid.errors["leverage"] and "minimum quantity" in valid.errors["amount"]
    assert "must be below" in valid.errors["stop_loss"]
    assert validate_ticket(SOL, "long", QUOTE, parse(amount="")).errors == {"amount": "Enter a quantity."}


def test_validation_turns_usd_into_whole_quantity_steps_at_the_opening_side():
    assert validate_ticket(SOL, "long", QUOTE, parse(amount="1000", in_usd=True)).qty == Decimal("5.40")  # ask
    assert validate_ticket(SOL, "short", QUOTE, parse(amount="1000", in_usd=True)).qty == Decimal("5.40")  # bid
    valid = validate_ticket(SOL, "short", QUOTE, parse(amount="1", in_usd=True))
    assert valid.price == Decimal("184.90") and valid.qty == Decimal(0) and "larger amount" in valid.errors["amount"]


def test_validation_without_a_price_still_checks_the_leverage_but_not_the_amount():
    valid = validate_ticket(SOL, "long", None, parse(amount="", leverage="50"))
    assert valid.price is None and valid.qty is None
    assert list(valid.errors) == ["leverage", "price"]


def test_the_preview_shows_what_is_known_and_the_margin_once_the_order_is_valid():
    assert preview_order(ValidTicket(side="long", errors={"price": "none"}), ACCOUNT) == OrderPreview()
    sized = ValidTicket(side="long", errors={}, price=Decimal("185.10"), qty=Decimal(2), leverage=10)
    preview = preview_order(sized, ACCOUNT)
    assert (preview.notional, preview.margin, preview.free_after) == (Decimal("370.20"), Decimal("37.02"),
                                                                      Decimal("9962.98"))
    assert preview.stop_out is None and preview.shortfall is None  # 10,000 USD behind 2 SOL: out of reach
    without_account = preview_order(sized, None)
    assert without_account.margin == Decimal("37.02") and without_account.free_after is None
    bad_size = ValidTicket(side="long", errors={"amount": "step"}, price=Decimal("185.10"), qty=Decimal("1.005"),
                           leverage=10)
    preview = preview_order(bad_size, ACCOUNT)
    assert preview.qty == Decimal("1.005") and preview.margin is None


def test_the_preview_of_an_order_too_big_for_the_account_has_a_shortfall_not_a_stop_out():
    big = ValidTicket(side="short", errors={}, price=Decimal("184.90"), qty=Decimal(1000), leverage=5)
    preview = preview_order(big, ACCOUNT)
    assert preview.margin == Decimal("36980.00") and preview.shortfall == Decimal("26980.00")
    assert preview.stop_out is None and preview.free_after == Decimal("-26980.00")


POSITION = Position(id="p1", symbol="SOL_USDC", side="long", qty=Decimal(2), entry_price=Decimal("180"), leverage=5,
                    margin=Decimal(72), stop_loss=None, take_profit=None, status="open", opened_at=1, updated_at=1)


@pytest.mark.parametrize(("raw", "qty", "error"), [
    ("", None, None), ("2", None, None), ("0.5", Decimal("0.5"), None),
    ("3", None, "cannot close more"), ("0", None, "must be positive"), ("x", None, "must be a number"),
    ("0.005", None, "multiple"),
])
def test_close_quantities(raw, qty, error):
    got, message = check_close(POSITION, SOL, raw)
    assert got == qty
    assert (message is None) if error is None else (error in message)


def test_close_estimate_uses_the_closing_side_of_the_quote():
    assert close_estimate(POSITION, QUOTE, None) == Decimal("9.80")  # (184.90 - 180) * 2
    assert close_estimate(POSITION, QUOTE, Decimal(1)) == Decimal("4.90")


def test_new_stops_only_what_changed_and_empty_removes():
    held = Position(**{**{f: getattr(POSITION, f) for f in POSITION.__struct_fields__}, "stop_loss": Decimal(170)})
    changed, errors = check_new_stops(held, SOL, QUOTE, "", "199.5")
    assert errors == {} and changed == {"stop_loss": None, "take_profit": Decimal("199.5")}
    changed, errors = check_new_stops(held, SOL, QUOTE, "170", "")
    assert changed == {} and errors == {}
    _, errors = check_new_stops(held, SOL, QUOTE, "185", "")
    assert "below 184.90" in errors["stop_loss"]
    _, errors = check_new_stops(held, SOL, QUOTE, "abc", "")
    assert "must be a number" in errors["stop_loss"]


def test_new_stops_set_and_stop_the_trailing_distance_against_the_close_price():
    changed, errors = check_new_stops(POSITION, SOL, QUOTE, "", "", "2.50")
    assert errors == {} and changed == {"trailing_distance": Decimal("2.50")}
    trailing = Position(**{**{f: getattr(POSITION, f) for f in POSITION.__struct_fields__},
                           "stop_loss": Decimal("182.40"), "trailing_distance": Decimal("2.50")})
    assert check_new_stops(trailing, SOL, QUOTE, "182.40", "", "") == ({"trailing_distance": None}, {})
    assert check_new_stops(trailing, SOL, QUOTE, "182.40", "") == ({}, {})  # not shown: left as it is
    _, errors = check_new_stops(POSITION, SOL, QUOTE, "", "", "0.005")
    assert "positive multiple of 0.01" in errors["trailing_distance"]
    _, errors = check_new_stops(POSITION, SOL, QUOTE, "", "", "190")  # more than the whole price
    assert "below the price it would close at (184.90)" in errors["trailing_distance"]


# --- pending orders ---------------------------------------------------------------------------------------

NOW_MS = 1_767_225_600_000  # 2026-01-01 00:00:00 UTC


def pending(**fields):
    values = {"side": "long", "amount": "2", "in_usd": False, "leverage": "5", "stop_loss": "", "take_profit": "",
              "kind": "limit", "price": "95", "expiry": "", "now_ms": NOW_MS, "tz": UTC}
    values.update(fields)
    return check_ticket(SOL, QUOTE, ACCOUNT, **values)


def test_a_buy_limit_is_valued_at_its_own_price_and_is_good_till_cancelled():
    checked = pending(stop_loss="90", take_profit="110", trailing="1.50")
    assert checked.errors == {}
    plan, preview = checked.plan, checked.preview
    assert (plan.kind, plan.price, plan.qty, plan.leverage, plan.expires_at) == ("limit", Decimal(95), Decimal(2), 5,
                                                                                  None)
    assert (plan.stop_loss, plan.take_profit, plan.trailing_distance) == (Decimal(90), Decimal(110), Decimal("1.50"))
    assert preview.price == Decimal(95) and preview.margin == Decimal("38.00")  # 2 × 95 / 5, not at the ask
    assert preview.stop_out is None and not preview.reached


def test_a_pending_orders_stops_are_checked_against_its_price_not_the_quote():
    assert "must be below 95" in pending(stop_loss="96").errors["stop_loss"]  # below the ask, above the price
    assert pending(kind="stop", price="200", stop_loss="190").errors == {}  # above the ask 185.10: fine
    assert "must be above 200" in pending(kind="stop", price="200", take_profit="195").errors["take_profit"]


@pytest.mark.parametrize(("fields", "field", "words"), [
    ({"price": ""}, "price", "Enter the price"),
    ({"price": "abc"}, "price", "order price must be a number"),
    ({"price": "95.005"}, "price", "multiples of 0.01"),
    ({"price": "-1"}, "price", "positive price"),
    ({"expiry": "soon"}, "expires_at", "duration like 30m"),
    ({"expiry": "2025-12-31 23:00"}, "expires_at", "That time has passed"),
    ({"expiry": "25:00"}, "expires_at", "not a time"),
    ({"trailing": "95"}, "trailing_distance", "below the price it would close at (95)"),
    ({"amount": "0.001"}, "amount", "minimum quantity"),
])
def test_bad_pending_input_names_the_field(fields, field, words):
    checked = pending(**fields)
    assert checked.plan is None and words in checked.errors[field], checked.errors


def test_a_pending_order_the_account_cannot_afford_now_is_placed_with_a_warning():
    checked = pending(amount="1000", leverage="1")  # 95,000 of margin against 10,000: judged when it triggers
    assert checked.errors == {} and checked.plan is not None
    assert checked.preview.shortfall == Decimal(85095)  # and 95 of commission (0.1 % of 95,000)


def test_a_pending_order_the_market_is_already_past_fills_at_the_next_tick():
    assert pending(price="190").preview.reached  # a buy limit above the ask 185.10
    assert not pending(kind="stop", price="190").preview.reached
    assert pending(kind="stop", price="185", side="long").preview.reached  # the ask is at or above it
    assert pending(side="short", kind="limit", price="184").preview.reached  # the bid 184.90 is above it


def test_a_usd_amount_of_a_pending_order_buys_at_its_price():
    assert pending(amount="1000", in_usd=True).plan.qty == Decimal("10.52")  # 1000 / 95


def test_a_market_orders_trailing_distance_is_checked_against_the_close_price():
    assert ticket(trailing="2").plan.trailing_distance == Decimal(2)
    assert "below the price it would close at (184.90)" in ticket(trailing="185").errors["trailing_distance"]
    assert ticket(trailing="2", expiry="1h", price="95").plan.kind == "market"  # a market order has neither


@pytest.mark.parametrize(("raw", "expires"), [
    ("", None), ("GTC", None), (" gtc ", None),
    ("30m", NOW_MS + 30 * 60_000), ("1h", NOW_MS + 3_600_000), ("2d", NOW_MS + 2 * 86_400_000),
    ("1w", NOW_MS + 7 * 86_400_000),
    ("17:30", NOW_MS + (17 * 60 + 30) * 60_000),
    ("2026-01-02 09:15", NOW_MS + 86_400_000 + (9 * 60 + 15) * 60_000),
])
def test_expiry_as_typed(raw, expires):
    assert parse_expiry(raw, NOW_MS, UTC) == expires


def test_a_time_of_day_already_past_means_tomorrow_in_the_traders_time_zone():
    noon = NOW_MS + 12 * 3_600_000
    assert parse_expiry("09:00", noon, UTC) == NOW_MS + 86_400_000 + 9 * 3_600_000
    berlin = timezone(timedelta(hours=1))  # 09:00 in UTC+1 is 08:00 UTC
    assert parse_expiry("09:00", NOW_MS, berlin) == NOW_MS + 8 * 3_600_000


def test_the_suggested_price_waits_one_percent_away_on_the_orders_side():
    assert suggested_price("long", "limit", QUOTE, SOL) == Decimal("183.24")  # below the ask 185.10
    assert suggested_price("long", "stop", QUOTE, SOL) == Decimal("186.96")  # above it
    assert suggested_price("short", "limit", QUOTE, SOL) == Decimal("186.75")  # above the bid 184.90
    assert suggested_price("short", "stop", QUOTE, SOL) == Decimal("183.05")
    for side, kind in (("long", "limit"), ("long", "stop"), ("short", "limit"), ("short", "stop")):
        assert not pending(side=side, kind=kind, price=str(suggested_price(side, kind, QUOTE, SOL))).preview.reached


ORDER = Order(id="o1", symbol="SOL_USDC", side="long", type="limit", qty=Decimal(2), price=Decimal(95), leverage=5,
              stop_loss=Decimal(90), status="working", created_at=NOW_MS, updated_at=NOW_MS)
SHOWN = {"price": "95", "qty": "2", "stop_loss": "90", "take_profit": "", "trailing_distance": "", "expires_at": ""}


def test_an_order_edit_sends_only_what_was_edited_and_checks_the_order_it_makes():
    assert check_order_edit(ORDER, SOL, SHOWN, SHOWN, NOW_MS, UTC) == ({}, {})
    changes, errors = check_order_edit(ORDER, SOL, {**SHOWN, "price": "96.5", "expires_at": "1h", "stop_loss": ""},
                                       SHOWN, NOW_MS, UTC)
    assert errors == {} and changes == {"price": Decimal("96.5"), "expires_at": NOW_MS + 3_600_000,
                                        "stop_loss": None}
    _, errors = check_order_edit(ORDER, SOL, {**SHOWN, "price": "89"}, SHOWN, NOW_MS, UTC)  # under its stop-loss
    assert "stop-loss must be below 89" in errors["stop_loss"]
    _, errors = check_order_edit(ORDER, SOL, {**SHOWN, "qty": ""}, SHOWN, NOW_MS, UTC)
    assert errors == {"qty": "Enter the quantity."}
    _, errors = check_order_edit(ORDER, SOL, {**SHOWN, "qty": "0.005"}, SHOWN, NOW_MS, UTC)
    assert "minimum quantity" in errors["qty"]
