"""Set, change or remove the stop-loss, take-profit and trailing stop of an open position."""

from __future__ import annotations

from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Grid, Vertical
from textual.widgets import Button, Input, Label, Static

from cfd_client.errors import ClientError
from cfd_client.models import Position
from cfd_tui import format as fmt
from cfd_tui.messages import StopsChanged
from cfd_tui.notices import describe
from cfd_tui.orders import check_new_stops
from cfd_tui.screens.base import CfdModalScreen
from cfd_tui.screens.form import FormMixin, form_end
from cfd_tui.widgets.field import Field
from cfd_tui.widgets.footer import AppFooter


class EditStopsScreen(FormMixin, CfdModalScreen[Position | None]):
    """Dismissed with the updated position, or None when cancelled; an empty field removes that stop. A trailing
    distance makes the stop-loss follow the price; emptied, the stop-loss stays where it got to."""

    FIELDS = {"stop_loss": "new-stop-loss", "take_profit": "new-take-profit", "trailing_distance": "new-trailing"}
    BINDINGS = [Binding("escape", "cancel", "Cancel")]

    def __init__(self, position: Position) -> None:
        super().__init__()
        self.position = position

    def compose(self) -> ComposeResult:
        p = self.position
        with Vertical(id="stops-dialog", classes="dialog"):
            yield Static(f"Stops of {describe(p)}", classes="dialog-title")
            with Grid(id="stops-fields"):
                yield Label("Stop-loss")
                yield Field(value="" if p.stop_loss is None else f"{p.stop_loss.normalize():f}", id="new-stop-loss",
                            placeholder="none", compact=True)
                yield Label("Take-profit")
                yield Field(value="" if p.take_profit is None else f"{p.take_profit.normalize():f}",
                            id="new-take-profit", placeholder="none", compact=True)
                yield Label("Trailing distance")
                yield Field(value="" if p.trailing_distance is None else f"{p.trailing_distance.normalize():f}",
                            id="new-trailing", placeholder="none: the stop-loss stays put", compact=True)
            yield Static("", id="stops-hint", classes="preview")
            yield from form_end(Button("Save stops", variant="primary", id="save"), Button("Cancel", id="cancel"))
        yield AppFooter()

    def on_mount(self) -> None:
        self.query_one("#new-stop-loss", Input).focus()
        self._show_price()
        self.watch(self.app, "market_version", lambda _v: self._show_price(), init=False)

    def _show_price(self) -> None:
        """The price the position would close at now (it follows the feed)."""
        p = self.position
        market = self.ctx.board.markets[p.symbol]
        quote = self.ctx.board.quotes().get(p.symbol)
        price = None if quote is None else (quote.bid if p.side == "long" else quote.ask)
        below, above = ("below", "above") if p.side == "long" else ("above", "below")
        self.query_one("#stops-hint", Static).update(
            f"[dim]Closes at[/] {fmt.price(price, market.price_tick)} now · stop-loss {below}, take-profit {above} "
            "it · empty removes a stop\n[dim]A trailing distance moves the stop-loss after the price, never back.[/]")

    @on(Input.Submitted)
    @on(Button.Pressed, "#save")
    def submit(self) -> None:
        p = self.position
        changed, errors = check_new_stops(p, self.ctx.board.markets[p.symbol],
                                          self.ctx.board.quotes().get(p.symbol),
                                          self.query_one("#new-stop-loss", Input).value,
                                          self.query_one("#new-take-profit", Input).value,
                                          self.query_one("#new-trailing", Input).value)
        if errors:
            self.show_errors(errors)
            return
        self.clear_errors()
        if not changed:
            self.dismiss(None)
            return
        self._save(changed)

    @work(group="stops", exclusive=True, exit_on_error=False)
    async def _save(self, changed) -> None:
        try:
            updated = await self.ctx.client.modify_position(self.position.id, **changed)
        except ClientError as exc:
            self.show_failure(exc)
            return
        self.app.post_message(StopsChanged(updated))  # to the app: this dialog is closing
        self.dismiss(updated)

    @on(Button.Pressed, "#cancel")
    def action_cancel(self) -> None:
        self.dismiss(None)
