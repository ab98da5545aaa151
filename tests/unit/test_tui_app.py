"""The TUI driven with Pilot against `FakeBroker` (fixed ticks, nothing on the network)."""

from __future__ import annotations

import asyncio
import gc
import io
import stat
import weakref
from datetime import UTC
from decimal import Decimal

import pytest
from fake_broker import FakeBroker
from rich.console import Console
from textual import events
from textual.widgets import Input

from cfd_client import NotSignedIn
from cfd_client.models import FeedState, Position, PositionFrame
from cfd_client.session import SessionStore
from cfd_tui import format as fmt
from cfd_tui.app import MAX_TOASTS, NOTICE_LOG_SIZE, SETTLE_AFTER_S, CfdApp, create_app, forget_removed_widgets
from cfd_tui.context import AppContext
from cfd_tui.local import cfd_command
from cfd_tui.messages import ChartChanged, StopsChanged
from cfd_tui.screens.dashboard import DashboardScreen
from cfd_tui.screens.history import HISTORY_PAGE, HistoryScreen
from cfd_tui.screens.signin import SignInScreen
from cfd_tui.screens.signup import SignUpScreen
from cfd_tui.screens.ticket import TicketScreen
from cfd_tui.screens.verify import VerifyScreen
from cfd_tui.widgets.account_bar import AccountBar
from cfd_tui.widgets.candle_chart import CandleChart
from cfd_tui.widgets.connection_status import ConnectionStatus
from cfd_tui.widgets.orders_table import OrdersTable
from cfd_tui.widgets.positions_table import PositionsTable
from cfd_tui.widgets.top_bar import TopBar
from cfd_tui.widgets.watchlist import Watchlist
from shared.contracts.rest import AuthSession

SIZE = (140, 45)
EMAIL = "ada@example.com"
PASSWORD = "correct horse battery"


def make(fake: FakeBroker, store: SessionStore | None = None, signed_in: bool = True,
         fake_clock: bool = False) -> CfdApp:
    """The app against `fake`; with `fake_clock`, on the fake's clock (times typed are judged as the fake does)
    and in UTC."""
    if signed_in:
        fake.add_user(EMAIL, PASSWORD)
        fake.sign_in_as(EMAIL)
    if fake_clock:
        return create_app("http://broker.test", fake, session_store=store or False, clock=lambda: fake.now_ms / 1000,
                          tz=UTC)
    return create_app("http://broker.test", fake, session_store=store or False)


async def until(pilot, condition, timeout: float = 3.0) -> None:
    """Pause until `condition()` holds (the screens update from workers and a timer, not at once)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not condition():
        assert loop.time() < deadline, "timed out waiting for the screen"
        await pilot.pause(0.02)


def on(app, screen_type) -> bool:
    return isinstance(app.screen, screen_type)


def ready(app) -> bool:
    """The dashboard is up with a price for every market."""
    return on(app, DashboardScreen) and len(app.board.tickers) == 5


async def type_into(pilot, selector: str, text: str) -> None:
    """Put `text` in a field as if typed (keys are tested where they matter: the code field)."""
    field = pilot.app.screen.query_one(selector, Input)
    field.focus()
    field.value = text


def error_text(app) -> str:
    return str(app.screen.query_one("#form-error").render())


def cell(table, row: str, column: str) -> str:
    return str(table.get_cell(row, column))


# --- sign-up, sign-in, session --------------------------------------------------------------------------


async def test_sign_up_checks_every_field_before_sending_then_takes_the_code(tmp_path):
    fake = FakeBroker()
    store = SessionStore(tmp_path / "cfg")
    app = create_app("http://broker.test", fake, session_store=store)
    async with app.run_test(size=SIZE) as pilot:
        await until(pilot, lambda: on(app, SignInScreen))
        await pilot.press("ctrl+n")
        await until(pilot, lambda: on(app, SignUpScreen))
        await type_into(pilot, "#name", "Ada")
        await type_into(pilot, "#email", "ada@")
        await type_into(pilot, "#password", "short")
        await pilot.press("enter")
        shown = error_text(app)
        assert "not a valid email" in shown and "at least 8 characters" in shown
        assert fake.requests == []  # nothing was sent
        await type_into(pilot, "#email", EMAIL)
        await type_into(pilot, "#password", PASSWORD)
        await pilot.press("enter")
        await until(pilot, lambda: on(app, VerifyScreen))
        assert fake.signups == [EMAIL]
        assert "Resend in" in str(app.screen.query_one("#resend").label)  # the visible cooldown
        await pilot.press("enter")  # an empty code is not sent
        assert "6 digits" in error_text(app) and "verify" not in fake.requests
        await pilot.press(*"65x4321")  # letters are refused by the field; six digits submit
        await until(pilot, lambda: "not right" in error_text(app))
        assert "not right" in error_text(app) and fake.requests.count("verify") == 1
        await pilot.press(*fake.otp)
        await until(pilot, lambda: on(app, DashboardScreen))
        assert app.user.email == EMAIL
    saved = store.load(app.api_url)
    assert saved is not None and saved.access_token == fake.token
    assert stat.S_IMODE(store.path.stat().st_mode) == 0o600


async def test_sign_in_errors_come_from_the_form_first_then_from_the_server():
    fake = FakeBroker()
    fake.add_user(EMAIL, PASSWORD)
    app = create_app("http://broker.test", fake, session_store=False)
    async with app.run_test(size=SIZE) as pilot:
        await until(pilot, lambda: on(app, SignInScreen))
        await type_into(pilot, "#email", "not-an-email")
        await pilot.press("enter", "enter")
        assert "not a valid email" in error_text(app) and "Enter your password" in error_text(app)
        assert fake.requests == []
        await type_into(pilot, "#email", EMAIL)
        await type_into(pilot, "#password", "wrong password")
        await pilot.press("enter")
        await until(pilot, lambda: "signin" in fake.requests and error_text(app))
        assert "email or the password is wrong" in error_text(app)
        await type_into(pilot, "#password", PASSWORD)
        await pilot.press("enter")
        await until(pilot, lambda: on(app, DashboardScreen))


async def test_keys_typed_in_one_burst_land_in_the_field_tab_moves_to():
    """A password manager's auto-type, or a paste, delivers `email TAB password ENTER` in one read."""
    fake = FakeBroker()
    fake.add_user(EMAIL, PASSWORD)
    app = create_app("http://broker.test", fake, session_store=False)
    async with app.run_test(size=SIZE) as pilot:
        await until(pilot, lambda: on(app, SignInScreen))
        burst = [events.Key(c, c) for c in EMAIL] + [events.Key("tab", None)]
        burst += [events.Key("space" if c == " " else c, c) for c in PASSWORD] + [events.Key("enter", "\r")]
        for key in burst:  # queued all at once, as the terminal driver does with one read
            app.post_message(key)
        await until(pilot, lambda: on(app, DashboardScreen))
        assert fake.requests[:1] == ["signin"]


async def test_keys_typed_in_one_burst_land_in_the_field_enter_moves_to():
    """A fast typist (or a test driving a real terminal) sends `name ENTER email ENTER password ENTER` before
    the form has handled the first Enter: each part must still land in its own field."""
    fake = FakeBroker()
    app = create_app("http://broker.test", fake, session_store=False)
    async with app.run_test(size=SIZE) as pilot:
        await until(pilot, lambda: on(app, SignInScreen))
        await pilot.press("ctrl+n")
        await until(pilot, lambda: on(app, SignUpScreen))
        burst = []
        for text in ("Ada Trader", EMAIL, PASSWORD):
            burst += [events.Key("space" if c == " " else c, c) for c in text] + [events.Key("enter", "\r")]
        for key in burst:  # queued all at once, as the terminal driver does with one read
            app.post_message(key)
        # the code field has the focus: the screen is up (quitting while it mounts would fail the test, not the app)
        await until(pilot, lambda: on(app, VerifyScreen) and getattr(app.focused, "id", None) == "otp")
        assert fake.signups == [EMAIL]


async def test_a_saved_session_skips_sign_in_and_an_ended_one_asks_again(tmp_path):
    fake = FakeBroker()
    user = fake.add_user(EMAIL, PASSWORD)
    token = fake.sign_in_as(EMAIL)
    fake.token = None
    store = SessionStore(tmp_path)
    store.save("http://broker.test/api/v1", AuthSession(user=user, access_token=token, expires_in=3600))
    app = create_app("http://broker.test", fake, session_store=store)
    async with app.run_test(size=SIZE) as pilot:
        await until(pilot, lambda: on(app, DashboardScreen))
        assert fake.token == token
        fake.sessions.clear()  # the server revokes the session
        fake.fail_next("account", NotSignedIn(401, "session_expired", "This session has ended; please sign in."))
        app.refresh_portfolio()
        await until(pilot, lambda: on(app, SignInScreen) and app.screen.query("#auth-message"))
        assert "expired" in str(app.screen.query_one("#auth-message").render())
    assert store.load("http://broker.test/api/v1") is None


async def test_sign_out_revokes_the_session_and_returns_to_sign_in(tmp_path):
    fake = FakeBroker()
    app = make(fake, SessionStore(tmp_path))
    async with app.run_test(size=SIZE) as pilot:
        await until(pilot, lambda: on(app, DashboardScreen))
        await pilot.press("x")
        await until(pilot, lambda: on(app, SignInScreen))
        assert "logout" in fake.requests and fake.token is None


async def test_the_code_screen_of_a_local_platform_says_how_to_read_the_code(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", "/usr/bin:/bin")  # `cfd` is not on the PATH after the README's set-up
    monkeypatch.delenv("CFD_DATA_DIR", raising=False)
    fake = FakeBroker()
    app = create_app("http://broker.test", fake, session_store=False, data_dir=tmp_path / "data")
    async with app.run_test(size=SIZE) as pilot:
        await until(pilot, lambda: on(app, SignInScreen))
        await app.push_screen(VerifyScreen(name="Ada", email=EMAIL, password=PASSWORD))
        await until(pilot, lambda: on(app, VerifyScreen))
        hint = str(app.screen.query_one(".auth-hint").render())
        assert f"{cfd_command()} mail outbox" in hint and "`cfd mail outbox`" not in hint
        assert str(tmp_path / "data" / "outbox") in hint


async def test_the_screenshot_command_saves_in_the_data_directory_and_says_where(tmp_path):
    fake = FakeBroker()
    app = make(fake)
    app.screenshot_dir = tmp_path / "data" / "screenshots"  # as `data_dir` sets it; the folder does not exist
    async with app.run_test(size=SIZE) as pilot:
        await until(pilot, lambda: ready(app))
        (command,) = [c for c in app.get_system_commands(app.screen) if c.title == "Screenshot"]
        command.callback()
        await until(pilot, lambda: any(title.startswith("Screenshot") for _, title, _ in app.notice_log))
        (saved,) = (tmp_path / "data" / "screenshots").glob("*.svg")
        assert ("information", "Screenshot", f"Saved to {saved}") in app.notice_log
        assert "<svg" in saved.read_text()[:500]
    app = create_app("http://broker.test", FakeBroker(), session_store=False, data_dir=tmp_path / "other")
    assert app.screenshot_dir == tmp_path / "other" / "screenshots"


# --- the dashboard ----------------------------------------------------------------------------------------


async def test_prices_move_on_the_watchlist_and_bursts_are_coalesced():
    fake = FakeBroker()
    app = make(fake)
    async with app.run_test(size=SIZE) as pilot:
        await until(pilot, lambda: ready(app))
        watchlist = app.screen.query_one(Watchlist)
        # the exchange's 184.95 / 185.05, quoted with SOL's 6 bps markup: the broker's 184.89 / 185.11
        await until(pilot, lambda: cell(watchlist, "SOL_USDC", "bid") == "184.89")
        before = app.market_version
        for i in range(200):  # 200 ticks at once: a few redraws, not 200
            fake.push_price("SOL_USDC", Decimal("185.00") + Decimal(i) / 100, Decimal("185.20") + Decimal(i) / 100)
        await until(pilot, lambda: cell(watchlist, "SOL_USDC", "bid") == "186.93")  # the exchange's 186.99
        assert 1 <= app.market_version - before <= 6
        assert app.board.tickers["SOL_USDC"].direction == 1


async def test_the_connection_state_is_always_on_screen():
    fake = FakeBroker()
    app = make(fake)
    async with app.run_test(size=SIZE) as pilot:
        await until(pilot, lambda: ready(app))
        status = app.screen.query_one(ConnectionStatus)
        assert "live" in str(status.render())
        fake.set_feed_state(FeedState.RECONNECTING, "the server closed the feed")
        await until(pilot, lambda: "reconnecting" in str(status.render()))
        assert status.has_class("-reconnecting")
        fake.set_feed_state(FeedState.LIVE)
        await until(pilot, lambda: "live" in str(status.render()))
        await pilot.press("h")
        await until(pilot, lambda: on(app, HistoryScreen))
        fake.set_feed_state(FeedState.RECONNECTING)
        await until(pilot, lambda: "reconnecting" in str(app.screen.query_one(ConnectionStatus).render()))


async def test_chart_interval_and_market_follow_the_keys():
    fake = FakeBroker()
    app = make(fake)
    async with app.run_test(size=SIZE) as pilot:
        await until(pilot, lambda: ready(app))
        dashboard = app.screen
        await pilot.press("down", "down", "3")
        await until(pilot, lambda: "candles SOL_USDC 15m" in fake.requests)
        assert (dashboard.symbol, dashboard.interval) == ("SOL_USDC", "15m")
        assert app.candle_channel == "candles.15m.SOL_USDC"
        await pilot.press("i")
        assert dashboard.interval == "1h"


async def test_a_click_in_the_watchlist_charts_that_market():
    fake = FakeBroker()
    app = make(fake)
    async with app.run_test(size=SIZE) as pilot:
        await until(pilot, lambda: ready(app))
        watchlist = app.screen.query_one(Watchlist)
        await pilot.click(Watchlist, offset=(2, 1 + 3))  # below the header, the fourth market
        assert app.screen.symbol == watchlist.symbols[3] == watchlist.selected_symbol
        await until(pilot, lambda: f"candles {watchlist.symbols[3]} 1m" in fake.requests)


def screen_text(app) -> str:
    """What the terminal shows now, as plain text."""
    width, height = app.size
    console = Console(width=width, height=height, file=io.StringIO(), force_terminal=True, record=True,
                      color_system="truecolor", legacy_windows=False, safe_box=False)
    console.print(app.screen._compositor.render_update(full=True, screen_stack=app._background_screens))
    return console.export_text(styles=False)


@pytest.mark.parametrize("size", [(80, 24), (100, 30), (120, 30), (160, 45)])
async def test_the_dashboard_shows_every_pnl_and_the_whole_account_bar_from_80x24(size):
    fake = FakeBroker()
    app = make(fake)
    async with app.run_test(size=size) as pilot:
        await until(pilot, lambda: ready(app))
        await fake.open_position("SOL_USDC", "long", Decimal(12), 10, stop_loss=Decimal(175))
        await fake.open_position("BTC_USDC", "short", Decimal("0.05"), 20)
        await fake.open_position("ETH_USDC", "long", Decimal("0.8"), 5)
        fake.push_price("SOL_USDC", "186.40", "186.50")
        fake.push_price("BTC_USDC", "96610.0", "96611.0")
        app.refresh_portfolio()
        await until(pilot, lambda: app.screen.query_one(PositionsTable).row_count == 3)
        await pilot.pause(0.2)
        lines = screen_text(app).splitlines()
        assert len(lines) == size[1]
        header = next(line for line in lines if " Market " in line and " Qty " in line)
        assert " PnL " in header + " "
        for position in app.portfolio.positions.values():
            pnl = fmt.money(app.portfolio.pnl(position), signed=True)
            row = next(line for line in lines if position.symbol.replace("_", "/") in line and position.side in line)
            assert pnl in row
        account = app.portfolio.account
        bar = lines[-2]  # above the footer
        for value in (account.equity, account.free_margin):
            assert fmt.money(value) in bar
        assert fmt.money(account.unrealized_pnl, signed=True) in bar
        assert fmt.percent(account.margin_level) in bar and "Equity" in bar
        assert all(line.rstrip() == line.rstrip()[:size[0]] for line in lines)


async def test_in_80x24_the_ticket_keeps_its_buttons_in_sight_while_confirming():
    fake = FakeBroker()
    app = make(fake)
    async with app.run_test(size=(80, 24)) as pilot:
        await open_ticket(pilot)
        await type_into(pilot, "#amount", "2")
        await pilot.pause()
        assert "Review order" in screen_text(app) and "Stop-out ≈" in screen_text(app)
        await pilot.press("enter")
        await until(pilot, lambda: app.screen.confirming)
        await pilot.pause(0.1)
        shown = screen_text(app)
        assert "Confirm — send order" in shown and "Open LONG 2.00 SOL" in shown
        await pilot.press("enter")
        await until(pilot, lambda: on(app, DashboardScreen) and app.portfolio.positions)


# --- trading ----------------------------------------------------------------------------------------------


async def open_ticket(pilot, symbol: str = "SOL_USDC") -> None:
    app = pilot.app
    await until(pilot, lambda: ready(app))
    app.screen.choose_market(symbol)
    await pilot.press("b")
    await until(pilot, lambda: on(app, TicketScreen))


def field_error(app, input_id: str) -> str | None:
    """The error shown beside a field (None when none is shown)."""
    box = app.screen.query_one(f"#{input_id}-error")
    return str(box.render()) if box.display and box.has_class("-shown") else None


async def test_ticket_shows_bad_input_and_sends_nothing():
    fake = FakeBroker()
    app = make(fake)
    async with app.run_test(size=SIZE) as pilot:
        await open_ticket(pilot)
        for field, text, words in (("amount", "abc", "must be a number"), ("leverage", "21", "1 to 20"),
                                   ("stop-loss", "190", "stop-loss must be below")):
            for name, value in (("amount", "1"), ("leverage", "5"), ("stop-loss", ""), (field, text)):
                await type_into(pilot, f"#{name}", value)
            await pilot.press("enter")
            assert words in field_error(app, field)
            assert app.screen.query_one(f"#{field}").has_class("-invalid")
            assert not app.screen.confirming
        assert "open_position" not in fake.requests


async def test_ticket_errors_sit_beside_their_fields_and_go_once_fixed():
    fake = FakeBroker()
    app = make(fake)
    async with app.run_test(size=SIZE) as pilot:
        await open_ticket(pilot)
        for name, value in (("amount", "abc"), ("leverage", ""), ("stop-loss", "190")):
            await type_into(pilot, f"#{name}", value)
        await pilot.press("enter")
        assert "must be a number" in field_error(app, "amount")
        assert "Choose a leverage from 1 to 20" in field_error(app, "leverage")
        assert "must be below" in field_error(app, "stop-loss")
        assert field_error(app, "take-profit") is None and error_text(app) == ""
        await type_into(pilot, "#amount", "1")  # fixed: its error goes as it is typed, the others stay
        await pilot.pause()
        assert field_error(app, "amount") is None and not app.screen.query_one("#amount").has_class("-invalid")
        assert field_error(app, "leverage") and field_error(app, "stop-loss")
        await type_into(pilot, "#stop-loss", "19O")  # still wrong: the message follows the new value
        await pilot.pause()
        assert "stop-loss must be a number" in field_error(app, "stop-loss")
        await type_into(pilot, "#stop-loss", "180")
        await type_into(pilot, "#leverage", "5")
        await pilot.pause()
        assert [field_error(app, f) for f in ("amount", "leverage", "stop-loss", "take-profit")] == [None] * 4
        await pilot.press("enter")
        assert app.screen.confirming


async def test_ticket_flags_a_leverage_above_the_maximum_as_it_is_typed():
    fake = FakeBroker()
    app = make(fake)
    async with app.run_test(size=SIZE) as pilot:
        await open_ticket(pilot)
        leverage = app.screen.query_one("#leverage", Input)
        leverage.focus()
        leverage.value = ""
        await pilot.press("2")
        assert field_error(app, "leverage") is None
        await pilot.press("5")  # 25 > 20, before any review
        await pilot.pause()
        assert "The leverage for SOL_USDC is 1 to 20." == field_error(app, "leverage")
        await pilot.press("backspace")
        await pilot.pause()
        assert field_error(app, "leverage") is None
        assert "open_position" not in fake.requests and not app.screen.confirming


async def test_ticket_in_usd_shows_the_usd_rules_for_the_amount():
    fake = FakeBroker()
    app = make(fake)
    async with app.run_test(size=SIZE) as pilot:
        await open_ticket(pilot)
        amount = app.screen.query_one("#amount", Input)
        assert amount.placeholder == "min 0.01, step 0.01 SOL"
        await pilot.press("f4")
        await pilot.pause()
        assert str(app.screen.query_one("#amount-label").render()) == "Amount (USD)"
        assert amount.placeholder == "USD, min ≈ 1.85, buys whole steps of 0.01 SOL"  # 0.01 at the ask 185.11
        await pilot.press("f4")
        await pilot.pause()
        assert amount.placeholder == "min 0.01, step 0.01 SOL"


async def test_ticket_for_an_order_the_account_cannot_afford_says_not_enough_margin():
    fake = FakeBroker(deposit=Decimal(1000))
    app = make(fake)
    async with app.run_test(size=SIZE) as pilot:
        await open_ticket(pilot)
        # margin 100 × 185.11 / 5 = 3,702.20 and commission 18.51 against 1,000 free
        await type_into(pilot, "#amount", "100")
        await pilot.pause()
        preview = str(app.screen.query_one("#ticket-preview").render())
        assert "Stop-out ≈ not enough margin: 2,720.71 USD short" in preview
        assert "Costs      18.51 USD commission now   Financing 12.68 USD/day" in preview
        await type_into(pilot, "#amount", "2")  # affordable: an estimate below the entry again
        await pilot.pause()
        preview = str(app.screen.query_one("#ticket-preview").render())
        assert "not enough margin" not in preview and "Stop-out ≈ out of reach" in preview


async def test_open_see_live_pnl_close_and_find_it_in_history():
    fake = FakeBroker()
    app = make(fake)
    async with app.run_test(size=SIZE) as pilot:
        await open_ticket(pilot)
        await type_into(pilot, "#amount", "2")
        await pilot.press("enter")
        assert app.screen.confirming and "open_position" not in fake.requests
        assert "Open LONG 2.00 SOL" in str(app.screen.query_one("#ticket-confirm").render())
        await pilot.pause()
        assert app.screen.query_one("#review").content_size.width >= len("Confirm — send order")  # not cut
        await pilot.press("enter")
        await until(pilot, lambda: on(app, DashboardScreen) and app.portfolio.positions)
        assert any(title == "Filled" for _, title, _ in app.notice_log)
        table = app.screen.query_one(PositionsTable)
        (position_id,) = app.portfolio.positions
        await until(pilot, lambda: table.row_count == 1)
        assert cell(table, position_id, "pnl") == "-0.44"  # bought at the ask 185.11, marked at the bid 184.89
        fake.push_price("SOL_USDC", "186.05", "186.15")  # the broker's bid: 185.99
        await until(pilot, lambda: cell(table, position_id, "pnl") == "+1.76")
        assert table.get_cell(position_id, "pnl").style == table.get_component_rich_style("positions--profit")
        # the balance less the opening's commission (2 × 185.11 × 0.1 % = 0.37), and the PnL
        assert app.screen.query_one(AccountBar).account.equity == Decimal("10001.39")
        table.focus()
        await pilot.press("c")
        await until(pilot, lambda: type(app.screen).__name__ == "ClosePositionScreen")
        await pilot.press("enter")
        await until(pilot, lambda: on(app, DashboardScreen) and not app.portfolio.positions)
        await pilot.press("h")
        await until(pilot, lambda: on(app, HistoryScreen)
                    and "closed 1" in str(app.screen.query_one("#history-summary").render()))
        assert "Realised PnL +1.76 USD" in str(app.screen.query_one("#history-summary").render())


async def test_partial_close_edit_stops_and_a_stop_loss_toast():
    fake = FakeBroker()
    app = make(fake)
    async with app.run_test(size=SIZE) as pilot:
        await until(pilot, lambda: ready(app))
        position = await fake.open_position("SOL_USDC", "long", Decimal(3), 5)
        app.refresh_portfolio()
        table = app.screen.query_one(PositionsTable)
        await until(pilot, lambda: table.row_count == 1)
        table.focus()
        await pilot.press("p")
        await until(pilot, lambda: type(app.screen).__name__ == "ClosePositionScreen")
        await type_into(pilot, "#close-qty", "5")
        await pilot.press("enter")
        assert "cannot close more" in error_text(app) and "close_position" not in fake.requests
        await type_into(pilot, "#close-qty", "1")
        await pilot.press("enter")
        await until(pilot, lambda: on(app, DashboardScreen)
                    and app.portfolio.positions[position.id].qty == Decimal(2))
        await pilot.press("e")
        await until(pilot, lambda: type(app.screen).__name__ == "EditStopsScreen")
        await type_into(pilot, "#new-stop-loss", "190")
        await pilot.press("enter")
        assert "must be below" in error_text(app) and "modify_position" not in fake.requests
        await type_into(pilot, "#new-stop-loss", "180")
        await pilot.press("enter")
        await until(pilot, lambda: on(app, DashboardScreen)
                    and app.portfolio.positions[position.id].stop_loss == Decimal(180))
        fake.push_price("SOL_USDC", "179.90", "180.10")  # the broker's bid (179.84) reaches the stop
        await until(pilot, lambda: not app.portfolio.positions)
        assert any(title == "Stop-loss" and "Stop-loss hit" in message for _, title, message in app.notice_log)


async def test_editing_keys_in_a_burst_act_in_the_order_they_were_typed():
    """`Ctrl+U 1 Enter` typed at once in the part-close dialog closes 1 of 3, not the whole position (Textual
    ran Ctrl+U after the 1, leaving the field empty, which means the whole)."""
    fake = FakeBroker()
    app = make(fake)
    async with app.run_test(size=SIZE) as pilot:
        await until(pilot, lambda: ready(app))
        position = await fake.open_position("SOL_USDC", "long", Decimal(3), 5)
        app.refresh_portfolio()
        table = app.screen.query_one(PositionsTable)
        await until(pilot, lambda: table.row_count == 1)
        table.focus()
        await pilot.press("p")
        await until(pilot, lambda: type(app.screen).__name__ == "ClosePositionScreen")
        for key in (events.Key("ctrl+u", None), events.Key("1", "1"), events.Key("enter", "\r")):
            app.post_message(key)  # queued all at once, as the terminal driver does with one read
        await until(pilot, lambda: on(app, DashboardScreen) and "close_position" in fake.requests)
        await until(pilot, lambda: app.portfolio.positions.get(position.id) is not None
                    and app.portfolio.positions[position.id].qty == Decimal(2))
        await pilot.press("e")
        await until(pilot, lambda: type(app.screen).__name__ == "EditStopsScreen")
        field = app.screen.query_one("#new-stop-loss", Input)
        for key in [events.Key(c, c) for c in "170"] + [events.Key("backspace", None), events.Key("5", "5")]:
            app.post_message(key)
        await until(pilot, lambda: field.value == "175")


async def test_a_part_close_shows_the_remaining_quantity_and_margin_in_the_table_at_once():
    fake = FakeBroker()
    app = make(fake)
    async with app.run_test(size=SIZE) as pilot:
        await until(pilot, lambda: ready(app))
        position = await fake.open_position("SOL_USDC", "long", Decimal(3), 5)
        await fake.open_position("ETH_USDC", "long", Decimal("0.5"), 5)  # another row, which stays
        app.refresh_portfolio()
        table = app.screen.query_one(PositionsTable)
        await until(pilot, lambda: table.row_count == 2)
        assert (cell(table, position.id, "qty"), cell(table, position.id, "margin")) == ("3.00", "111.07")
        table.focus()
        table.move_cursor(row=table.get_row_index(position.id))
        await pilot.press("p")
        await until(pilot, lambda: type(app.screen).__name__ == "ClosePositionScreen")
        await type_into(pilot, "#close-qty", "1")
        await pilot.press("enter")
        await until(pilot, lambda: on(app, DashboardScreen) and "close_position" in fake.requests)
        await until(pilot, lambda: cell(table, position.id, "qty") == "2.00")
        assert cell(table, position.id, "margin") == "74.04"  # 2 × 185.11 / 5
        assert table.row_count == 2
        fake.push_price("SOL_USDC", "186.05", "186.15")  # a tick keeps the corrected row (the broker's bid 185.99)
        await until(pilot, lambda: cell(table, position.id, "pnl") == "+1.76")
        assert cell(table, position.id, "qty") == "2.00"


async def test_margin_level_turns_amber_then_red():
    fake = FakeBroker(deposit=Decimal(1000))
    app = make(fake)
    async with app.run_test(size=SIZE) as pilot:
        await until(pilot, lambda: ready(app))
        await fake.open_position("BTC_USDC", "long", Decimal("0.05"), 10)  # margin ≈ 482.6: level ≈ 207 %
        app.refresh_portfolio()
        bar = app.screen.query_one(AccountBar)
        await until(pilot, lambda: bar.account is not None and bar.account.margin_level is not None)
        assert not bar.has_class("-amber") and not bar.has_class("-red")
        fake.push_price("BTC_USDC", "90900", "90901")  # equity ≈ 718 → level ≈ 149 %
        await until(pilot, lambda: bar.has_class("-amber"))
        assert not bar.has_class("-red")
        fake.push_price("BTC_USDC", "86000", "86001")  # equity ≈ 473 → level ≈ 98 %: a margin call
        await until(pilot, lambda: bar.has_class("-red"))
        assert not bar.has_class("-amber")


async def test_without_trading_endpoints_the_dashboard_still_shows_prices():
    fake = FakeBroker(trading=False)
    app = make(fake)
    async with app.run_test(size=SIZE) as pilot:
        await until(pilot, lambda: ready(app)
                    and "trading unavailable" in str(app.screen.query_one(AccountBar).render()))
        assert "trading unavailable" in str(app.screen.query_one("#positions-empty").render())
        await pilot.press("b")
        assert on(app, DashboardScreen)
        assert any("Trading unavailable" == title for _, title, _ in app.notice_log)
        assert cell(app.screen.query_one(Watchlist), "BTC_USDC", "bid") == "96,480.2"  # the exchange's 96,499.5


async def test_screens_tell_the_app_by_messages_and_the_app_acts_on_them():
    fake = FakeBroker()
    app = make(fake)
    posted: list = []
    async with app.run_test(size=SIZE, message_hook=posted.append) as pilot:
        await until(pilot, lambda: ready(app))
        await pilot.press("down", "2")  # the dashboard charts ETH at 5m: the app follows its live candles
        await until(pilot, lambda: app.candle_channel == "candles.5m.ETH_USDC")
        assert ChartChanged("ETH_USDC", "5m") in posted
        await until(pilot, lambda: candle_channels(fake) == [["candles.5m.ETH_USDC"]])
        position = await fake.open_position("SOL_USDC", "long", Decimal(3), 5)
        app.refresh_portfolio()
        table = app.screen.query_one(PositionsTable)
        await until(pilot, lambda: table.row_count == 1)
        table.focus()
        await pilot.press("e")
        await until(pilot, lambda: type(app.screen).__name__ == "EditStopsScreen")
        await type_into(pilot, "#new-stop-loss", "180")
        await pilot.press("enter")
        await until(pilot, lambda: on(app, DashboardScreen) and any(isinstance(m, StopsChanged) for m in posted))
        (changed,) = [m for m in posted if isinstance(m, StopsChanged)]
        assert changed.position.id == position.id and changed.position.stop_loss == Decimal(180)
        # only the app's handler says so (the feed's own update of the position is silent)
        await until(pilot, lambda: ("information", "Stops", "Stops of long 3 SOL/USDC saved.") in app.notice_log)


def candle_channels(fake: FakeBroker) -> list[list[str]]:
    """The candle channels each open feed of `fake` is subscribed to."""
    return [[c for c in feed.channels if c.startswith("candles.")] for feed in fake.feeds]


async def test_a_chart_chosen_while_the_feed_opens_gets_its_live_candles():
    fake = FakeBroker()
    app = make(fake)
    opening = asyncio.Event()
    open_feed = fake.feed

    async def slow_feed(*args, **kwargs):
        await opening.wait()
        return await open_feed(*args, **kwargs)

    fake.feed = slow_feed
    async with app.run_test(size=SIZE) as pilot:
        await until(pilot, lambda: ready(app) and app.candle_channel is not None)
        await pilot.press("down", "3")  # the feed is still opening
        await until(pilot, lambda: app.candle_channel == "candles.15m.ETH_USDC")
        opening.set()
        await until(pilot, lambda: candle_channels(fake) == [["candles.15m.ETH_USDC"]])


def test_the_app_is_what_its_screens_expect_of_it():
    assert isinstance(create_app("http://broker.test", FakeBroker(), session_store=False), AppContext)


async def test_the_clock_runs_on_the_history_screen_and_the_stops_dialog_follows_the_price():
    fake = FakeBroker()
    fake.add_user(EMAIL, PASSWORD)
    fake.sign_in_as(EMAIL)
    now = [fake.now_ms / 1000]
    app = create_app("http://broker.test", fake, session_store=False, clock=lambda: now[0], tz=UTC)
    async with app.run_test(size=SIZE) as pilot:
        await until(pilot, lambda: ready(app))
        await fake.open_position("SOL_USDC", "long", Decimal(3), 5)
        app.refresh_portfolio()
        table = app.screen.query_one(PositionsTable)
        await until(pilot, lambda: table.row_count == 1)
        table.focus()
        await pilot.press("e")
        await until(pilot, lambda: type(app.screen).__name__ == "EditStopsScreen")
        hint = app.screen.query_one("#stops-hint")
        assert "Closes at 184.89 now" in str(hint.render())
        fake.push_price("SOL_USDC", "187.25", "187.35")  # the broker's bid: 187.19
        await until(pilot, lambda: "Closes at 187.19 now" in str(hint.render()))
        await pilot.press("escape")
        await pilot.press("h")
        await until(pilot, lambda: on(app, HistoryScreen))
        clock = app.screen.query_one("#clock")
        assert str(clock.render()) == "00:00:00"
        now[0] += 75
        await until(pilot, lambda: str(clock.render()) == "00:01:15")


# --- help and the command palette -------------------------------------------------------------------------


async def test_help_and_command_palette_entries():
    fake = FakeBroker()
    app = make(fake)
    async with app.run_test(size=SIZE) as pilot:
        await until(pilot, lambda: ready(app))
        titles = [c.title for c in app.get_system_commands(app.screen)]
        for wanted in ("Theme", "Market SOL/USDC", "Order ticket", "Sign out", "History"):
            assert wanted in titles
        await pilot.press("question_mark")
        await until(pilot, lambda: type(app.screen).__name__ == "HelpScreen")
        await pilot.press("escape")
        await until(pilot, lambda: on(app, DashboardScreen))


# --- a long session: what is kept stays bounded -----------------------------------------------------------


def closed_position(n: int, reason: str = "stop_loss") -> Position:
    return Position(id=f"closed-{n:05d}", symbol="SOL_USDC", side="long", qty=Decimal(n + 1),
                    entry_price=Decimal(185), leverage=5, margin=Decimal(37), status="closed", opened_at=n,
                    updated_at=n + 1, closed_at=n + 1, close_price=Decimal(180), realized_pnl=Decimal(-5),
                    close_reason=reason)


async def test_a_burst_of_a_thousand_stop_losses_shows_the_newest_toasts_and_keeps_a_bounded_log():
    fake = FakeBroker()
    app = make(fake)
    async with app.run_test(size=SIZE, notifications=True) as pilot:
        await until(pilot, lambda: ready(app))
        for n in range(1_000):
            for feed in fake.feeds:
                feed.emit(PositionFrame(event="closed", position=closed_position(n), balance=Decimal(10_000)))
        newest = "closed long 1000 SOL/USDC"
        await until(pilot, lambda: bool(app.notice_log) and newest in app.notice_log[-1][2], timeout=30)
        await until(pilot, lambda: any(newest in str(toast.render()) for toast in app.screen.query("Toast")))
        assert len(app.notice_log) == NOTICE_LOG_SIZE
        assert len(app.screen.query("Toast")) <= MAX_TOASTS


async def test_leaving_the_history_screen_leaves_nothing_of_it_behind():
    fake = FakeBroker()
    app = make(fake)
    async with app.run_test(size=SIZE) as pilot:
        await until(pilot, lambda: ready(app) and gc.get_freeze_count() > 0)  # the dashboard has settled
        bars = []
        for _ in range(10):
            await pilot.press("h")
            await until(pilot, lambda: on(app, HistoryScreen))
            bars.append(weakref.ref(app.screen.query_one(TopBar)))
            await pilot.press("escape")
            await until(pilot, lambda: on(app, DashboardScreen))

        def left_behind() -> int:
            gc.collect()
            return sum(bar() is not None for bar in bars)

        # each bar goes; only the latest may stay, named in one of Textual's context variables until the next
        await until(pilot, lambda: left_behind() <= 1)
        await pilot.press("h")  # the bars still follow the feed, on the history screen and under it
        await until(pilot, lambda: on(app, HistoryScreen))
        fake.set_feed_state(FeedState.RECONNECTING)
        await until(pilot, lambda: "reconnecting" in str(app.screen.query_one(ConnectionStatus).render()))
        await pilot.press("escape")
        await until(pilot, lambda: on(app, DashboardScreen))
        assert "reconnecting" in str(app.screen.query_one(ConnectionStatus).render())


async def test_the_history_shows_one_page_however_long_the_history_grows():
    fake = FakeBroker()
    app = make(fake)
    user = fake.users[EMAIL][0]
    for n in range(HISTORY_PAGE + 200):
        position = closed_position(n, "manual")
        fake.positions_by_id[position.id] = (user.id, position)
    async with app.run_test(size=SIZE) as pilot:
        await until(pilot, lambda: ready(app))
        await pilot.press("h")
        await until(pilot, lambda: on(app, HistoryScreen)
                    and f"closed {HISTORY_PAGE}" in str(app.screen.query_one("#history-summary").render()))
        table = app.screen.query_one("#closed-table")
        assert table.row_count == HISTORY_PAGE
        assert table.coordinate_to_cell_key((0, 0)).row_key.value == f"closed-{HISTORY_PAGE + 199:05d}"  # newest
        await pilot.press("r")
        await until(pilot, lambda: "closed" in str(app.screen.query_one("#history-summary").render()))
        assert table.row_count == HISTORY_PAGE


async def test_a_screen_opened_as_the_dashboard_appears_is_freed_once_closed():
    fake = FakeBroker()
    app = make(fake)
    async with app.run_test(size=SIZE) as pilot:
        await until(pilot, lambda: on(app, DashboardScreen))
        await pilot.press("h")  # before the dashboard has settled its memory
        await until(pilot, lambda: on(app, HistoryScreen))
        history = weakref.ref(app.screen)
        await pilot.pause(SETTLE_AFTER_S + 0.2)
        await pilot.press("escape")
        await until(pilot, lambda: on(app, DashboardScreen) and gc.get_freeze_count() > 0)

        def freed() -> bool:
            gc.collect()
            return history() is None

        await until(pilot, freed)


async def test_the_dashboard_does_not_settle_while_a_closed_screen_is_still_held():
    """Textual still holds a screen for a moment after it closes; settling then would keep it for good."""
    fake = FakeBroker()
    app = make(fake)
    async with app.run_test(size=SIZE) as pilot:
        await until(pilot, lambda: on(app, DashboardScreen))
        await pilot.press("h")  # before the dashboard has settled its memory
        await until(pilot, lambda: on(app, HistoryScreen))
        held = app.screen  # as Textual holds it while it finishes removing it
        history = weakref.ref(held)
        await pilot.press("escape")
        await until(pilot, lambda: on(app, DashboardScreen))
        app._settle_memory()
        assert gc.get_freeze_count() == 0
        del held
        await until(pilot, lambda: gc.get_freeze_count() > 0)  # the next try settles

        def freed() -> bool:
            gc.collect()
            return history() is None

        await until(pilot, freed)


async def test_the_footer_keys_of_every_return_to_the_dashboard_are_freed():
    fake = FakeBroker()
    app = make(fake)
    async with app.run_test(size=SIZE) as pilot:
        await until(pilot, lambda: ready(app) and gc.get_freeze_count() > 0)  # the dashboard has settled
        replaced = []
        for _ in range(10):
            replaced += [weakref.ref(key) for key in app.screen.query("FooterKey")]  # rebuilt on the way back
            await pilot.press("h")
            await until(pilot, lambda: on(app, HistoryScreen))
            await pilot.press("escape")
            await until(pilot, lambda: on(app, DashboardScreen) and app.screen.query("FooterKey"))
        shown = len(app.screen.query("FooterKey"))

        def left_behind() -> int:
            gc.collect()
            return sum(1 for ref in replaced if (key := ref()) is not None and not key.is_attached)

        # at most one footer's worth may stay a while, named in one of Textual's context variables
        await until(pilot, lambda: left_behind() <= shown)
        assert "Buy" in str(app.screen.query_one("Footer").query("FooterKey").first().render())


async def test_history_screens_opened_and_closed_leave_none_of_their_drawn_lines_behind():
    fake = FakeBroker()
    app = make(fake)
    async with app.run_test(size=SIZE) as pilot:
        await until(pilot, lambda: ready(app) and gc.get_freeze_count() > 0)  # the dashboard has settled
        tables = []
        for _ in range(10):
            await pilot.press("h")
            await until(pilot, lambda: on(app, HistoryScreen)
                        and "closed" in str(app.screen.query_one("#history-summary").render()))
            await pilot.pause()  # drawn: Textual has memoised its widgets' colours
            # what Textual's memo held on to: the table's drawn lines (the table itself goes either way)
            tables.append(weakref.ref(app.screen.query_one("#closed-table")._styles_cache))
            await pilot.press("escape")
            await until(pilot, lambda: on(app, DashboardScreen))
        forget_removed_widgets()  # as the app's timer does every 30 s

        def left_behind() -> int:
            gc.collect()
            return sum(table() is not None for table in tables)

        await until(pilot, lambda: left_behind() <= 1)  # the latest may stay a while, in a context variable


# --- pending orders, trailing stops, close-all --------------------------------------------------------------


def notices(app, title: str) -> list[str]:
    """The toasts shown so far with this title."""
    return [message for _, shown, message in app.notice_log if shown == title]


def chart_text(app) -> str:
    return app.screen.query_one(CandleChart).render().plain


async def show_orders(pilot) -> OrdersTable:
    """The dashboard's working orders, shown with `o`, the table focused when it has rows."""
    await pilot.press("o")
    table = pilot.app.screen.query_one(OrdersTable)
    await until(pilot, lambda: pilot.app.screen.view == "orders")
    if table.display:
        table.focus()
    return table


async def test_a_limit_order_from_the_ticket_works_until_a_price_fills_it():
    fake = FakeBroker()
    app = make(fake, fake_clock=True)
    async with app.run_test(size=SIZE, notifications=True) as pilot:
        await open_ticket(pilot)
        await type_into(pilot, "#amount", "2")
        assert not app.screen.query_one("#pending-row").display  # a market order has no price of its own
        await pilot.press("f5")
        await pilot.pause()
        assert "Buy limit SOL/USDC" in str(app.screen.query_one("#ticket-title").render())
        price = app.screen.query_one("#order-price", Input)
        assert price.value == "183.25"  # 1 % under the ask 185.11, where a buy limit waits
        await type_into(pilot, "#expiry", "1h")
        await pilot.pause()
        preview = str(app.screen.query_one("#ticket-preview").render())
        assert "Triggers   ask at or below 183.25   (now 185.11)" in preview
        assert "Margin     73.30 USD when it fills" in preview  # 2 × 183.25 / 5: at its price, not the ask
        assert "2026-01-01 01:00:00   (in 1h)" in preview
        await pilot.press("enter")
        assert app.screen.confirming and "place_order" not in fake.requests
        confirm = str(app.screen.query_one("#ticket-confirm").render())
        assert "Buy limit 2.00 SOL at 183.25, until 2026-01-01 01:00:00" in confirm
        await pilot.press("enter")
        await until(pilot, lambda: on(app, DashboardScreen) and app.portfolio.orders)
        assert notices(app, "Order placed") == ["Placed buy limit 2 SOL/USDC at 183.25, until 2026-01-01 01:00:00."]
        (order,) = app.portfolio.orders.values()
        assert order.expires_at == fake.now_ms + 3_600_000 and not app.portfolio.positions
        table = await show_orders(pilot)
        await until(pilot, lambda: table.row_count == 1)
        assert [cell(table, order.id, key) for key in ("market", "side", "type", "qty", "price", "expires")] == [
            "SOL/USDC", "long", "limit", "2.00", "183.25", "01:00"]
        assert "buy limit 2" in chart_text(app) and "183.25" in chart_text(app)
        assert "Working orders 1" in str(app.screen.query_one("#positions-pane").border_title)

        fake.push_price("SOL_USDC", "183.40", "183.50")  # the broker's ask 183.56: not yet
        await pilot.pause(0.1)
        assert app.portfolio.orders and not app.portfolio.positions
        fake.push_price("SOL_USDC", "183.00", "183.10")  # the broker's ask 183.16 ≤ 183.25: filled at 183.16
        await until(pilot, lambda: app.portfolio.positions and not app.portfolio.orders)
        (position,) = app.portfolio.positions.values()
        assert position.order_id == order.id and position.entry_price == Decimal("183.16")
        await until(pilot, lambda: notices(app, "Order filled"))
        assert notices(app, "Order filled") == [
            "Filled buy limit 2 SOL/USDC at 183.25: opened long 2 SOL/USDC at 183.16."]
        await until(pilot, lambda: not table.display)
        assert "No working orders" in str(app.screen.query_one("#positions-empty").render())
        assert "buy limit 2" not in chart_text(app) and "long 2" in chart_text(app)  # the order became a position
        await pilot.press("o")  # back to the positions, where it is now
        await until(pilot, lambda: app.screen.query_one(PositionsTable).row_count == 1)


async def test_a_stop_order_and_a_sell_limit_wait_on_their_own_side():
    fake = FakeBroker()
    app = make(fake)
    async with app.run_test(size=SIZE) as pilot:
        await open_ticket(pilot)
        await pilot.press("f5", "f5")  # market → limit → stop
        await pilot.pause()
        assert app.screen.kind == "stop"
        assert app.screen.query_one("#order-price", Input).value == "186.97"  # 1 % over the ask: a breakout
        await pilot.press("f3")  # short: a sell stop waits under the bid 184.89
        await pilot.pause()
        assert app.screen.query_one("#order-price", Input).value == "183.04"
        await type_into(pilot, "#order-price", "180")  # typed: a side change keeps it
        await pilot.press("f2", "f3")
        await pilot.pause()
        assert app.screen.query_one("#order-price", Input).value == "180"
        await type_into(pilot, "#order-price", "190")  # a sell stop above the bid: it triggers at the next tick
        await type_into(pilot, "#amount", "1")
        await pilot.pause()
        assert "at the next tick: the bid (184.89) is already past 190.00" in str(
            app.screen.query_one("#ticket-preview").render())


async def test_the_ticket_checks_a_pending_order_before_sending_it():
    fake = FakeBroker()
    app = make(fake, fake_clock=True)
    async with app.run_test(size=SIZE) as pilot:
        await open_ticket(pilot)
        await pilot.press("f5")
        for name, value in (("amount", "2"), ("order-price", "95.005"), ("expiry", "yesterday"),
                            ("stop-loss", "96"), ("trailing", "0.001")):
            await type_into(pilot, f"#{name}", value)
        await pilot.press("enter")
        assert "multiples of 0.01" in field_error(app, "order-price")
        assert "duration like 30m" in field_error(app, "expiry")
        assert "positive multiple of 0.01" in field_error(app, "trailing")
        await type_into(pilot, "#order-price", "95")
        await pilot.pause()
        assert field_error(app, "order-price") is None
        await pilot.press("enter")
        assert "stop-loss must be below 95" in field_error(app, "stop-loss")  # against the order's price
        assert "place_order" not in fake.requests and not app.screen.confirming
        await pilot.press("f5", "f5")  # back to a market order: the pending fields and their errors go
        await pilot.pause()
        assert not app.screen.query_one("#pending-row").display and field_error(app, "expiry") is None


async def test_a_working_order_is_modified_and_cancelled_from_the_orders_view():
    fake = FakeBroker()
    app = make(fake, fake_clock=True)
    order = None
    async with app.run_test(size=SIZE, notifications=True) as pilot:
        await until(pilot, lambda: ready(app))
        order = await fake.place_order("SOL_USDC", "long", "limit", Decimal(2), Decimal(95), 5,
                                       stop_loss=Decimal(90))
        await until(pilot, lambda: order.id in app.portfolio.orders)  # from the feed's order frame
        table = await show_orders(pilot)
        await until(pilot, lambda: table.row_count == 1)
        assert cell(table, order.id, "stops") == "90.00 / —"
        await pilot.press("e")
        await until(pilot, lambda: type(app.screen).__name__ == "EditOrderScreen")
        assert app.screen.query_one("#order-price", Input).value == "95"
        await type_into(pilot, "#order-price", "89")  # under its own stop-loss
        await pilot.press("enter")
        assert "stop-loss must be below 89" in error_text(app) and "modify_order" not in fake.requests
        await type_into(pilot, "#order-price", "96.5")
        await type_into(pilot, "#order-expires-at", "2h")
        await pilot.press("enter")
        await until(pilot, lambda: on(app, DashboardScreen) and "modify_order" in fake.requests)
        await until(pilot, lambda: cell(table, order.id, "price") == "96.50")
        assert cell(table, order.id, "expires") == "02:00"
        assert notices(app, "Order modified") == ["Now buy limit 2 SOL/USDC at 96.5, until 2026-01-01 02:00:00."]

        await pilot.press("c")
        await until(pilot, lambda: type(app.screen).__name__ == "CancelOrderScreen")
        assert "Cancel buy limit 2 SOL/USDC at 96.5?" in screen_text(app)
        await pilot.press("escape")  # kept
        await until(pilot, lambda: on(app, DashboardScreen))
        assert "cancel_order" not in fake.requests and table.row_count == 1
        await pilot.press("c")
        await until(pilot, lambda: type(app.screen).__name__ == "CancelOrderScreen")
        await pilot.press("enter")
        await until(pilot, lambda: on(app, DashboardScreen) and not app.portfolio.orders)
        assert notices(app, "Order cancelled") == ["Cancelled buy limit 2 SOL/USDC at 96.5."]
        assert (await fake.order(order.id)).status == "cancelled"


async def test_an_order_the_account_cannot_afford_is_rejected_and_one_past_its_time_expires():
    fake = FakeBroker(deposit=Decimal(1000))
    app = make(fake, fake_clock=True)
    async with app.run_test(size=SIZE, notifications=True) as pilot:
        await open_ticket(pilot)
        await pilot.press("f5")
        await type_into(pilot, "#amount", "100")  # 100 × 183.25 / 5 = 3,665 of margin against 1,000
        await pilot.pause()
        preview = str(app.screen.query_one("#ticket-preview").render())  # and 18.32 of commission (0.1 %)
        assert "not enough free margin now (2,683.32 short)" in preview
        assert "18.32 USD commission when it fills" in preview  # a pending order pays nothing until then
        await pilot.press("enter")  # placed all the same: it is judged when it triggers
        await until(pilot, lambda: app.screen.confirming)
        await pilot.press("enter")
        await until(pilot, lambda: on(app, DashboardScreen) and app.portfolio.orders)
        fake.push_price("SOL_USDC", "180.00", "180.10")
        await until(pilot, lambda: notices(app, "Order rejected"))
        (rejected,) = notices(app, "Order rejected")
        assert rejected.startswith("Rejected when it triggered: buy limit 100 SOL/USDC at 183.25. This order needs")
        assert not app.portfolio.orders and not app.portfolio.positions

        expiring = await fake.place_order("ETH_USDC", "short", "limit", Decimal("0.1"), Decimal(4000), 5,
                                          expires_at=fake.now_ms + 60_000)
        await until(pilot, lambda: expiring.id in app.portfolio.orders)
        fake.set_time(fake.now_ms + 60_000)
        await until(pilot, lambda: notices(app, "Order expired"))
        assert notices(app, "Order expired") == ["Expired: sell limit 0.1 ETH/USDC at 4,000."]
        assert not app.portfolio.orders


async def test_working_orders_come_back_with_the_sign_in_and_each_reconnect():
    fake = FakeBroker()
    fake.add_user(EMAIL, PASSWORD)
    fake.sign_in_as(EMAIL)
    placed = await fake.place_order("BTC_USDC", "short", "stop", Decimal("0.01"), Decimal(90_000), 10)
    app = create_app("http://broker.test", fake, session_store=False)
    async with app.run_test(size=SIZE) as pilot:
        await until(pilot, lambda: ready(app) and placed.id in app.portfolio.orders)
        fake.set_feed_state(FeedState.RECONNECTING)
        await until(pilot, lambda: app.feed_state is FeedState.RECONNECTING)
        await fake.cancel_order(placed.id)  # missed while away
        later = await fake.place_order("BTC_USDC", "long", "limit", Decimal("0.01"), Decimal(90_000), 10)
        for feed in fake.feeds:  # the events of those moments never arrive
            while not feed._queue.empty():
                feed._queue.get_nowait()
        fake.set_feed_state(FeedState.LIVE)
        await until(pilot, lambda: list(app.portfolio.orders) == [later.id])


async def test_a_trailing_stop_is_set_in_the_ticket_shown_moving_and_closes_with_a_toast():
    fake = FakeBroker()
    app = make(fake)
    async with app.run_test(size=SIZE, notifications=True) as pilot:
        await open_ticket(pilot)
        await type_into(pilot, "#amount", "2")
        await type_into(pilot, "#trailing", "3")
        await pilot.press("enter")
        assert "trailing stop 3.00 behind" in str(app.screen.query_one("#ticket-confirm").render())
        await pilot.press("enter")
        await until(pilot, lambda: on(app, DashboardScreen) and app.portfolio.positions)
        (position,) = app.portfolio.positions.values()
        table = app.screen.query_one(PositionsTable)
        await until(pilot, lambda: table.row_count == 1)
        assert cell(table, position.id, "sl") == "↑ 181.89"  # the bid 184.89 − 3
        assert "trailing SL" in chart_text(app)
        fake.push_price("SOL_USDC", "190.00", "190.10")  # the broker's bid 189.94: the stop follows
        await until(pilot, lambda: cell(table, position.id, "sl") == "↑ 186.94")
        fake.push_price("SOL_USDC", "188.00", "188.10")  # a fall: the stop stays
        await pilot.pause(0.1)
        assert cell(table, position.id, "sl") == "↑ 186.94"
        fake.push_price("SOL_USDC", "186.90", "187.00")  # the bid 186.84 reaches it
        await until(pilot, lambda: not app.portfolio.positions)
        (closed,) = notices(app, "Trailing stop")
        assert closed.startswith("Trailing stop hit: closed long 2 SOL/USDC at 186.84, PnL +3.46")


async def test_the_stops_dialog_sets_and_stops_a_trailing_stop():
    fake = FakeBroker()
    app = make(fake)
    async with app.run_test(size=SIZE) as pilot:
        await until(pilot, lambda: ready(app))
        position = await fake.open_position("SOL_USDC", "short", Decimal(1), 5)
        app.refresh_portfolio()
        table = app.screen.query_one(PositionsTable)
        await until(pilot, lambda: table.row_count == 1)
        table.focus()
        await pilot.press("e")
        await until(pilot, lambda: type(app.screen).__name__ == "EditStopsScreen")
        await type_into(pilot, "#new-trailing", "500")  # a short's trailing stop has no ceiling: 500 above is fine
        await pilot.press("enter")
        await until(pilot, lambda: on(app, DashboardScreen)
                    and app.portfolio.positions[position.id].trailing_distance == Decimal(500))
        await pilot.press("e")
        await until(pilot, lambda: type(app.screen).__name__ == "EditStopsScreen")
        await type_into(pilot, "#new-trailing", "2.5")
        await pilot.press("enter")
        await until(pilot, lambda: on(app, DashboardScreen) and cell(table, position.id, "sl") == "↓ 187.61")
        await pilot.press("e")  # stopped: the stop-loss stays where it got to, without the arrow
        await until(pilot, lambda: type(app.screen).__name__ == "EditStopsScreen")
        await type_into(pilot, "#new-trailing", "")
        await pilot.press("enter")
        await until(pilot, lambda: on(app, DashboardScreen) and cell(table, position.id, "sl") == "187.61")


async def test_close_all_asks_with_the_count_and_can_close_one_market_only():
    fake = FakeBroker()
    app = make(fake)
    async with app.run_test(size=SIZE, notifications=True) as pilot:
        await until(pilot, lambda: ready(app))
        await pilot.press("C")
        await until(pilot, lambda: notices(app, "Close all"))  # nothing to close: no dialog
        assert on(app, DashboardScreen)
        for symbol, qty in (("SOL_USDC", 2), ("SOL_USDC", 1), ("ETH_USDC", "0.5")):
            await fake.open_position(symbol, "long", Decimal(qty), 5)
        app.refresh_portfolio()
        await until(pilot, lambda: app.screen.query_one(PositionsTable).row_count == 3)
        app.screen.choose_market("SOL_USDC")
        await pilot.press("C")
        await until(pilot, lambda: type(app.screen).__name__ == "CloseAllScreen")
        shown = screen_text(app)
        assert "Close all 3 positions?" in shown and "3 positions open, in 2 markets, 2 of them in SOL/USDC" in shown
        assert "Only SOL/USDC (2)" in shown
        await pilot.press("escape")
        await until(pilot, lambda: on(app, DashboardScreen))
        assert "close_all" not in fake.requests and len(app.portfolio.positions) == 3
        await pilot.press("C")
        await until(pilot, lambda: type(app.screen).__name__ == "CloseAllScreen")
        await pilot.click("#close-market")
        await until(pilot, lambda: on(app, DashboardScreen) and len(app.portfolio.positions) == 1)
        assert [p.symbol for p in app.portfolio.positions.values()] == ["ETH_USDC"]
        assert notices(app, "Closed all")[0].startswith("Closed 2 positions in SOL/USDC: PnL -0.66")
        await pilot.press("C")  # only ETH is left: one button closes it all
        await until(pilot, lambda: type(app.screen).__name__ == "CloseAllScreen")
        assert "Only" not in screen_text(app)
        await pilot.press("enter")
        await until(pilot, lambda: on(app, DashboardScreen) and not app.portfolio.positions)
        assert notices(app, "Closed all")[1].startswith("Closed 1 position: PnL")
        titles = [c.title for c in app.get_system_commands(app.screen)]
        assert "Close all positions" in titles and "Working orders" in titles


async def test_the_chart_draws_the_selected_markets_positions_and_orders():
    fake = FakeBroker()
    app = make(fake)
    async with app.run_test(size=SIZE) as pilot:
        await until(pilot, lambda: ready(app))
        app.screen.choose_market("SOL_USDC")
        await fake.open_position("SOL_USDC", "long", Decimal(3), 5, stop_loss=Decimal("184.20"),
                                 take_profit=Decimal("186.50"))
        await fake.place_order("SOL_USDC", "short", "limit", Decimal(1), Decimal("186.00"), 5)
        await fake.place_order("SOL_USDC", "long", "limit", Decimal(1), Decimal(100), 5)  # far off the chart
        await fake.open_position("ETH_USDC", "short", Decimal("0.5"), 5, stop_loss=Decimal(3500))
        app.refresh_portfolio()
        await until(pilot, lambda: len(app.screen.query_one(CandleChart).levels) == 5)
        lines = chart_text(app).splitlines()
        for label, price in (("SL", "184.20"), ("TP", "186.50"), ("sell limit 1", "186.00"), ("long 3", "185.11")):
            row = next(line for line in lines if f" {label} " in line)
            assert row.rstrip().endswith(price) and "╌" in row
        assert lines[-2].rstrip().endswith("▼     100.00")  # named at the bottom of the axis, no line
        candles = sum(line.count("█") + line.count("▀") + line.count("▄") for line in lines)
        app.screen.query_one(CandleChart).set_levels([])
        await pilot.pause()
        assert sum(line.count(c) for line in chart_text(app).splitlines() for c in "█▀▄") >= candles  # none hidden
        app.screen.choose_market("ETH_USDC")
        await until(pilot, lambda: " SL " in chart_text(app) and "short 0.5" in chart_text(app))
        assert "sell limit" not in chart_text(app)


async def test_the_history_lists_the_orders_no_longer_working_with_the_reason():
    fake = FakeBroker(deposit=Decimal(1000))
    app = make(fake)
    filled = await fake.place_order("SOL_USDC", "long", "limit", Decimal(1), Decimal(184), 5)
    big = await fake.place_order("BTC_USDC", "long", "limit", Decimal(1), Decimal(96_000), 2)
    working = await fake.place_order("ETH_USDC", "long", "limit", Decimal(1), Decimal(3000), 5)
    cancelled = await fake.place_order("ETH_USDC", "long", "limit", Decimal(1), Decimal(3000), 5)
    await fake.cancel_order(cancelled.id)
    fake.push_price("SOL_USDC", "183.00", "183.10")
    fake.push_price("BTC_USDC", "95000.0", "95001.0")
    async with app.run_test(size=SIZE) as pilot:
        await until(pilot, lambda: ready(app))
        await pilot.press("h")
        await until(pilot, lambda: on(app, HistoryScreen)
                    and "orders 3" in str(app.screen.query_one("#history-summary").render()))
        await pilot.press("right")
        table = app.screen.query_one("#orders-table")
        assert app.screen.query_one("TabbedContent").active == "tab-orders" and app.focused is table
        assert working.id not in [key.value for key in table.rows]
        assert cell(table, filled.id, "status") == "filled"
        assert cell(table, filled.id, "detail").startswith("position ")
        assert cell(table, big.id, "status") == "rejected"
        assert cell(table, big.id, "detail").startswith("insufficient margin: This order needs")
        assert cell(table, cancelled.id, "status") == "cancelled"
        await pilot.press("right", "right")  # round to the first tab
        assert app.screen.query_one("TabbedContent").active == "tab-closed"


@pytest.mark.parametrize("size", [(80, 24), (120, 40)], ids=["80x24", "120x40"])
@pytest.mark.parametrize("kind_keys", [(), ("f5",)], ids=["market", "limit"])
async def test_the_ticket_of_any_order_type_keeps_its_buttons_in_sight(kind_keys, size):
    """80×24 lays the ticket out tight; 120×40 spaces it out, and must still show the Confirm button."""
    fake = FakeBroker()
    app = make(fake)
    async with app.run_test(size=size) as pilot:
        await open_ticket(pilot)
        await pilot.press(*kind_keys)
        for name, value in (("amount", "2"), ("trailing", "x")):
            await type_into(pilot, f"#{name}", value)
        await pilot.press("enter")  # one error shown under its field
        await pilot.pause()
        shown = screen_text(app)
        assert "Review order" in shown and "trailing distance must be a number" in shown
        await type_into(pilot, "#trailing", "2")
        await type_into(pilot, "#stop-loss", "150")
        await pilot.press("enter")
        await until(pilot, lambda: app.screen.confirming)
        await pilot.pause(0.1)
        assert "Confirm" in screen_text(app) and "Esc goes back to edit" in screen_text(app)


async def test_in_80x24_the_orders_view_and_its_dialogs_fit():
    fake = FakeBroker()
    app = make(fake, fake_clock=True)
    async with app.run_test(size=(80, 24)) as pilot:
        await until(pilot, lambda: ready(app))
        order = await fake.place_order("BTC_USDC", "long", "stop", Decimal("0.01"), Decimal("97000.0"), 10,
                                       stop_loss=Decimal("96000.0"), trailing_distance=Decimal("500.0"),
                                       expires_at=fake.now_ms + 2 * 86_400_000)
        await until(pilot, lambda: order.id in app.portfolio.orders)
        table = await show_orders(pilot)
        await until(pilot, lambda: table.row_count == 1)
        lines = screen_text(app).splitlines()
        row = next(line for line in lines if "BTC/USDC" in line and "stop" in line)
        for value in ("long", "0.0100", "97,000.0", "01-03 00:00"):
            assert value in row
        assert "c Cancel" in lines[-1] and "e Modify" in lines[-1] and "f1 Help" in lines[-1]
        await pilot.press("e")
        await until(pilot, lambda: type(app.screen).__name__ == "EditOrderScreen")
        await pilot.pause(0.1)
        shown = screen_text(app)
        assert "Save order" in shown and "Expires" in shown and "2026-01-03 00:00:00" in shown
