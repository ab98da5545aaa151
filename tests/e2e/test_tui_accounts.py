"""The terminal's account screens against the in-process platform, through its public REST API and feed: API keys
(the secret shown once, a revoked key refused), the password (changed: a new sign-in works, the old password
and the other sessions do not; signing out everywhere), a forgotten password reset with the mailed code, and
alerts (set with one key, fired by a price move with a toast, listed, deleted)."""

from __future__ import annotations

import asyncio
import io
from decimal import Decimal

from helpers import set_price, sign_up
from rich.console import Console
from textual.widgets import Checkbox, Input, RadioButton

from cfd_client import ApiClient
from cfd_client.models import FeedState
from cfd_tui.app import CfdApp, create_app
from cfd_tui.screens.account import AccountScreen
from cfd_tui.screens.alerts import AlertsScreen
from cfd_tui.screens.api_keys import ApiKeysScreen, NewApiKeyScreen
from cfd_tui.screens.confirm import ConfirmScreen
from cfd_tui.screens.dashboard import DashboardScreen
from cfd_tui.screens.forgot_password import ForgotPasswordScreen, ResetPasswordScreen
from cfd_tui.screens.new_alert import NewAlertScreen
from cfd_tui.screens.signin import SignInScreen
from cfd_tui.widgets.fitted_table import FittedTable

SIZE = (120, 36)
PASSWORD = "correct horse battery"
NEW_PASSWORD = "quiet lantern monsoon"


async def until(pilot, condition, timeout: float = 10.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not condition():
        assert loop.time() < deadline, "timed out waiting for the screen:\n" + screen_text(pilot.app)
        await pilot.pause(0.05)


def screen_text(app: CfdApp) -> str:
    """Every character on the terminal now, as the trader sees it (dialogs over their screens)."""
    width, height = app.size
    console = Console(width=width, height=height, file=io.StringIO(), record=True, color_system=None,
                      force_terminal=True, legacy_windows=False)
    console.print(app.screen._compositor.render_update(full=True, screen_stack=app._background_screens))
    return console.export_text(styles=False)


def form_error(app: CfdApp) -> str:
    box = app.screen.query_one("#form-error")
    return str(box.render()) if box.has_class("-shown") else ""


def field_error(app: CfdApp, input_id: str) -> str:
    box = app.screen.query_one(f"#{input_id}-error")
    return str(box.render()) if box.has_class("-shown") else ""


def rows(app: CfdApp, table_id: str) -> list[list[str]]:
    table = app.screen.query_one(f"#{table_id}", FittedTable)
    return [[str(cell) for cell in table.get_row_at(i)] for i in range(table.row_count)] if table.display else []


async def signed_in_app(platform, api, mailbox, email: str) -> tuple[CfdApp, ApiClient, dict]:
    session = await sign_up(api, mailbox, email, password=PASSWORD)
    client = ApiClient(platform.base_url, token=session["access_token"])
    return create_app(platform.base_url, client, session_store=False), client, session


async def test_an_api_key_is_shown_once_works_and_once_revoked_is_refused(platform, api, mailbox, email):
    app, _client, _session = await signed_in_app(platform, api, mailbox, email)
    async with app.run_test(size=SIZE) as pilot:
        await until(pilot, lambda: isinstance(app.screen, DashboardScreen))
        await pilot.press("k")
        await until(pilot, lambda: isinstance(app.screen, ApiKeysScreen) and "Live keys 0" in screen_text(app))
        assert "No API keys" in screen_text(app)

        await pilot.press("n")
        await until(pilot, lambda: isinstance(app.screen, NewApiKeyScreen))
        await pilot.press("enter")  # no name: said under the field, nothing sent
        assert "Name the key" in field_error(app, "key-name")
        await pilot.press(*"grid bot")
        app.screen.query_one("#scope-trade", RadioButton).value = True
        app.screen.query_one("#key-name", Input).focus()
        await pilot.press("enter")
        await until(pilot, lambda: "shown only this once" in screen_text(app))
        key = str(app.screen.query_one("#key-secret").render())
        assert key.startswith("cfdk_") and key in screen_text(app)
        await pilot.press("c")  # copy
        assert app.clipboard == key
        headers = {"Authorization": f"Bearer {key}"}
        assert (await api.get("/account", headers=headers)).status_code == 200  # it works, and it can trade:
        trade = await api.post("/alerts", headers=headers, json={"kind": "margin_level", "below": "120"})
        assert trade.status_code == 201, trade.text

        await pilot.press("escape")  # done: the list has it, without its secret
        await until(pilot, lambda: isinstance(app.screen, ApiKeysScreen) and rows(app, "keys-table"))
        (row,) = rows(app, "keys-table")
        assert row[:2] == ["grid bot", "read + trade"]
        assert key not in screen_text(app)
        await pilot.press("n")  # a new dialog: no trace of the last secret
        await until(pilot, lambda: isinstance(app.screen, NewApiKeyScreen))
        assert str(app.screen.query_one("#key-secret").render()) == "" and app.screen.query_one("#key-name").value == ""
        assert key not in screen_text(app)
        await pilot.press("escape")

        await until(pilot, lambda: isinstance(app.screen, ApiKeysScreen))
        app.screen.query_one("#keys-table").focus()
        await pilot.press("d")
        await until(pilot, lambda: isinstance(app.screen, ConfirmScreen))
        assert "Revoke the key 'grid bot' (read + trade)?" in screen_text(app)
        await pilot.press("enter")
        await until(pilot, lambda: isinstance(app.screen, ApiKeysScreen) and "Live keys 0" in screen_text(app))
        assert rows(app, "keys-table") == []
        refused = await api.get("/account", headers=headers)
        assert refused.status_code == 401 and refused.json()["error"]["code"] == "key_revoked"


async def test_a_changed_password_signs_in_the_old_one_and_the_other_sessions_do_not(platform, api, mailbox,
                                                                                      email):
    app, client, session = await signed_in_app(platform, api, mailbox, email)
    other = (await api.post("/auth/signin", json={"email": email, "password": PASSWORD})).json()["access_token"]
    async with app.run_test(size=SIZE) as pilot:
        await until(pilot, lambda: isinstance(app.screen, DashboardScreen))
        await pilot.press("u")
        await until(pilot, lambda: isinstance(app.screen, AccountScreen))
        assert email in screen_text(app)
        await pilot.press(*"not my password", "tab", *NEW_PASSWORD, "enter")
        await until(pilot, lambda: field_error(app, "current-password") != "")  # the platform's answer, by field
        assert field_error(app, "current-password") == "The current password is wrong."
        assert "-invalid" in app.screen.query_one("#current-password").classes
        app.screen.query_one("#current-password", Input).value = PASSWORD
        app.screen.query_one("#new-password", Input).value = "password123"  # checked here first: nothing sent
        await pilot.click("#change-password")
        await until(pilot, lambda: field_error(app, "new-password") != "")
        assert field_error(app, "current-password") == ""
        app.screen.query_one("#new-password", Input).value = NEW_PASSWORD
        await pilot.click("#change-password")
        await until(pilot, lambda: "Password changed" in screen_text(app))
        assert "other sessions were signed out" in screen_text(app)
        assert app.screen.query_one("#current-password").value == app.screen.query_one("#new-password").value == ""

        assert (await client.me()).email == email  # this session stays
        assert (await api.get("/auth/me", headers={"Authorization": f"Bearer {other}"})).status_code == 401
        old = await api.post("/auth/signin", json={"email": email, "password": PASSWORD})
        assert old.status_code == 401
        new = await api.post("/auth/signin", json={"email": email, "password": NEW_PASSWORD})
        assert new.status_code == 200
        third = new.json()["access_token"]

        await pilot.click("#logout-all")  # sign out everywhere, after a confirmation
        await until(pilot, lambda: isinstance(app.screen, ConfirmScreen))
        await pilot.press("escape")  # kept
        await until(pilot, lambda: isinstance(app.screen, AccountScreen))
        assert (await api.get("/auth/me", headers={"Authorization": f"Bearer {third}"})).status_code == 200
        await pilot.click("#logout-all")
        await until(pilot, lambda: isinstance(app.screen, ConfirmScreen))
        await pilot.press("enter")
        await until(pilot, lambda: isinstance(app.screen, SignInScreen))
        assert "Signed out everywhere" in screen_text(app)
        assert app.feed_state is FeedState.CLOSED
        for token in (session["access_token"], third):
            assert (await api.get("/auth/me", headers={"Authorization": f"Bearer {token}"})).status_code == 401


async def test_a_forgotten_password_is_reset_with_the_mailed_code(platform, api, mailbox, email):
    await sign_up(api, mailbox, email, password=PASSWORD)
    app = create_app(platform.base_url, session_store=False)
    async with app.run_test(size=SIZE) as pilot:
        await until(pilot, lambda: isinstance(app.screen, SignInScreen))
        nobody = "nobody-" + email
        await pilot.press(*nobody, "ctrl+f")
        await until(pilot, lambda: isinstance(app.screen, ForgotPasswordScreen))
        assert app.screen.query_one("#email").value == nobody
        await pilot.press("enter")  # an address with no account: the same answer
        await until(pilot, lambda: isinstance(app.screen, ResetPasswordScreen))
        unknown_answer = str(app.screen.query_one(".auth-message").render())
        assert f"If an account uses {nobody}, we mailed it a 6-digit code." in unknown_answer
        await pilot.press("escape")
        await until(pilot, lambda: isinstance(app.screen, SignInScreen))
        assert mailbox.messages(nobody) == []

        app.screen.query_one("#email", Input).value = email
        await pilot.click("#forgot")
        await until(pilot, lambda: isinstance(app.screen, ForgotPasswordScreen))
        await pilot.press("enter")
        await until(pilot, lambda: isinstance(app.screen, ResetPasswordScreen))
        assert str(app.screen.query_one(".auth-message").render()).replace(email, nobody) == unknown_answer
        code = await mailbox.code_for(email, nth=2)  # the sign-up's code was the first
        wrong = "000000" if code != "000000" else "111111"
        await pilot.press(*wrong)  # six digits: on to the new password
        assert app.focused is app.screen.query_one("#password")
        await pilot.press(*NEW_PASSWORD, "enter")
        await until(pilot, lambda: form_error(app) != "")
        assert "code is wrong" in form_error(app) and "-invalid" in app.screen.query_one("#otp").classes
        app.screen.query_one("#otp", Input).value = code
        app.screen.query_one("#password", Input).focus()
        await pilot.press("enter")
        await until(pilot, lambda: isinstance(app.screen, SignInScreen))
        assert "Your password is changed" in screen_text(app)
        assert app.screen.query_one("#email").value == email and app.focused is app.screen.query_one("#password")
        await pilot.press(*PASSWORD, "enter")  # the old one no longer
        await until(pilot, lambda: form_error(app) != "")
        assert isinstance(app.screen, SignInScreen)
        app.screen.query_one("#password", Input).value = NEW_PASSWORD
        app.screen.query_one("#password", Input).focus()
        await pilot.press("enter")
        await until(pilot, lambda: isinstance(app.screen, DashboardScreen))


async def test_a_price_alert_set_with_one_key_fires_on_a_price_move_with_a_toast(platform, api, mailbox, email):
    await set_price(platform, "SOL_USDC", "180.00", "180.10")
    app, client, _session = await signed_in_app(platform, api, mailbox, email)
    async with app.run_test(size=SIZE, notifications=True) as pilot:
        await until(pilot, lambda: isinstance(app.screen, DashboardScreen) and app.feed_state is FeedState.LIVE
                    and "SOL_USDC" in app.board.tickers)
        position = await client.open_position("SOL_USDC", "long", Decimal(1), 5)  # numbered events before the alert's
        await until(pilot, lambda: position.id in app.portfolio.positions)
        app.screen.choose_market("SOL_USDC")
        bid = app.board.tickers["SOL_USDC"].bid
        await pilot.press("a")
        await until(pilot, lambda: isinstance(app.screen, NewAlertScreen))
        price = app.screen.query_one("#alert-price", Input)
        assert price.value == f"{bid:.2f}" and app.focused is price  # it starts at the bid now
        price.value = "abc"
        await pilot.press("enter")
        assert "must be a number" in field_error(app, "alert-price")
        price.value = f"{bid + 1:.2f}"  # over the bid: an alert for a rise
        await until(pilot, lambda: app.screen.query_one("#condition-above", RadioButton).value)
        app.screen.query_one("#alert-note", Input).value = "breakout"
        app.screen.query_one("#alert-mail", Checkbox).value = True
        price.focus()
        await pilot.press("enter")
        await until(pilot, lambda: isinstance(app.screen, DashboardScreen)
                    and any(title == "Alert set" for _, title, _ in app.notice_log))
        (alert,) = await client.alerts()
        assert (alert.symbol, alert.condition, alert.price, alert.note, alert.status) == \
            ("SOL_USDC", "above", bid + 1, "breakout", "active") and "mail" in alert.notify

        await pilot.press("A")
        await until(pilot, lambda: isinstance(app.screen, AlertsScreen) and rows(app, "alerts-table"))
        (row,) = rows(app, "alerts-table")
        assert row[:3] == ["active", f"SOL/USDC bid at or above {bid + 1:,.2f}", "breakout"]

        await set_price(platform, "SOL_USDC", "182.00", "182.10")  # the bid rises past it
        await until(pilot, lambda: any(title == "Price alert" for _, title, _ in app.notice_log))
        (toast,) = [message for _, title, message in app.notice_log if title == "Price alert"]
        fired = app.alerts.alerts[alert.id].triggered_value
        assert toast == f"SOL/USDC bid {fired:,.2f}: at or above {bid + 1:,.2f}. Note: breakout"
        await until(pilot, lambda: rows(app, "alerts-table")[0][0] == "triggered")  # the list follows the feed
        assert (await client.alerts("triggered"))[0].id == alert.id
        await mailbox.wait_for(email, count=2)  # the sign-up code, then the alert (it asked for mail)
        assert mailbox.messages(email)[-1]["Subject"].startswith("CFD Broker alert: SOL_USDC is above")

        await client.close_position(position.id)  # the feed's next account event after the alert's
        await until(pilot, lambda: not app.portfolio.positions)
        margin = await client.create_margin_alert(Decimal(100))
        await until(pilot, lambda: margin.id in app.alerts.alerts and len(rows(app, "alerts-table")) == 2)
        assert [title for _, title, _ in app.notice_log].count("Price alert") == 1  # told once, not again

        await pilot.press("m")  # a margin-level alert: its field error under its field
        await until(pilot, lambda: isinstance(app.screen, NewAlertScreen))
        app.screen.query_one("#alert-below", Input).value = "0"
        await pilot.press("enter")
        assert "above 0" in field_error(app, "alert-below")
        await pilot.press("escape")

        await until(pilot, lambda: isinstance(app.screen, AlertsScreen))
        table = app.screen.query_one("#alerts-table", FittedTable)
        table.focus()
        table.move_cursor(row=[r[0] for r in rows(app, "alerts-table")].index("triggered"))
        await pilot.press("d")
        await until(pilot, lambda: isinstance(app.screen, ConfirmScreen))
        await pilot.press("enter")
        await until(pilot, lambda: isinstance(app.screen, AlertsScreen) and len(rows(app, "alerts-table")) == 1)
        assert [a.id for a in await client.alerts()] == [margin.id]
        assert any(title == "Alert deleted" for _, title, _ in app.notice_log)


async def test_an_api_key_cannot_open_the_account_screens(platform, api, mailbox, email):
    """The screens say what the platform says to a key: keys and the password are for a signed-in trader."""
    session = await sign_up(api, mailbox, email, password=PASSWORD)
    created = await api.post("/api-keys", json={"name": "bot", "scopes": ["read"]},
                             headers={"Authorization": f"Bearer {session['access_token']}"})
    client = ApiClient(platform.base_url, token=created.json()["key"])
    app = create_app(platform.base_url, client, session_store=False)
    async with app.run_test(size=SIZE) as pilot:
        await until(pilot, lambda: isinstance(app.screen, DashboardScreen))
        await pilot.press("k")
        await until(pilot, lambda: isinstance(app.screen, ApiKeysScreen) and "⚠" in screen_text(app))
        refusal = (await api.get("/api-keys", headers={"Authorization": f"Bearer {client.token}"})).json()
        assert refusal["error"]["message"] in str(app.screen.query_one("#keys-summary").render())
