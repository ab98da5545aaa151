"""Close every open position, or those of one market, after seeing how many."""

from __future__ import annotations

from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.widgets import Button, Static

from cfd_client.errors import ClientError
from cfd_client.models import Position
from cfd_tui.messages import PositionsClosed
from cfd_tui.screens.base import CfdModalScreen
from cfd_tui.screens.form import FormMixin, form_end
from cfd_tui.widgets.footer import AppFooter


def count(n: int) -> str:
    return f"{n} position{'s' if n != 1 else ''}"


class CloseAllScreen(FormMixin, CfdModalScreen[list[Position] | None]):
    """Dismissed with the closed positions, or None when cancelled. `symbol` is the selected market: when it
    holds some of the open positions (not all), a second button closes only those."""

    BINDINGS = [Binding("escape", "cancel", "Cancel")]

    def __init__(self, symbol: str) -> None:
        super().__init__()
        self.symbol = symbol

    def compose(self) -> ComposeResult:
        positions = list(self.ctx.portfolio.positions.values())
        here = sum(1 for p in positions if p.symbol == self.symbol)
        market = self.symbol.replace("_", "/")
        markets = len({p.symbol for p in positions})
        where = f"in {markets} market{'s' if markets != 1 else ''}"
        buttons = [Button(f"Close all {len(positions)}", variant="error", id="close-all")]
        if 0 < here < len(positions):
            buttons.append(Button(f"Only {market} ({here})", variant="warning", id="close-market"))
        buttons.append(Button("Cancel", id="cancel"))
        with Vertical(id="close-all-dialog", classes="dialog"):
            yield Static(f"Close all {count(len(positions))}?", classes="dialog-title")
            if here == len(positions):
                spread = f"all in {market}"
            else:
                spread = f"{where}, {here or 'none'} of them in {market}"
            yield Static(f"{count(len(positions)).capitalize()} open, {spread}. Each closes at the current price "
                         "(a long at the bid, a short at the ask), all or none.", id="close-all-summary",
                         classes="preview")
            yield from form_end(*buttons)
        yield AppFooter()

    def on_mount(self) -> None:
        self.query_one("#close-all", Button).focus()

    @on(Button.Pressed, "#close-all")
    def close_everything(self) -> None:
        self._close(None)

    @on(Button.Pressed, "#close-market")
    def close_market(self) -> None:
        self._close(self.symbol)

    @work(group="close-all", exclusive=True, exit_on_error=False)
    async def _close(self, symbol: str | None) -> None:
        for button in self.query(Button):
            button.disabled = True
        try:
            closed = await self.ctx.client.close_all(symbol)
        except ClientError as exc:  # a market without a live price: nothing closed
            for button in self.query(Button):
                button.disabled = False
            self.show_failure(exc)
            return
        self.app.post_message(PositionsClosed(closed, symbol))  # to the app: this dialog is closing
        self.dismiss(closed)

    @on(Button.Pressed, "#cancel")
    def action_cancel(self) -> None:
        self.dismiss(None)
