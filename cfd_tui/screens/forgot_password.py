"""A forgotten password: the account's email, then the mailed code and a new password. The answers are the same
whether or not an account has the address, so nothing here tells who is registered."""

from __future__ import annotations

import math

from rich.markup import escape
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Center, Vertical
from textual.widgets import Button, Input, Label, Static

from cfd_client.errors import ClientError, Throttled
from cfd_tui.layout import SHORT_BELOW
from cfd_tui.messages import PasswordReset
from cfd_tui.screens.base import CfdScreen
from cfd_tui.screens.form import NEXT_ON_ENTER, FormMixin, form_end
from cfd_tui.widgets.field import Field
from cfd_tui.widgets.footer import AppFooter
from cfd_tui.widgets.otp_input import OtpInput
from shared.errors import BadRequest
from shared.validation import PASSWORD_MIN, check_otp, check_password, normalise_email

RESEND_COOLDOWN_S = 60


class ForgotPasswordScreen(FormMixin, CfdScreen[None]):
    """Step 1 of 2: the email; step 2 is the code and the new password (`ResetPasswordScreen`)."""

    FIELDS = {"email": "email"}
    BINDINGS = [Binding("escape", "back", "Back to sign in")]

    def __init__(self, email: str = "") -> None:
        super().__init__()
        self.email = email

    def compose(self) -> ComposeResult:
        with Center(), Vertical(id="auth-box", classes="auth-box"):
            yield Static("▲▼ CFD Broker", classes="auth-brand")
            yield Static("Reset your password · step 1 of 2", classes="auth-title")
            yield Static("Enter your account's email: we mail it a 6-digit code to set a new password with.",
                         classes="auth-message -shown")
            yield Label("Email")
            yield Field(value=self.email, placeholder="you@example.com", id="email")
            yield from form_end(Button("Email me a code", variant="primary", id="send"),
                                Button("Back", id="back"), classes="auth-buttons")
        yield AppFooter()

    def on_mount(self) -> None:
        self.query_one("#email", Input).focus()

    @on(Input.Submitted, "#email")
    @on(Button.Pressed, "#send")
    def submit(self) -> None:
        try:
            email = normalise_email(self.query_one("#email", Input).value)
        except BadRequest as exc:
            self.show_errors({"email": exc.message})
            return
        self.clear_errors()
        self._send_code(email)

    @work(group="auth", exclusive=True, exit_on_error=False)
    async def _send_code(self, email: str) -> None:
        button = self.query_one("#send", Button)
        button.disabled, button.label = True, "Sending…"  # a code asked for a moment ago: the client waits
        cooldown = None
        try:
            await self.ctx.client.forgot_password(email)
        except Throttled as exc:
            if exc.code != "resend_too_soon":  # too many requests from this address: nothing was sent
                self.show_failure(exc)
                return
            cooldown = exc.retry_after  # a code went out a moment ago: it is still good, go and enter it
        except ClientError as exc:
            self.show_failure(exc)
            return
        finally:
            button.disabled, button.label = False, "Email me a code"
        reset = ResetPasswordScreen(email=email, cooldown=cooldown)
        self.app.call_later(self.app.switch_screen, reset)  # not from this worker: its screen goes away

    @on(Button.Pressed, "#back")
    def action_back(self) -> None:
        self.app.pop_screen()


class ResetPasswordScreen(FormMixin, CfdScreen[None]):
    """Step 2 of 2: the mailed code and the new password; every session of the account ends, and the sign-in
    screen comes back with the email filled in."""

    FIELDS = {"otp": "otp", "code": "otp", "password": "password", "email": "otp"}
    BINDINGS = [Binding("escape", "back", "Back to sign in"), Binding("ctrl+r", "resend", "Resend code")]
    # Two fields and the outbox hint of a local platform: it gets the short terminal's one-line fields below 33
    # lines (the others below 28), so the whole form stays in sight.
    VERTICAL_BREAKPOINTS = [(0, "-short"), (SHORT_BELOW + 5, "-tall")]

    def __init__(self, *, email: str, cooldown: float | None = None) -> None:
        super().__init__()
        self.email = email
        self.cooldown_until = 0.0
        self._first_cooldown = RESEND_COOLDOWN_S if cooldown is None else cooldown

    def compose(self) -> ComposeResult:
        with Center(), Vertical(id="auth-box", classes="auth-box"):
            yield Static("▲▼ CFD Broker", classes="auth-brand")
            yield Static("Reset your password · step 2 of 2", classes="auth-title")
            yield Static(f"If an account uses [b]{escape(self.email)}[/b], we mailed it a 6-digit code. It is valid "
                         "for 10 minutes.", classes="auth-message -shown")
            hint = self.ctx.code_hint
            if hint:
                yield Static(hint, classes="auth-hint", markup=False)
            yield Label("Code")
            yield OtpInput(id="otp", classes=NEXT_ON_ENTER)
            yield Label(f"New password (at least {PASSWORD_MIN} characters)")
            yield Field(placeholder="a long passphrase", password=True, id="password")
            yield from form_end(Button("Set new password", variant="primary", id="reset"),
                                Button("Resend code", id="resend", disabled=True), classes="auth-buttons")
        yield AppFooter()

    def on_mount(self) -> None:
        self._start_cooldown(self._first_cooldown)
        self.set_interval(1.0, self._tick)
        self.query_one("#otp", OtpInput).focus()

    def _start_cooldown(self, seconds: float) -> None:
        self.cooldown_until = self.ctx.clock() + seconds
        self._tick()

    def _tick(self) -> None:
        left = math.ceil(self.cooldown_until - self.ctx.clock())
        button = self.query_one("#resend", Button)
        button.disabled = left > 0
        button.label = f"Resend in {left} s" if left > 0 else "Resend code"

    @on(OtpInput.Changed, "#otp")
    def _typed(self, event: OtpInput.Changed) -> None:
        if len(event.value) == 6 and self.focused is event.input:
            self.query_one("#password", Input).focus()  # the code is whole: on to the new password

    @on(Input.Submitted, "#password")
    @on(Button.Pressed, "#reset")
    def submit(self) -> None:
        errors: dict[str, str] = {}
        code = ""
        try:
            code = check_otp(self.query_one("#otp", OtpInput).value)
        except BadRequest as exc:
            errors["otp"] = exc.message
        password = self.query_one("#password", Input).value
        try:
            check_password(password, self.email)
        except BadRequest as exc:
            errors["password"] = exc.message
        if errors:
            self.show_errors(errors)
            return
        self.clear_errors()
        self._reset(code, password)

    @work(group="auth", exclusive=True, exit_on_error=False)
    async def _reset(self, code: str, password: str) -> None:
        button = self.query_one("#reset", Button)
        button.disabled, button.label = True, "Setting…"
        try:
            await self.ctx.client.reset_password(self.email, code, password)
        except ClientError as exc:  # invalid_code, code_burned (the code), weak_password (the password), throttled
            self.show_failure(exc)
            return
        finally:
            button.disabled, button.label = False, "Set new password"
        self.app.post_message(PasswordReset(self.email))  # to the app: it shows the sign-in screen again

    @on(Button.Pressed, "#resend")
    def action_resend(self) -> None:
        if self.ctx.clock() < self.cooldown_until:
            return
        self._resend()

    @work(group="auth", exclusive=True, exit_on_error=False)
    async def _resend(self) -> None:
        try:
            await self.ctx.client.forgot_password(self.email)
        except Throttled as exc:
            self._start_cooldown(exc.retry_after or RESEND_COOLDOWN_S)
            self.show_failure(exc)
            return
        except ClientError as exc:
            self.show_failure(exc)
            return
        self.clear_errors()
        self._start_cooldown(RESEND_COOLDOWN_S)
        self.notify(f"If an account uses {self.email}, a new code is on its way.", title="Code sent", markup=False)

    def action_back(self) -> None:
        self.app.pop_screen()
