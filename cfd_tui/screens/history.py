"""History: closed positions with their realised PnL, and the ledger of every balance change."""

from __future__ import annotations

from decimal import Decimal

from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.widgets import Static, TabbedContent, TabPane

from cfd_client.errors import NotFound
from cfd_client.models import LedgerEntry, Position
from cfd_tui import format as fmt
from cfd_tui.screens.base import CfdScreen
from cfd_tui.widgets.fitted_table import FittedTable
from cfd_tui.widgets.footer import AppFooter
from cfd_tui.widgets.live_table import Column
from cfd_tui.widgets.top_bar import TopBar

CLOSED_COLUMNS = (Column("Closed", "closed", 19), Column("Market", "market", 9), Column("Side", "side", 5),
                  Column("Qty", "qty", 10), Column("Entry", "entry", 11, drop=4), Column("Exit", "exit", 11, drop=5),
                  Column("Lev", "lev", 4, drop=2), Column("PnL", "pnl", 12), Column("Reason", "reason", 11, drop=3),
                  Column("Opened", "opened", 19, drop=1))
LEDGER_COLUMNS = (Column("Time", "time", 19), Column("Kind", "kind", 13), Column("Amount", "amount", 13),
                  Column("Balance", "balance", 13, drop=2), Column("Reference", "reference", 36, drop=1))
REASONS = {"manual": "by hand", "stop_loss": "stop-loss", "take_profit": "take-profit", "stop_out": "stop-out"}
KINDS = {"deposit": "deposit", "realized_pnl": "realised PnL", "fee": "fee", "shortfall": "shortfall"}
HISTORY_PAGE = 500  # newest closed positions and ledger entries shown: a page, however long the history grows


class HistoryScreen(CfdScreen[None]):
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
                yield FittedTable(CLOSED_COLUMNS, right=("qty", "entry", "exit", "lev", "pnl"), id="closed-table",
                                  cursor_type="row")
            with TabPane("Ledger", id="tab-ledger"):
                yield FittedTable(LEDGER_COLUMNS, right=("amount", "balance"), id="ledger-table", cursor_type="row")
        yield AppFooter()

    def on_mount(self) -> None:
        self.query_one("#closed-table").focus()
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
        client = self.ctx.client
        try:
            closed = (await client.positions("closed", limit=HISTORY_PAGE))[:HISTORY_PAGE]
            ledger = (await client.ledger(limit=HISTORY_PAGE))[:HISTORY_PAGE]
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
        tz = self.ctx.tz
        markets = self.ctx.board.markets
        rows: list[tuple[str | None, dict[str, object]]] = []
        for p in positions:
            market = markets.get(p.symbol)
            tick = market.price_tick if market else fmt.CENT
            step = market.qty_step if market else Decimal("0.0001")
            pnl = p.realized_pnl
            style = "" if not pnl else "green" if pnl > 0 else "red"
            rows.append((p.id, {
                "closed": fmt.timestamp(p.closed_at, tz), "market": p.symbol.replace("_", "/"), "side": p.side,
                "qty": Text(fmt.qty(p.qty, step), justify="right"),
                "entry": Text(fmt.price(p.entry_price, tick), justify="right"),
                "exit": Text(fmt.price(p.close_price, tick), justify="right"),
                "lev": Text(f"{p.leverage}×", justify="right"),
                "pnl": Text(fmt.money(pnl, signed=True), style=style, justify="right"),
                "reason": REASONS.get(p.close_reason or "", p.close_reason or ""),
                "opened": fmt.timestamp(p.opened_at, tz)}))
        if not positions:
            rows.append((None, {"closed": "no closed positions yet"}))
        self.query_one("#closed-table", FittedTable).set_rows(rows)

    def _fill_ledger(self, entries: list[LedgerEntry]) -> None:
        tz = self.ctx.tz
        rows: list[tuple[str | None, dict[str, object]]] = []
        for e in entries:
            style = "green" if e.amount > 0 else "red" if e.amount < 0 else ""
            rows.append((e.id, {"time": fmt.timestamp(e.created_at, tz), "kind": KINDS.get(e.kind, e.kind),
                                "amount": Text(fmt.money(e.amount, signed=True), style=style, justify="right"),
                                "balance": Text(fmt.money(e.balance_after), justify="right"),
                                "reference": e.reference or ""}))
        self.query_one("#ledger-table", FittedTable).set_rows(rows)
