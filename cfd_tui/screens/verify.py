"""Enter the mailed one-time code; resend it after a visible 60-second cooldown."""

from __future__ import annotations

import math

from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Center, Vertical
from textual.widgets import Button, Label, Static

from cfd_client.errors import ClientError, Throttled
from cfd_tui.messages import SignedIn
from cfd_tui.screens.base import CfdScreen
from cfd_tui.screens.form import FormMixin, form_end
from cfd_tui.widgets.footer import AppFooter
from cfd_tui.widgets.otp_input import OtpInput
from shared.errors import BadRequest
from shared.validation import check_otp

RESEND_COOLDOWN_S = 60


class VerifyScreen(FormMixin, CfdScreen[None]):
    """Step 2 of 2: the code from the mail creates the account and signs in."""

    FIELDS = {"otp": "otp", "code": "otp", "email": "otp", "password": "otp", "name": "otp"}
    BINDINGS = [Binding("escape", "back", "Back"), Binding("ctrl+r", "resend", "Resend code")]

    def __init__(self, *, name: str, email: str, password: str, cooldown: float | None = None) -> None:
        super().__init__()
        self.trader_name = name
        self.email = email
        self.password = password
        self.cooldown_until = 0.0
        self._first_cooldown = RESEND_COOLDOWN_S if cooldown is None else cooldown
        self._verifying = False  # a code is on its way to the server

    def compose(self) -> ComposeResult:
        with Center(), Vertical(id="auth-box", classes="auth-box"):
            yield Static("▲▼ CFD Broker", classes="auth-brand")
            yield Static("Create an account · step 2 of 2", classes="auth-title")
            yield Static(f"We mailed a 6-digit code to [b]{self.email}[/b]. It is valid for 10 minutes.",
                         classes="auth-message -shown")
            hint = self.ctx.code_hint
            if hint:
                yield Static(hint, classes="auth-hint", markup=False)
            yield Label("Code")
            yield OtpInput(id="otp")
            yield from form_end(Button("Verify", variant="primary", id="verify"),
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
        if len(event.value) == 6:
            self.submit()

    @on(OtpInput.Submitted, "#otp")
    @on(Button.Pressed, "#verify")
    def submit(self) -> None:
        if self._verifying:
            # the sixth digit sent the code; an Enter typed after it would cancel that request and send the
            # code again, which the first one may already have used
            return
        try:
            code = check_otp(self.query_one("#otp", OtpInput).value)
        except BadRequest as exc:
            self.show_errors({"otp": exc.message})
            return
        self.clear_errors()
        self._verifying = True
        self._verify(code)

    @work(group="auth", exclusive=True, exit_on_error=False)
    async def _verify(self, code: str) -> None:
        button = self.query_one("#verify", Button)
        button.disabled, button.label = True, "Verifying…"
        try:
            session = await self.ctx.client.verify(self.email, code, self.password,
                                                   self.trader_name)
        except ClientError as exc:
            self.show_failure(exc)
            self.query_one("#otp", OtpInput).value = ""
            return
        finally:
            button.disabled, button.label = False, "Verify"
            self._verifying = False
        self.app.post_message(SignedIn(session))  # to the app: it replaces this screen

    @on(Button.Pressed, "#resend")
    def action_resend(self) -> None:
        if self.ctx.clock() < self.cooldown_until:
            return
        self._resend()

    @work(group="auth", exclusive=True, exit_on_error=False)
    async def _resend(self) -> None:
        try:
            await self.ctx.client.signup(self.email)
        except Throttled as exc:
            self._start_cooldown(exc.retry_after or RESEND_COOLDOWN_S)
            self.show_failure(exc)
            return
        except ClientError as exc:
            self.show_failure(exc)
            return
        self.clear_errors()
        self._start_cooldown(RESEND_COOLDOWN_S)
        self.notify(f"A new code is on its way to {self.email}.", title="Code sent")

    def action_back(self) -> None:
        self.app.pop_screen()
