"""What the order ticket, the close dialog and the stops dialog accept, and what they say otherwise."""

from __future__ import annotations

from decimal import Decimal

import pytest

from cfd_client.models import Account, Position
from cfd_tui.orders import check_close, check_new_stops, check_ticket, close_estimate
from shared.contracts import Quote
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
    assert preview.free_after == Decimal("9962.98")
    # equity + (p - 185.10) * 2 = 50 % of 37.02  →  p = 185.10 - (10000 - 18.51) / 2
    assert preview.stop_out is None  # 10,000 USD behind 2 SOL: the price would have to go below zero


def test_stop_out_estimate_for_a_position_that_uses_most_of_the_account():
    checked = ticket(amount="500", leverage="20")
    assert checked.errors == {}
    # margin 4,627.50; equity 10,000; cushion (10000 - 2313.75) / 500 = 15.3725
    assert checked.preview.stop_out == Decimal("185.10") - Decimal("15.3725")


@pytest.mark.parametrize("side", ["long", "short"])
def test_an_order_the_account_cannot_afford_has_a_shortfall_and_no_stop_out(side):
    checked = ticket(side=side, amount="1000", leverage="5")  # margin about 37,000 against 10,000 free
    preview = checked.preview
    assert checked.plan is None and "Not enough free margin" in checked.errors["amount"]
    assert preview.stop_out is None
    assert preview.shortfall == preview.margin - ACCOUNT.free_margin > 0


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
