"""Close a position, whole or in part, after seeing the PnL it would realise."""

from __future__ import annotations

from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.widgets import Button, Input, Label, Static

from cfd_client.errors import ClientError
from cfd_client.models import Position
from cfd_tui import format as fmt
from cfd_tui.messages import PositionClosed
from cfd_tui.notices import describe
from cfd_tui.orders import check_close, close_estimate
from cfd_tui.screens.base import CfdModalScreen
from cfd_tui.screens.form import FormMixin, form_end
from cfd_tui.widgets.field import Field
from cfd_tui.widgets.footer import AppFooter


class ClosePositionScreen(FormMixin, CfdModalScreen[Position | None]):
    """Dismissed with the closed part, or None when cancelled."""

    FIELDS = {"qty": "close-qty"}
    BINDINGS = [Binding("escape", "cancel", "Cancel")]

    def __init__(self, position: Position, partial: bool = False) -> None:
        super().__init__()
        self.position = position
        self.partial = partial

    def compose(self) -> ComposeResult:
        p = self.position
        market = self.ctx.board.markets[p.symbol]
        with Vertical(id="close-dialog", classes="dialog"):
            yield Static(f"Close {describe(p)}", classes="dialog-title")
            yield Label(f"Quantity to close (of {fmt.qty(p.qty, market.qty_step)}; empty or all closes the whole)")
            yield Field(value=f"{p.qty.normalize():f}", id="close-qty", compact=True)
            yield Static("", id="close-preview", classes="preview")
            yield from form_end(Button("Close position", variant="error", id="confirm"), Button("Cancel", id="cancel"))
        yield AppFooter()

    def on_mount(self) -> None:
        qty = self.query_one("#close-qty", Input)
        qty.focus()
        if not self.partial:
            self.query_one("#confirm", Button).focus()
        self._preview()
        self.watch(self.app, "market_version", lambda _v: self._preview(), init=False)

    @on(Input.Changed)
    def _preview(self) -> None:
        p = self.position
        market = self.ctx.board.markets[p.symbol]
        qty, error = check_close(p, market, self.query_one("#close-qty", Input).value)
        quote = self.ctx.board.quotes().get(p.symbol)
        estimate = None if error else close_estimate(p, quote, qty)
        price = None if quote is None else (quote.bid if p.side == "long" else quote.ask)
        self.query_one("#close-preview", Static).update(
            f"[dim]At about[/] {fmt.price(price, market.price_tick)}   "
            f"[dim]PnL realised ≈[/] {fmt.money(estimate, signed=True)} USD")
        self.query_one("#confirm", Button).label = "Close position" if qty is None else "Close part"

    @on(Input.Submitted)
    @on(Button.Pressed, "#confirm")
    def submit(self) -> None:
        p = self.position
        qty, error = check_close(p, self.ctx.board.markets[p.symbol],
                                 self.query_one("#close-qty", Input).value)
        if error:
            self.show_errors({"qty": error})
            return
        self.clear_errors()
        self._close(qty)

    @work(group="close", exclusive=True, exit_on_error=False)
    async def _close(self, qty) -> None:
        button = self.query_one("#confirm", Button)
        button.disabled = True
        try:
            closed = await self.ctx.client.close_position(self.position.id, qty)
        except ClientError as exc:
            button.disabled = False
            self.show_failure(exc)
            return
        self.app.post_message(PositionClosed(closed))  # to the app: this dialog is closing
        self.dismiss(closed)

    @on(Button.Pressed, "#cancel")
    def action_cancel(self) -> None:
        self.dismiss(None)
