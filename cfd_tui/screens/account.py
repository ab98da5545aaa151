"""The account: who is signed in, a new password (the other sessions end), signing out everywhere, and the way
to the API keys."""

from __future__ import annotations

from rich.markup import escape
from textual import events, on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.widgets import Button, Input, Static

from cfd_client.errors import ClientError
from cfd_tui import format as fmt
from cfd_tui.messages import SignedOut
from cfd_tui.screens.api_keys import ApiKeysScreen
from cfd_tui.screens.base import CfdScreen
from cfd_tui.screens.confirm import ConfirmScreen
from cfd_tui.screens.form import NEXT_ON_ENTER, FormMixin, form_field
from cfd_tui.widgets.footer import AppFooter
from cfd_tui.widgets.top_bar import TopBar
from shared.errors import BadRequest
from shared.validation import PASSWORD_MIN, check_password

SIGNED_OUT_EVERYWHERE = "Signed out everywhere: every session of this account has ended. API keys still work."


class AccountScreen(FormMixin, CfdScreen[None]):
    """Pushed over the dashboard; Esc goes back."""

    FIELDS = {"current_password": "current-password", "new_password": "new-password", "password": "new-password"}
    BINDINGS = [Binding("escape", "back", "Back")]

    def compose(self) -> ComposeResult:
        user = self.ctx.user
        yield TopBar(screen_name="Account", id="top-bar")
        who = "" if user is None else (f"[b]{escape(user.name)}[/b] · {escape(user.email)} · trading since "
                                       f"{fmt.timestamp(user.created_at, self.ctx.tz)[:10]}")
        yield Static(who, id="account-who", classes="screen-summary")
        with VerticalScroll(id="account-page"):
            with Vertical(id="password-box", classes="account-section"):
                with Vertical(classes="form-fields"):
                    yield from form_field("Current password", "current-password", password=True,
                                          classes=NEXT_ON_ENTER)
                    yield from form_field("New password", "new-password", password=True,
                                          placeholder=f"at least {PASSWORD_MIN} characters, not easy to guess")
                yield Static("Your other sessions (other terminals, scripts signed in with the password) end when it "
                             "changes; this one stays signed in.", classes="section-hint")
                yield Static("", id="form-error", classes="form-error")
                yield Static("", id="password-done", classes="form-done")
                with Horizontal(classes="dialog-buttons"):
                    yield Button("Change password", variant="primary", id="change-password")
            with Vertical(id="sessions-box", classes="account-section"):
                yield Static("Signing out everywhere ends every session of this account at once, this one too. "
                             "API keys keep working: revoke them under API keys.", classes="section-hint")
                with Horizontal(classes="dialog-buttons"):
                    yield Button("Sign out everywhere", variant="error", id="logout-all")
                    yield Button("API keys…", id="api-keys")
        yield AppFooter()

    def on_resize(self, event: events.Resize) -> None:
        self.query_one(AppFooter).fit(event.size.width)

    def on_mount(self) -> None:
        self.query_one("#password-box").border_title = "Change password"
        self.query_one("#sessions-box").border_title = "Sessions and API keys"
        self.query_one("#current-password", Input).focus()

    def action_back(self) -> None:
        self.app.pop_screen()

    # --- password -----------------------------------------------------------------------------------------

    @on(Input.Submitted, "#new-password")
    @on(Button.Pressed, "#change-password")
    def change_password(self) -> None:
        current = self.query_one("#current-password", Input).value
        new = self.query_one("#new-password", Input).value
        user = self.ctx.user
        errors: dict[str, str] = {}
        if not current:
            errors["current_password"] = "Enter your current password."
        try:
            check_password(new, user.email if user else "", user.name if user else "")
        except BadRequest as exc:
            errors["new_password"] = exc.message
        if not errors and new == current:
            errors["new_password"] = "The new password is the current one; choose another."
        self._done("")
        if errors:
            self.show_errors(errors)
            return
        self.clear_errors()
        self._change(current, new)

    @work(group="password", exclusive=True, exit_on_error=False)
    async def _change(self, current: str, new: str) -> None:
        button = self.query_one("#change-password", Button)
        button.disabled, button.label = True, "Changing…"
        try:
            await self.ctx.client.change_password(current, new)
        except ClientError as exc:  # wrong_password, weak_password (by field), too_many_attempts, no answer
            self.show_failure(exc)
            return
        finally:
            button.disabled, button.label = False, "Change password"
        for field in ("#current-password", "#new-password"):
            self.query_one(field, Input).value = ""
        self._done("✓ Password changed. Your other sessions were signed out; this one stays signed in.")
        self.notify("Your other sessions were signed out.", title="Password changed")

    def _done(self, text: str) -> None:
        done = self.query_one("#password-done", Static)
        done.update(text)
        done.set_class(bool(text), "-shown")

    # --- sessions, keys -----------------------------------------------------------------------------------

    @on(Button.Pressed, "#logout-all")
    def sign_out_everywhere(self) -> None:
        client = self.ctx.client

        def done(ended: bool | None) -> None:
            if ended:
                self.app.post_message(SignedOut(SIGNED_OUT_EVERYWHERE))

        self.app.push_screen(ConfirmScreen(
            "Sign out everywhere?",
            "Every session of this account ends now: other terminals, browsers and scripts signed in with the "
            "password, and this one (you sign in again here). API keys keep working.",
            "Sign out everywhere", client.logout_all, keep="Stay signed in", dialog_id="logout-all-dialog"), done)

    @on(Button.Pressed, "#api-keys")
    def action_api_keys(self) -> None:
        self.app.push_screen(ApiKeysScreen())
