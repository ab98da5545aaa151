"""History: closed positions with their realised PnL, and the ledger of every balance change."""

from __future__ import annotations

from decimal import Decimal

from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.screen import Screen
from textual.widgets import DataTable, Footer, Static, TabbedContent, TabPane

from cfd_tui import format as fmt
from cfd_tui.client.errors import NotFound
from cfd_tui.client.models import LedgerEntry, Position
from cfd_tui.widgets.top_bar import TopBar

REASONS = {"manual": "by hand", "stop_loss": "stop-loss", "take_profit": "take-profit", "stop_out": "stop-out"}
KINDS = {"deposit": "deposit", "realized_pnl": "realised PnL", "fee": "fee", "shortfall": "shortfall"}


class HistoryScreen(Screen[None]):
    """Pushed over the dashboard; Esc goes back."""

    BINDINGS = [
        Binding("escape,h", "back", "Dashboard"),
        Binding("r", "reload", "Reload"),
        Binding("left,right", "switch_tab", "Switch tab", show=False),
        Binding("x", "app.sign_out", "Sign out"),
    ]

    def compose(self) -> ComposeResult:
        yield TopBar(screen_name="History", id="top-bar")
        yield Static("", id="history-summary")
        with TabbedContent(id="history-tabs"):
            with TabPane("Closed positions", id="tab-closed"):
                yield DataTable(id="closed-table", cursor_type="row")
            with TabPane("Ledger", id="tab-ledger"):
                yield DataTable(id="ledger-table", cursor_type="row")
        yield Footer()

    def on_mount(self) -> None:
        closed = self.query_one("#closed-table", DataTable)
        for label, width in (("Closed", 19), ("Market", 9), ("Side", 5), ("Qty", 10), ("Entry", 11), ("Exit", 11),
                             ("Lev", 4), ("PnL", 12), ("Reason", 11), ("Opened", 19)):
            closed.add_column(label, width=width)
        ledger = self.query_one("#ledger-table", DataTable)
        for label, width in (("Time", 19), ("Kind", 13), ("Amount", 13), ("Balance", 13), ("Reference", 36)):
            ledger.add_column(label, width=width)
        closed.focus()
        self.action_reload()

    def action_back(self) -> None:
        self.app.pop_screen()

    def action_switch_tab(self) -> None:
        tabs = self.query_one(TabbedContent)
        tabs.active = "tab-ledger" if tabs.active == "tab-closed" else "tab-closed"
        self.query_one("#ledger-table" if tabs.active == "tab-ledger" else "#closed-table").focus()

    @work(group="history", exclusive=True, exit_on_error=False)
    async def action_reload(self) -> None:
        summary = self.query_one("#history-summary", Static)
        summary.update("loading…")
        client = self.app.client  # type: ignore[attr-defined]
        try:
            closed = await client.positions("closed", limit=500)
            ledger = await client.ledger(limit=500)
        except NotFound:
            summary.update("⚠ trading unavailable on this server: no history yet.")
            return
        self._fill_closed(closed)
        self._fill_ledger(ledger)
        total = sum((p.realized_pnl or Decimal(0) for p in closed), Decimal(0))
        wins = sum(1 for p in closed if (p.realized_pnl or 0) > 0)
        text = Text.assemble(("Realised PnL ", "dim"), (fmt.money(total, signed=True) + " USD",
                                                        "green" if total > 0 else "red" if total < 0 else ""),
                             ("   closed ", "dim"), str(len(closed)), ("   winners ", "dim"), str(wins),
                             ("   ledger entries ", "dim"), str(len(ledger)))
        summary.update(text)

    def _fill_closed(self, positions: list[Position]) -> None:
        table = self.query_one("#closed-table", DataTable)
        table.clear()
        tz = self.app.tz  # type: ignore[attr-defined]
        markets = self.app.board.markets  # type: ignore[attr-defined]
        for p in positions:
            market = markets.get(p.symbol)
            tick = market.price_tick if market else fmt.CENT
            step = market.qty_step if market else Decimal("0.0001")
            pnl = p.realized_pnl
            style = "" if not pnl else "green" if pnl > 0 else "red"
            table.add_row(fmt.timestamp(p.closed_at, tz), p.symbol.replace("_", "/"), p.side,
                          Text(fmt.qty(p.qty, step), justify="right"),
                          Text(fmt.price(p.entry_price, tick), justify="right"),
                          Text(fmt.price(p.close_price, tick), justify="right"),
                          Text(f"{p.leverage}×", justify="right"),
                          Text(fmt.money(pnl, signed=True), style=style, justify="right"),
                          REASONS.get(p.close_reason or "", p.close_reason or ""), fmt.timestamp(p.opened_at, tz),
                          key=p.id)
        if not positions:
            table.add_row("no closed positions yet", *[""] * 9)

    def _fill_ledger(self, entries: list[LedgerEntry]) -> None:
        table = self.query_one("#ledger-table", DataTable)
        table.clear()
        tz = self.app.tz  # type: ignore[attr-defined]
        for e in entries:
            style = "green" if e.amount > 0 else "red" if e.amount < 0 else ""
            table.add_row(fmt.timestamp(e.created_at, tz), KINDS.get(e.kind, e.kind),
                          Text(fmt.money(e.amount, signed=True), style=style, justify="right"),
                          Text(fmt.money(e.balance_after), justify="right"), e.reference or "", key=e.id)
