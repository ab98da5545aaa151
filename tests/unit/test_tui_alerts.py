"""Alerts in the terminal: the dialog's checks (the platform's rules) and words, and the price alert dialog
against `FakeBroker`: its price follows the bid until one is typed, its condition follows the price typed until
the trader chooses it; and an alert frame's toast."""

from __future__ import annotations

import asyncio
from decimal import Decimal

from fake_broker import FakeBroker
from textual import events
from textual.widgets import Input, RadioButton

from cfd_client.models import Alert, AlertFrame
from cfd_tui.alerts import check_margin_alert, check_price_alert, describe_alert, suggested_condition, when_words
from cfd_tui.app import create_app
from cfd_tui.notices import alert_notice
from cfd_tui.screens.dashboard import DashboardScreen
from cfd_tui.screens.new_alert import NewAlertScreen
from shared.markets import MARKETS

SOL = MARKETS["SOL_USDC"]


def alert(**fields) -> Alert:
    base = {"id": "a1", "kind": "price", "symbol": "SOL_USDC", "condition": "above", "price": Decimal("190"),
            "notify": ["ws"], "status": "active", "created_at": 0}
    return Alert(**{**base, **fields})


def test_a_price_alert_takes_a_positive_price_on_the_markets_tick():
    assert check_price_alert(SOL, "190.05", "") == (Decimal("190.05"), {})
    assert check_price_alert(SOL, "1,190.10", "")[0] == Decimal("1190.10")
    assert "multiple of 0.01" in check_price_alert(SOL, "190.005", "")[1]["price"]
    assert "positive" in check_price_alert(SOL, "0", "")[1]["price"]
    assert "must be a number" in check_price_alert(SOL, "abc", "")[1]["price"]
    assert "Enter the price" in check_price_alert(SOL, " ", "")[1]["price"]
    assert "at most 200" in check_price_alert(SOL, "190", "x" * 201)[1]["note"]


def test_a_margin_alert_takes_a_level_above_zero_and_at_most_100000():
    assert check_margin_alert("150", "") == (Decimal(150), {})
    assert check_margin_alert("120.5 %", "")[0] == Decimal("120.5")
    for wrong in ("0", "-5", "100001"):
        assert "above 0" in check_margin_alert(wrong, "")[1]["below"]


def test_the_condition_follows_the_price_against_the_bid():
    assert suggested_condition(Decimal(191), Decimal(190), "below") == "above"
    assert suggested_condition(Decimal(189), Decimal(190), "above") == "below"
    assert suggested_condition(Decimal(190), Decimal(190), "below") == "below"
    assert suggested_condition(None, Decimal(190), "above") == "above"


def test_alerts_in_words_and_their_toast():
    price = alert(note="take profit", notify=["ws", "mail"])
    assert describe_alert(price, SOL.price_tick) == "SOL/USDC bid at or above 190.00"
    assert when_words(price, SOL.price_tick) == "the SOL/USDC bid is at or above 190.00"
    margin = alert(kind="margin_level", symbol=None, condition=None, price=None, below=Decimal(120))
    assert describe_alert(margin) == "margin level below 120.00%"
    fired = alert_notice(AlertFrame(event="triggered", alert=price, price=Decimal("190.04")), SOL.price_tick)
    assert fired is not None and (fired.title, fired.severity) == ("Price alert", "warning")
    assert fired.message == "SOL/USDC bid 190.04: at or above 190.00. Note: take profit"
    level = alert_notice(AlertFrame(event="triggered", alert=margin, price=Decimal("118.2")))
    assert level is not None and level.message == "Margin level 118.20%: below 120.00%."
    assert alert_notice(AlertFrame(event="created", alert=price)) is None


async def until(pilot, condition, timeout: float = 3.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not condition():
        assert loop.time() < deadline, "timed out waiting for the screen"
        await pilot.pause(0.02)


async def test_the_dialog_follows_the_bid_until_a_price_is_typed_then_the_condition_follows_the_price():
    fake = FakeBroker()
    fake.add_user("ada@example.com")
    fake.sign_in_as("ada@example.com")
    app = create_app("http://broker.test", fake, session_store=False)
    async with app.run_test(size=(120, 36), notifications=True) as pilot:
        await until(pilot, lambda: isinstance(app.screen, DashboardScreen) and "SOL_USDC" in app.board.tickers)
        app.screen.choose_market("SOL_USDC")
        await pilot.press("a")
        await until(pilot, lambda: isinstance(app.screen, NewAlertScreen))
        field = app.screen.query_one("#alert-price", Input)
        above = app.screen.query_one("#condition-above", RadioButton)
        assert field.value == f"{app.board.tickers['SOL_USDC'].bid:.2f}"
        fake.push_price("SOL_USDC", Decimal("186.00"), Decimal("186.10"))  # the bid moves: the price with it
        await until(pilot, lambda: field.value == f"{app.board.tickers['SOL_USDC'].bid:.2f}"
                    and app.board.tickers["SOL_USDC"].bid > 185)
        bid = app.board.tickers["SOL_USDC"].bid

        for key in "195":  # typed in one burst ("1" is under the bid, "195" over it): above, and the buttons agree
            app.post_message(events.Key(key, key))
        await until(pilot, lambda: app.screen.condition == "above" and above.value and field.value == "195")
        await pilot.pause(0.1)
        assert app.screen.condition == "above" and above.value
        assert not app.screen.query_one("#condition-below", RadioButton).value
        await pilot.press("ctrl+u", *"180")  # under the bid: the alert waits for a fall
        await until(pilot, lambda: app.screen.condition == "below" and not above.value)
        fake.push_price("SOL_USDC", Decimal("187.00"), Decimal("187.10"))  # a typed price stays
        await until(pilot, lambda: app.board.tickers["SOL_USDC"].bid > bid)
        await pilot.pause(0.1)
        assert field.value == "180"
        await pilot.press("ctrl+u", *"195")

        await pilot.press("f3")  # chosen: the price typed no longer moves it
        await until(pilot, lambda: app.screen.condition == "below")
        await pilot.press(*"5")
        await pilot.pause(0.1)
        assert app.screen.condition == "below" and field.value == "1955"
        await pilot.press("enter")
        await until(pilot, lambda: isinstance(app.screen, DashboardScreen))
        (created,) = await fake.alerts()
        assert (created.condition, created.price) == ("below", Decimal("1955"))
        assert any(title == "Alert set" for _, title, _ in app.notice_log)
