"""SVG snapshots of every screen, with frozen prices and times (`FakeBroker`, a fixed clock, UTC).

Every test runs in a pinned environment (`pinned_environment`): what the terminal, the shell or CI says about
colour, size, theme, time zone and locale must not change a pixel. Update after an intended change of the
look with: pytest tests/e2e/test_tui_snapshots.py --snapshot-update
"""

from __future__ import annotations

import asyncio
import time
from datetime import UTC
from decimal import Decimal

import pytest
from fake_broker import FIXED_NOW_MS, FakeBroker
from textual import constants
from textual.widgets import Input

from cfd_client.models import FeedState
from cfd_tui.app import CfdApp, create_app
from cfd_tui.screens.dashboard import DashboardScreen
from cfd_tui.widgets.candle_chart import CandleChart
from cfd_tui.widgets.positions_table import PositionsTable

SIZE = (140, 45)
EMAIL = "ada@example.com"

# Variables that change how a Textual app or Rich draws: colour switches (NO_COLOR, which CI may set, turns
# every colour to grey), terminal hints, and Textual's own switches.
UNSET_VARIABLES = ("NO_COLOR", "FORCE_COLOR", "CLICOLOR", "CLICOLOR_FORCE", "COLORTERM", "COLUMNS", "LINES",
                   "TTY_COMPATIBLE", "TTY_INTERACTIVE", "JUPYTER_COLUMNS", "JUPYTER_LINES", "TEXTUAL",
                   "TEXTUAL_COLOR_SYSTEM", "TEXTUAL_THEME", "TEXTUAL_ANIMATIONS", "TEXTUAL_FILTERS",
                   "TEXTUAL_FPS", "TEXTUAL_DEBUG", "TEXTUAL_DRIVER", "TEXTUAL_PRESS")


@pytest.fixture(autouse=True)
def pinned_environment(monkeypatch):
    """The same drawing whatever the environment: colour on, a known terminal, UTC, a UTF-8 C locale.

    Textual reads some variables when it is imported (theme, animations, filters, colour system): those are
    pinned on `textual.constants`, which the app reads when it is built.
    """
    for name in UNSET_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("TERM", "xterm-256color")
    monkeypatch.setenv("LANG", "C.UTF-8")
    monkeypatch.setenv("LC_ALL", "C.UTF-8")
    monkeypatch.setenv("TZ", "UTC")
    time.tzset()
    for name, value in (("FILTERS", ""), ("COLOR_SYSTEM", "auto"), ("TEXTUAL_ANIMATIONS", "full"),
                        ("DEBUG", False), ("DRIVER", None), ("PRESS", "")):
        monkeypatch.setattr(constants, name, value)
    # a focused field's cursor blinks every 0.5 s: on a busy machine the picture caught either phase
    monkeypatch.setattr(Input, "_toggle_cursor", lambda field: setattr(field, "_cursor_visible", True))
    yield
    monkeypatch.undo()
    time.tzset()


def frozen_app(fake: FakeBroker, *, signed_in: bool = True) -> CfdApp:
    if signed_in:
        fake.add_user(EMAIL, "correct horse battery", "Ada Lovelace")
        fake.sign_in_as(EMAIL)
    app = create_app("http://broker.test", fake, session_store=False, clock=lambda: FIXED_NOW_MS / 1000,
                     tz=UTC, animate=False)
    app.theme = "textual-dark"  # not $TEXTUAL_THEME
    return app


async def until(pilot, condition, timeout: float = 5.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not condition():
        assert loop.time() < deadline, "timed out waiting for the screen"
        await pilot.pause(0.02)
    await pilot.pause(0.1)  # one more redraw tick


def dashboard_ready(app: CfdApp, positions: int = 0):
    def ready() -> bool:
        if not isinstance(app.screen, DashboardScreen) or len(app.board.tickers) < 5:
            return False
        return app.screen.query_one(PositionsTable).row_count == positions and app.portfolio.available is not None

    return ready


async def with_positions(fake: FakeBroker) -> None:
    await fake.open_position("SOL_USDC", "long", Decimal(12), 10, stop_loss=Decimal("175"),
                             take_profit=Decimal("200"))
    await fake.open_position("BTC_USDC", "short", Decimal("0.05"), 20)
    await fake.open_position("ETH_USDC", "long", Decimal("0.8"), 5)
    fake.push_price("SOL_USDC", Decimal("186.40"), Decimal("186.50"))
    fake.push_price("BTC_USDC", Decimal("96610.0"), Decimal("96611.0"))
    fake.push_price("ETH_USDC", Decimal("3441.20"), Decimal("3441.30"))


def test_sign_in(snap_compare):
    app = frozen_app(FakeBroker(), signed_in=False)
    assert snap_compare(app, terminal_size=SIZE, run_before=lambda pilot: until(pilot, lambda: app.screen.id
                                                                                 or app.screen.query("#email")))


def test_sign_up_with_errors(snap_compare):
    app = frozen_app(FakeBroker(), signed_in=False)

    async def run_before(pilot):
        await until(pilot, lambda: app.screen.query("#email"))
        await pilot.press("ctrl+n")
        # mounted, with its first field focused: the form's own on_mount must not move focus after the submit
        await until(pilot, lambda: app.focused is not None and app.focused.id == "name")
        app.screen.query_one("#email").value = "ada@"
        app.screen.query_one("#password").value = "short"
        app.screen.submit()
        await until(pilot, lambda: app.screen.query_one("#form-error").has_class("-shown"))

    assert snap_compare(app, terminal_size=SIZE, run_before=run_before)


def test_code_entry_with_resend_cooldown(snap_compare):
    fake = FakeBroker()
    app = frozen_app(fake, signed_in=False)

    async def run_before(pilot):
        from cfd_tui.screens.verify import VerifyScreen

        await until(pilot, lambda: app.screen.query("#email"))
        await app.push_screen(VerifyScreen(name="Ada", email=EMAIL, password="correct horse battery"))
        await pilot.press(*"111111")
        await until(pilot, lambda: "verify" in fake.requests)

    assert snap_compare(app, terminal_size=SIZE, run_before=run_before)


def test_dashboard_with_positions(snap_compare):
    fake = FakeBroker()
    app = frozen_app(fake)

    async def run_before(pilot):
        await with_positions(fake)
        await until(pilot, dashboard_ready(app, positions=3))
        app.screen.choose_market("SOL_USDC")
        await until(pilot, lambda: "candles SOL_USDC 1m" in fake.requests)

    assert snap_compare(app, terminal_size=SIZE, run_before=run_before)


def test_dashboard_with_a_stop_out_line(snap_compare):
    """A large SOL long at 20×: the stop-out column and the chart's stop-out line show where the account would be
    stopped out, as the platform's mark gives it."""
    fake = FakeBroker()
    app = frozen_app(fake)

    async def run_before(pilot):
        await fake.open_position("SOL_USDC", "long", Decimal(1000), 20)
        await until(pilot, dashboard_ready(app, positions=1))
        app.screen.choose_market("SOL_USDC")
        await until(pilot, lambda: "candles SOL_USDC 1m" in fake.requests)
        await until(pilot, lambda: any(m.stop_out_price for m in app.portfolio.marks.values()))
        mark, = app.portfolio.marks.values()
        table = app.screen.query_one(PositionsTable)
        assert str(table.get_cell(mark.id, "stop_out")) == f"{mark.stop_out_price:,.2f}"
        chart = app.screen.query_one(CandleChart)
        assert [(level.price, level.label) for level in chart.levels if level.kind == "stop_out"] == [
            (mark.stop_out_price, "stop-out")]

    assert snap_compare(app, terminal_size=SIZE, run_before=run_before)


@pytest.mark.parametrize("size", [(80, 24), (120, 30), (160, 45)], ids=["80x24", "120x30", "160x45"])
def test_dashboard_at_terminal_size(snap_compare, size):
    """From 80×24 up: every position's PnL and the whole account bar; the least important columns go first."""
    fake = FakeBroker()
    app = frozen_app(fake)

    async def run_before(pilot):
        await with_positions(fake)
        await until(pilot, dashboard_ready(app, positions=3))
        app.screen.choose_market("SOL_USDC")
        await until(pilot, lambda: "candles SOL_USDC 1m" in fake.requests)

    assert snap_compare(app, terminal_size=size, run_before=run_before)


def test_order_ticket_with_errors_at_80x24(snap_compare):
    fake = FakeBroker(deposit=Decimal(1000))
    app = frozen_app(fake)

    async def run_before(pilot):
        await until(pilot, dashboard_ready(app))
        app.screen.choose_market("SOL_USDC")
        await pilot.press("b")
        await until(pilot, lambda: app.screen.query("#amount"))
        app.screen.query_one("#amount").value = "100"
        app.screen.query_one("#leverage").value = "25"
        await pilot.press("enter")
        await until(pilot, lambda: app.screen.query_one("#leverage-error").has_class("-shown"))

    assert snap_compare(app, terminal_size=(80, 24), run_before=run_before)


def test_history_at_80x24(snap_compare):
    fake = FakeBroker()
    app = frozen_app(fake)

    async def run_before(pilot):
        await with_positions(fake)
        for position in list(await fake.positions("open")):
            await fake.close_position(position.id)
        await until(pilot, dashboard_ready(app))
        await pilot.press("h")
        await until(pilot, lambda: "closed 3" in str(app.screen.query_one("#history-summary").render()))

    assert snap_compare(app, terminal_size=(80, 24), run_before=run_before)


def test_dashboard_without_trading_while_reconnecting(snap_compare):
    fake = FakeBroker(trading=False)
    app = frozen_app(fake)

    async def run_before(pilot):
        await until(pilot, dashboard_ready(app))
        fake.set_feed_state(FeedState.RECONNECTING, "the server closed the feed")
        await until(pilot, lambda: app.feed_state is FeedState.RECONNECTING)

    assert snap_compare(app, terminal_size=SIZE, run_before=run_before)


def test_order_ticket_preview_and_errors(snap_compare):
    fake = FakeBroker()
    app = frozen_app(fake)

    async def run_before(pilot):
        await until(pilot, dashboard_ready(app))
        app.screen.choose_market("SOL_USDC")
        await pilot.press("b")
        await until(pilot, lambda: app.screen.query("#amount"))
        app.screen.query_one("#amount").value = "25"
        app.screen.query_one("#leverage").value = "10"
        app.screen.query_one("#stop-loss").value = "190"
        await pilot.press("enter")
        await until(pilot, lambda: app.screen.query_one("#stop-loss-error").has_class("-shown"))

    assert snap_compare(app, terminal_size=SIZE, run_before=run_before)


def test_order_ticket_confirmation(snap_compare):
    fake = FakeBroker()
    app = frozen_app(fake)

    async def run_before(pilot):
        await until(pilot, dashboard_ready(app))
        app.screen.choose_market("ETH_USDC")
        await pilot.press("s")
        await until(pilot, lambda: app.screen.query("#amount"))
        await pilot.press("f4")
        app.screen.query_one("#amount").value = "2500"
        app.screen.query_one("#take-profit").value = "3300"
        await pilot.press("enter")
        await until(pilot, lambda: app.screen.confirming)

    assert snap_compare(app, terminal_size=SIZE, run_before=run_before)


def test_history(snap_compare):
    fake = FakeBroker()
    app = frozen_app(fake)

    async def run_before(pilot):
        await with_positions(fake)
        for position in list(await fake.positions("open")):
            await fake.close_position(position.id)
        await until(pilot, dashboard_ready(app))
        await pilot.press("h")
        await until(pilot, lambda: "closed 3" in str(app.screen.query_one("#history-summary").render()))

    assert snap_compare(app, terminal_size=SIZE, run_before=run_before)


def test_help(snap_compare):
    app = frozen_app(FakeBroker())

    async def run_before(pilot):
        await until(pilot, dashboard_ready(app))
        await pilot.press("f1")
        await until(pilot, lambda: type(app.screen).__name__ == "HelpScreen")

    assert snap_compare(app, terminal_size=SIZE, run_before=run_before)


async def with_orders(fake: FakeBroker) -> None:
    """A trailing long and a plain short in SOL, and working orders in SOL and BTC."""
    await fake.open_position("SOL_USDC", "long", Decimal(12), 10, take_profit=Decimal("187.00"),
                             trailing_distance=Decimal("1.50"))
    await fake.open_position("BTC_USDC", "short", Decimal("0.05"), 20)
    await fake.place_order("SOL_USDC", "long", "limit", Decimal(5), Decimal("184.20"), 5, stop_loss=Decimal("180"),
                           expires_at=FIXED_NOW_MS + 3_600_000)
    await fake.place_order("BTC_USDC", "short", "stop", Decimal("0.01"), Decimal("95000.0"), 10,
                           trailing_distance=Decimal("500.0"))
    fake.push_price("SOL_USDC", Decimal("186.40"), Decimal("186.50"))  # the SOL stop-loss trails up


def test_dashboard_with_working_orders_and_chart_levels(snap_compare):
    """The orders view (`o`), and the chart's lines: the trailing stop-loss, take-profit, entry, buy limit."""
    fake = FakeBroker()
    app = frozen_app(fake)

    async def run_before(pilot):
        await with_orders(fake)
        await until(pilot, dashboard_ready(app, positions=2))
        app.screen.choose_market("SOL_USDC")
        await until(pilot, lambda: "candles SOL_USDC 1m" in fake.requests)
        await pilot.press("o")
        await until(pilot, lambda: app.screen.view == "orders" and len(app.portfolio.orders) == 2)

    assert snap_compare(app, terminal_size=SIZE, run_before=run_before)


def test_dashboard_with_working_orders_at_80x24(snap_compare):
    fake = FakeBroker()
    app = frozen_app(fake)

    async def run_before(pilot):
        await with_orders(fake)
        await until(pilot, dashboard_ready(app, positions=2))
        app.screen.choose_market("SOL_USDC")
        await until(pilot, lambda: "candles SOL_USDC 1m" in fake.requests)
        await pilot.press("o")
        await until(pilot, lambda: app.screen.view == "orders" and len(app.portfolio.orders) == 2)

    assert snap_compare(app, terminal_size=(80, 24), run_before=run_before)


def test_limit_order_ticket_at_80x24(snap_compare):
    fake = FakeBroker()
    app = frozen_app(fake)

    async def run_before(pilot):
        await until(pilot, dashboard_ready(app))
        app.screen.choose_market("SOL_USDC")
        await pilot.press("b")
        await until(pilot, lambda: app.screen.query("#amount"))
        await pilot.press("f5")
        app.screen.query_one("#amount").value = "2"
        app.screen.query_one("#expiry").value = "4h"
        app.screen.query_one("#stop-loss").value = "180"
        await until(pilot, lambda: "(in 4h)" in str(app.screen.query_one("#ticket-preview").render()))

    assert snap_compare(app, terminal_size=(80, 24), run_before=run_before)


def test_limit_order_confirmation(snap_compare):
    fake = FakeBroker()
    app = frozen_app(fake)

    async def run_before(pilot):
        await until(pilot, dashboard_ready(app))
        app.screen.choose_market("ETH_USDC")
        await pilot.press("s")
        await until(pilot, lambda: app.screen.query("#amount"))
        await pilot.press("f5")
        app.screen.query_one("#amount").value = "0.5"
        app.screen.query_one("#take-profit").value = "3300"
        app.screen.query_one("#trailing").value = "25"
        await pilot.press("enter")
        await until(pilot, lambda: app.screen.confirming)

    assert snap_compare(app, terminal_size=SIZE, run_before=run_before)


def test_modify_order_dialog(snap_compare):
    fake = FakeBroker()
    app = frozen_app(fake)

    async def run_before(pilot):
        await with_orders(fake)
        await until(pilot, dashboard_ready(app, positions=2))
        await pilot.press("o")
        await until(pilot, lambda: app.screen.view == "orders" and len(app.portfolio.orders) == 2)
        app.screen.query_one("#orders").focus()
        await pilot.press("e")
        await until(pilot, lambda: app.screen.query("#order-price"))

    assert snap_compare(app, terminal_size=SIZE, run_before=run_before)


def test_close_all_confirmation_at_80x24(snap_compare):
    fake = FakeBroker()
    app = frozen_app(fake)

    async def run_before(pilot):
        await with_positions(fake)
        await until(pilot, dashboard_ready(app, positions=3))
        app.screen.choose_market("SOL_USDC")
        await pilot.press("C")
        await until(pilot, lambda: app.screen.query("#close-all"))

    assert snap_compare(app, terminal_size=(80, 24), run_before=run_before)


def test_history_of_orders(snap_compare):
    fake = FakeBroker(deposit=Decimal(1000))
    app = frozen_app(fake)

    async def run_before(pilot):
        await fake.place_order("SOL_USDC", "long", "limit", Decimal(1), Decimal(184), 5)
        await fake.place_order("BTC_USDC", "long", "limit", Decimal(1), Decimal("96000.0"), 2)
        cancelled = await fake.place_order("ETH_USDC", "short", "stop", Decimal(1), Decimal(3000), 5)
        await fake.cancel_order(cancelled.id)
        await fake.place_order("BNB_USDC", "long", "limit", Decimal(1), Decimal(600), 5,
                               expires_at=FIXED_NOW_MS + 60_000)
        fake.set_time(FIXED_NOW_MS + 60_000)
        fake.push_price("SOL_USDC", Decimal("183.00"), Decimal("183.10"))
        fake.push_price("BTC_USDC", Decimal("95000.0"), Decimal("95001.0"))
        fake.set_time(FIXED_NOW_MS)
        await until(pilot, dashboard_ready(app, positions=1))
        await pilot.press("h")
        await until(pilot, lambda: "orders 4" in str(app.screen.query_one("#history-summary").render()))
        await pilot.press("right")
        await until(pilot, lambda: app.screen.query_one("TabbedContent").active == "tab-orders")

    assert snap_compare(app, terminal_size=SIZE, run_before=run_before)


# --- alerts, API keys, the account, a forgotten password ------------------------------------------------------


async def with_alerts(fake: FakeBroker) -> None:
    """A price alert that fired (with a note, by mail too), one still waiting, and a margin-level alert."""
    await fake.create_alert("SOL_USDC", "above", Decimal("185.50"), note="breakout: buy the retest?", mail=True)
    await fake.create_alert("BTC_USDC", "below", Decimal("95000.0"))
    await fake.create_margin_alert(Decimal(150), note="add margin")
    fake.set_time(FIXED_NOW_MS + 90_000)
    fake.push_price("SOL_USDC", Decimal("185.60"), Decimal("185.70"))
    fake.set_time(FIXED_NOW_MS)


def test_price_alert_dialog(snap_compare):
    """`a` on the dashboard: the selected market's alert, its price typed over the bid (so: above)."""
    fake = FakeBroker()
    app = frozen_app(fake)

    async def run_before(pilot):
        await until(pilot, dashboard_ready(app))
        app.screen.choose_market("SOL_USDC")
        await pilot.press("a")
        await until(pilot, lambda: app.screen.query("#alert-price"))
        app.screen.query_one("#alert-price").value = "190.00"
        app.screen.query_one("#alert-note").value = "take some profit"
        await until(pilot, lambda: "Fires once" in str(app.screen.query_one("#alert-preview").render()))

    assert snap_compare(app, terminal_size=SIZE, run_before=run_before)


def test_alerts_at_80x24(snap_compare):
    """`A`: the active alerts, then the one that fired, with the bid that fired it; its toast."""
    fake = FakeBroker()
    app = frozen_app(fake)

    async def run_before(pilot):
        await until(pilot, dashboard_ready(app))
        await with_alerts(fake)
        await until(pilot, lambda: any(title == "Price alert" for _, title, _ in app.notice_log))
        await pilot.press("A")
        await until(pilot, lambda: app.screen.query("#alerts-table") and app.screen.query_one("#alerts-table")
                    .row_count == 3)

    assert snap_compare(app, terminal_size=(80, 24), run_before=run_before)


def test_new_api_key_shown_once(snap_compare):
    fake = FakeBroker()
    app = frozen_app(fake)

    async def run_before(pilot):
        await until(pilot, dashboard_ready(app))
        await pilot.press("k")
        await until(pilot, lambda: "api_keys" in fake.requests)
        await pilot.press("n")
        await until(pilot, lambda: app.screen.query("#key-name"))
        await pilot.press(*"grid bot")
        app.screen.query_one("#scope-trade").value = True
        app.screen.query_one("#key-name").focus()
        await pilot.press("enter")
        await until(pilot, lambda: str(app.screen.query_one("#key-secret").render()).startswith("cfdk_"))

    assert snap_compare(app, terminal_size=SIZE, run_before=run_before)


def test_revoke_api_key_at_80x24(snap_compare):
    """The keys (never their secrets), and the confirmation before one is revoked."""
    fake = FakeBroker()
    app = frozen_app(fake)

    async def run_before(pilot):
        await until(pilot, dashboard_ready(app))
        await fake.create_api_key("grid bot", ["read", "trade"])
        fake.set_time(FIXED_NOW_MS + 3_600_000)
        await fake.create_api_key("dashboard on the wall", ["read"])
        fake.set_time(FIXED_NOW_MS)
        await pilot.press("k")
        await until(pilot, lambda: app.screen.query("#keys-table") and app.screen.query_one("#keys-table")
                    .row_count == 2)
        await pilot.press("d")
        await until(pilot, lambda: app.screen.query("#revoke-key-dialog"))

    assert snap_compare(app, terminal_size=(80, 24), run_before=run_before)


def test_account_with_a_wrong_password_at_80x24(snap_compare):
    """`u`: the platform's answer under the field it is about."""
    fake = FakeBroker()
    app = frozen_app(fake)

    async def run_before(pilot):
        await until(pilot, dashboard_ready(app))
        await pilot.press("u")
        await until(pilot, lambda: app.screen.query("#current-password"))
        app.screen.query_one("#current-password").value = "not my password"
        app.screen.query_one("#new-password").value = "quiet lantern monsoon"
        app.screen.change_password()
        await until(pilot, lambda: app.screen.query_one("#current-password-error").has_class("-shown"))

    assert snap_compare(app, terminal_size=(80, 24), run_before=run_before)


def test_reset_password_with_a_wrong_code(snap_compare):
    """Sign-in, `Ctrl+F`, the email: the code and the new password; a wrong code is said so."""
    fake = FakeBroker()
    app = frozen_app(fake, signed_in=False)

    async def run_before(pilot):
        await until(pilot, lambda: app.screen.query("#email"))
        app.screen.query_one("#email").value = EMAIL
        await pilot.press("ctrl+f")
        await until(pilot, lambda: app.screen.query("#send"))
        await pilot.press("enter")
        await until(pilot, lambda: app.screen.query("#otp"))
        await pilot.press(*"111111", *"quiet lantern monsoon", "enter")
        await until(pilot, lambda: "reset_password" in fake.requests and app.screen.query_one("#form-error")
                    .has_class("-shown"))

    assert snap_compare(app, terminal_size=SIZE, run_before=run_before)
