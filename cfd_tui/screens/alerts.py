"""Alerts: the active ones and those that fired, kept up to date by the feed; set a price or a margin-level
alert, delete one."""

from __future__ import annotations

from rich.text import Text
from textual import events, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.widgets import Static

from cfd_client.errors import ClientError
from cfd_client.models import Alert
from cfd_tui import format as fmt
from cfd_tui.alerts import describe_alert, fired_value, market_name
from cfd_tui.messages import AlertDeleted, AlertsLoaded
from cfd_tui.screens.base import CfdScreen
from cfd_tui.screens.confirm import ConfirmScreen
from cfd_tui.screens.new_alert import NewAlertScreen
from cfd_tui.widgets.fitted_table import FittedTable
from cfd_tui.widgets.footer import AppFooter
from cfd_tui.widgets.live_table import Column
from cfd_tui.widgets.top_bar import TopBar

ALERT_COLUMNS = (Column("Status", "status", 9), Column("Alert", "alert", 36), Column("Note", "note", 24, drop=4),
                 Column("Mail", "mail", 4, drop=3), Column("Set", "created", 19, drop=1),
                 Column("Triggered", "fired", 19, drop=2), Column("Fired at", "value", 12))


class AlertsScreen(CfdScreen[None]):
    """Pushed over the dashboard; `n` sets a price alert on `symbol` (the dashboard's market), `m` a margin-level
    alert, `d` deletes the highlighted one. Esc goes back."""

    BINDINGS = [
        Binding("n", "new_price_alert", "Price alert"),
        Binding("m", "new_margin_alert", "Margin alert"),
        Binding("d,delete", "delete", "Delete"),
        Binding("r", "reload", "Reload"),
        Binding("escape", "back", "Back"),
    ]

    def __init__(self, symbol: str = "") -> None:
        super().__init__()
        self.symbol = symbol

    def compose(self) -> ComposeResult:
        yield TopBar(screen_name="Alerts", id="top-bar")
        yield Static("", id="alerts-summary", classes="screen-summary")
        yield FittedTable(ALERT_COLUMNS, right=("value",), id="alerts-table", cursor_type="row")
        yield Static("", id="alerts-empty", classes="screen-empty")
        yield AppFooter()

    def on_resize(self, event: events.Resize) -> None:
        self.query_one(AppFooter).fit(event.size.width)

    def on_mount(self) -> None:
        self.query_one("#alerts-table").focus()
        self.watch(self.app, "alerts_version", lambda _v: self._show(), init=False)
        self._show()
        self.action_reload()

    def action_back(self) -> None:
        self.app.pop_screen()

    @work(group="alerts", exclusive=True, exit_on_error=False)
    async def action_reload(self) -> None:
        """The alerts from the server (the feed keeps them up to date after)."""
        summary = self.query_one("#alerts-summary", Static)
        try:
            alerts = await self.ctx.client.alerts()
        except ClientError as exc:
            summary.update(Text(f"⚠ {getattr(exc, 'message', str(exc))}", style="bold red"))
            return
        self.app.post_message(AlertsLoaded(alerts))  # the app keeps the book; its version brings them back here

    def _show(self) -> None:
        book = self.ctx.alerts
        alerts = book.ordered()
        active = sum(1 for a in alerts if a.status == "active")
        summary = self.query_one("#alerts-summary", Static)
        if book.loaded or alerts:
            summary.update(Text.assemble(("Active ", "dim"), str(active), ("   triggered ", "dim"),
                                         str(len(alerts) - active),
                                         ("   price alerts watch the bid; each fires once", "dim")))
        else:
            summary.update("loading…")
        rows = [(a.id, self._row(a)) for a in alerts]
        table = self.query_one("#alerts-table", FittedTable)
        selected = self.selected_id()
        table.set_rows(rows)
        if selected is not None and selected in book.alerts:
            table.move_cursor(row=table.get_row_index(selected))
        empty = self.query_one("#alerts-empty", Static)
        empty.display = book.loaded and not alerts
        table.display = bool(alerts)
        market = market_name(self.symbol) if self.symbol else "the market chosen on the dashboard"
        empty.update(f"No alerts. Press [b]n[/b] for a price alert on {market}, [b]m[/b] for a margin-level alert.")

    def _row(self, a: Alert) -> dict[str, object]:
        tz = self.ctx.tz
        market = self.ctx.board.markets.get(a.symbol or "")
        tick = market.price_tick if market is not None else None
        fired = a.status != "active"
        return {"status": Text(a.status, style="yellow" if fired else "green"),
                "alert": describe_alert(a, tick), "note": a.note or "",
                "mail": "✉" if "mail" in a.notify else "", "created": fmt.timestamp(a.created_at, tz),
                "fired": fmt.timestamp(a.triggered_at, tz) if fired else "",
                "value": Text(fired_value(a, tick=tick) if fired else "", justify="right")}

    def selected_id(self) -> str | None:
        table = self.query_one("#alerts-table", FittedTable)
        if not table.row_count:
            return None
        key = table.coordinate_to_cell_key(table.cursor_coordinate).row_key.value
        return key if key in self.ctx.alerts.alerts else None

    # --- actions ------------------------------------------------------------------------------------------

    def action_new_price_alert(self) -> None:
        if not self.symbol or self.symbol not in self.ctx.board.tickers:
            self.notify("No price for this market yet: choose one on the dashboard first.", severity="warning")
            return
        self.app.push_screen(NewAlertScreen(self.symbol))

    def action_new_margin_alert(self) -> None:
        self.app.push_screen(NewAlertScreen(None))

    def action_delete(self) -> None:
        alert_id = self.selected_id()
        if alert_id is None:
            self.notify("Select an alert first.", severity="warning")
            return
        alert = self.ctx.alerts.alerts[alert_id]
        market = self.ctx.board.markets.get(alert.symbol or "")
        what = describe_alert(alert, market.price_tick if market else None)
        state = "It has fired already; deleting takes it off this list." if alert.status != "active" else \
            "It stops watching at once."
        client = self.ctx.client

        async def delete() -> None:
            await client.delete_alert(alert.id)

        def done(deleted: bool | None) -> None:
            if deleted:
                self.app.post_message(AlertDeleted(alert))

        self.app.push_screen(ConfirmScreen(f"Delete the alert {what}?", state, "Delete alert", delete,
                                           keep="Keep it", dialog_id="delete-alert-dialog"), done)

