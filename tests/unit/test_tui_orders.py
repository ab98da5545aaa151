"""What the order ticket, the close dialog and the stops dialog accept, and what they say otherwise."""

from __future__ import annotations

from decimal import Decimal

import pytest

from cfd_client.models import Account, Position
from cfd_tui.orders import (
    OrderPreview,
    ParsedTicket,
    ValidTicket,
    check_close,
    check_new_stops,
    check_ticket,
    close_estimate,
    parse_ticket,
    preview_order,
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
