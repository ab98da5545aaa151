"""Create an account: name, email and password, checked here first, then a code is mailed."""

from __future__ import annotations

from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Center, Vertical
from textual.widgets import Button, Input, Label, Static

from cfd_client.errors import ClientError, Throttled
from cfd_tui.screens.base import CfdScreen
from cfd_tui.screens.form import NEXT_ON_ENTER, FormMixin, form_end
from cfd_tui.screens.verify import VerifyScreen
from cfd_tui.widgets.field import Field
from cfd_tui.widgets.footer import AppFooter
from shared.errors import BadRequest
from shared.validation import PASSWORD_MIN, check_name, check_password, normalise_email


class SignUpScreen(FormMixin, CfdScreen[None]):
    """Step 1 of 2: the details; step 2 is the code (`VerifyScreen`)."""

    FIELDS = {"email": "email", "password": "password", "name": "name"}
    BINDINGS = [Binding("escape", "back", "Back to sign in")]

    def __init__(self, email: str = "") -> None:
        super().__init__()
        self.email = email

    def compose(self) -> ComposeResult:
        with Center(), Vertical(id="auth-box", classes="auth-box"):
            yield Static("▲▼ CFD Broker", classes="auth-brand")
            yield Static("Create an account · step 1 of 2", classes="auth-title")
            yield Static("A demo account starts with 10,000 USD.", classes="auth-message -shown")
            yield Label("Name")
            yield Field(placeholder="Ada Trader", id="name", classes=NEXT_ON_ENTER)
            yield Label("Email")
            yield Field(value=self.email, placeholder="you@example.com", id="email", classes=NEXT_ON_ENTER)
            yield Label(f"Password (at least {PASSWORD_MIN} characters)")
            yield Field(placeholder="a long passphrase", password=True, id="password")
            yield from form_end(Button("Email me a code", variant="primary", id="send"),
                                Button("Back", id="back"), classes="auth-buttons")
        yield AppFooter()

    def on_mount(self) -> None:
        self.query_one("#name", Input).focus()

    @on(Input.Submitted, "#password")
    @on(Button.Pressed, "#send")
    def submit(self) -> None:
        raw_name = self.query_one("#name", Input).value
        raw_email = self.query_one("#email", Input).value
        password = self.query_one("#password", Input).value
        errors: dict[str, str] = {}
        name = email = ""
        try:
            name = check_name(raw_name)
        except BadRequest as exc:
            errors["name"] = exc.message
        try:
            email = normalise_email(raw_email)
        except BadRequest as exc:
            errors["email"] = exc.message
        try:
            check_password(password, email or raw_email)
        except BadRequest as exc:
            errors["password"] = exc.message
        if errors:
            self.show_errors(errors)
            return
        self.clear_errors()
        self._send_code(name, email, password)

    @work(group="auth", exclusive=True, exit_on_error=False)
    async def _send_code(self, name: str, email: str, password: str) -> None:
        button = self.query_one("#send", Button)
        button.disabled = True
        cooldown = None
        try:
            await self.ctx.client.signup(email)
        except Throttled as exc:  # a code went out a moment ago: it is still good, go and enter it
            cooldown = exc.retry_after
        except ClientError as exc:
            self.show_failure(exc)
            return
        finally:
            button.disabled = False
        verify = VerifyScreen(name=name, email=email, password=password, cooldown=cooldown)
        self.app.call_later(self.app.switch_screen, verify)  # not from this worker: its screen goes away

    @on(Button.Pressed, "#back")
    def action_back(self) -> None:
        self.app.pop_screen()
