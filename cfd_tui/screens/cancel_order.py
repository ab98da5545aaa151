"""Cancel a working order, after saying which."""

from __future__ import annotations

from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.widgets import Button, Static

from cfd_client.errors import ClientError
from cfd_client.models import Order
from cfd_tui import format as fmt
from cfd_tui.messages import OrderChanged
from cfd_tui.notices import describe_order
from cfd_tui.screens.base import CfdModalScreen
from cfd_tui.screens.form import FormMixin, form_end
from cfd_tui.widgets.footer import AppFooter


class CancelOrderScreen(FormMixin, CfdModalScreen[Order | None]):
    """Dismissed with the cancelled order, or None when the trader keeps it."""

    BINDINGS = [Binding("escape", "keep", "Keep the order")]

    def __init__(self, order: Order) -> None:
        super().__init__()
        self.order = order

    def compose(self) -> ComposeResult:
        o = self.order
        until = "good till cancelled" if o.expires_at is None else \
            f"expires {fmt.timestamp(o.expires_at, self.ctx.tz)}"
        with Vertical(id="cancel-order-dialog", classes="dialog"):
            yield Static(f"Cancel {describe_order(o)}?", classes="dialog-title")
            yield Static(f"It is working, {until}. Once cancelled it cannot fill; nothing else changes.",
                         classes="preview")
            yield from form_end(Button("Cancel order", variant="error", id="confirm"),
                                Button("Keep it", id="keep"))
        yield AppFooter()

    def on_mount(self) -> None:
        self.query_one("#confirm", Button).focus()

    @on(Button.Pressed, "#confirm")
    def submit(self) -> None:
        self._cancel()

    @work(group="cancel-order", exclusive=True, exit_on_error=False)
    async def _cancel(self) -> None:
        button = self.query_one("#confirm", Button)
        button.disabled = True
        try:
            cancelled = await self.ctx.client.cancel_order(self.order.id)
        except ClientError as exc:  # filled or expired meanwhile (409 order_not_working), or no answer
            button.disabled = False
            self.show_failure(exc)
            return
        self.app.post_message(OrderChanged(cancelled))  # to the app: this dialog is closing
        self.dismiss(cancelled)

    @on(Button.Pressed, "#keep")
    def action_keep(self) -> None:
        self.dismiss(None)
