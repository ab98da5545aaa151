"""Change a working order: its price, quantity, stops, trailing distance or expiry."""

from __future__ import annotations

from typing import Any

from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Grid, Vertical
from textual.widgets import Button, Input, Label, Static

from cfd_client.errors import ClientError
from cfd_client.models import Order
from cfd_tui import format as fmt
from cfd_tui.messages import OrderChanged
from cfd_tui.notices import describe_order
from cfd_tui.orders import ORDER_FIELDS, check_order_edit
from cfd_tui.screens.base import CfdModalScreen
from cfd_tui.screens.form import FormMixin, form_end
from cfd_tui.screens.ticket import trigger_words
from cfd_tui.widgets.field import Field
from cfd_tui.widgets.footer import AppFooter

LABELS = {"price": "Price", "qty": "Quantity", "stop_loss": "Stop-loss", "take_profit": "Take-profit",
          "trailing_distance": "Trailing distance", "expires_at": "Expires"}
PLACEHOLDERS = {"stop_loss": "none", "take_profit": "none", "trailing_distance": "none",
                "expires_at": "GTC · 1h · 2d · 17:30"}


def field_id(name: str) -> str:
    return "order-" + name.replace("_", "-")


class EditOrderScreen(FormMixin, CfdModalScreen[Order | None]):
    """Dismissed with the order as the server now has it, or None when cancelled or nothing changed. Only the
    fields edited are sent; an empty stop, trailing distance or expiry removes it (no expiry: good till
    cancelled)."""

    FIELDS = {name: field_id(name) for name in ORDER_FIELDS}
    BINDINGS = [Binding("escape", "cancel", "Cancel")]

    def __init__(self, order: Order) -> None:
        super().__init__()
        self.order = order
        self.shown: dict[str, str] = {}

    def compose(self) -> ComposeResult:
        o = self.order
        tz = self.ctx.tz

        def text(value: Any) -> str:
            return "" if value is None else f"{value.normalize():f}"

        self.shown = {"price": text(o.price), "qty": text(o.qty), "stop_loss": text(o.stop_loss),
                      "take_profit": text(o.take_profit), "trailing_distance": text(o.trailing_distance),
                      "expires_at": "" if o.expires_at is None else fmt.timestamp(o.expires_at, tz)}
        with Vertical(id="edit-order-dialog", classes="dialog"):
            yield Static(f"Modify {describe_order(o)}", classes="dialog-title")
            with Grid(id="order-fields"):
                for name in ORDER_FIELDS:
                    yield Label(LABELS[name])
                    yield Field(value=self.shown[name], id=field_id(name), placeholder=PLACEHOLDERS.get(name, ""),
                                compact=True)
            yield Static("", id="edit-order-hint", classes="preview")
            yield from form_end(Button("Save order", variant="primary", id="save"), Button("Cancel", id="cancel"))
        yield AppFooter()

    def on_mount(self) -> None:
        self.query_one(f"#{field_id('price')}", Input).focus()
        self._show_price()
        self.watch(self.app, "market_version", lambda _v: self._show_price(), init=False)

    def _show_price(self) -> None:
        """What the order waits for, and the price it is compared with now (it follows the feed)."""
        o = self.order
        market = self.ctx.board.markets[o.symbol]
        quote = self.ctx.board.quotes().get(o.symbol)
        series, direction = trigger_words(o.side, o.type)
        now = None if quote is None else (quote.ask if o.side == "long" else quote.bid)
        self.query_one("#edit-order-hint", Static).update(
            f"[dim]Fills when the {series} is {direction} its price · {series} now[/] "
            f"{fmt.price(now, market.price_tick)}\n[dim]An empty stop, trailing distance or expiry removes it.[/]")

    def typed(self) -> dict[str, str]:
        return {name: self.query_one(f"#{field_id(name)}", Input).value for name in ORDER_FIELDS}

    @on(Input.Submitted)
    @on(Button.Pressed, "#save")
    def submit(self) -> None:
        o = self.order
        changes, errors = check_order_edit(o, self.ctx.board.markets[o.symbol], self.typed(), self.shown,
                                           int(self.ctx.clock() * 1000), self.ctx.tz)
        if errors:
            self.show_errors(errors)
            return
        self.clear_errors()
        if not changes:
            self.dismiss(None)
            return
        self._save(changes)

    @work(group="modify-order", exclusive=True, exit_on_error=False)
    async def _save(self, changes: dict[str, Any]) -> None:
        try:
            changed = await self.ctx.client.modify_order(self.order.id, **changes)
        except ClientError as exc:
            self.show_failure(exc)
            return
        self.app.post_message(OrderChanged(changed))  # to the app: this dialog is closing
        self.dismiss(changed)

    @on(Button.Pressed, "#cancel")
    def action_cancel(self) -> None:
        self.dismiss(None)
