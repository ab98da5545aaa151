"""Sign in with email and password, or go on to create an account, or to reset a forgotten password."""

from __future__ import annotations

from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Center, Vertical
from textual.widgets import Button, Input, Label, Static

from cfd_client.errors import ClientError
from cfd_tui.messages import SignedIn
from cfd_tui.screens.base import CfdScreen
from cfd_tui.screens.forgot_password import ForgotPasswordScreen
from cfd_tui.screens.form import NEXT_ON_ENTER, FormMixin, form_end
from cfd_tui.screens.signup import SignUpScreen
from cfd_tui.widgets.field import Field
from cfd_tui.widgets.footer import AppFooter
from shared.errors import BadRequest
from shared.validation import normalise_email


class SignInScreen(FormMixin, CfdScreen[None]):
    """The first screen without a saved session."""

    FIELDS = {"email": "email", "password": "password"}
    BINDINGS = [Binding("ctrl+n", "sign_up", "Create account"), Binding("ctrl+f", "forgot", "Forgot password")]

    def __init__(self, message: str = "", email: str = "") -> None:
        super().__init__()
        self.message = message
        self.email = email

    def compose(self) -> ComposeResult:
        with Center(), Vertical(id="auth-box", classes="auth-box"):
            yield Static("▲▼ CFD Broker", classes="auth-brand")
            yield Static("Sign in to trade", classes="auth-title")
            yield Static(self.message, id="auth-message", classes="auth-message")
            yield Label("Email")
            yield Field(value=self.email, placeholder="you@example.com", id="email", classes=NEXT_ON_ENTER)
            yield Label("Password")
            yield Field(placeholder="your password", password=True, id="password")
            yield from form_end(Button("Sign in", variant="primary", id="signin"),
                                Button("Create an account", id="signup"),
                                Button("Forgot password?", id="forgot"), classes="auth-buttons")
            yield Static(f"server {self.ctx.api_url}", classes="auth-server")
        yield AppFooter()

    def on_mount(self) -> None:
        self.query_one("#auth-message").display = bool(self.message)
        self.query_one("#password" if self.email else "#email", Input).focus()

    @on(Input.Submitted, "#password")
    @on(Button.Pressed, "#signin")
    def action_submit(self) -> None:
        email = self.query_one("#email", Input).value
        password = self.query_one("#password", Input).value
        errors = {}
        try:
            email = normalise_email(email)
        except BadRequest as exc:
            errors["email"] = exc.message
        if not password:
            errors["password"] = "Enter your password."
        if errors:
            self.show_errors(errors)
            return
        self.clear_errors()
        self._sign_in(email, password)

    @work(group="auth", exclusive=True, exit_on_error=False)
    async def _sign_in(self, email: str, password: str) -> None:
        button = self.query_one("#signin", Button)
        button.disabled, button.label = True, "Signing in…"
        try:
            session = await self.ctx.client.signin(email, password)
        except ClientError as exc:
            self.show_failure(exc)
            return
        finally:
            button.disabled, button.label = False, "Sign in"
        self.app.post_message(SignedIn(session))  # to the app: it replaces this screen

    @on(Button.Pressed, "#signup")
    def action_sign_up(self) -> None:
        email = self.query_one("#email", Input).value
        self.app.push_screen(SignUpScreen(email=email))

    @on(Button.Pressed, "#forgot")
    def action_forgot(self) -> None:
        email = self.query_one("#email", Input).value
        self.app.push_screen(ForgotPasswordScreen(email=email))
