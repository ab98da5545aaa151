"""History: closed positions with their realised PnL, the orders no longer working (filled, cancelled, expired,
rejected with the reason), and the ledger of every balance change."""

from __future__ import annotations

from decimal import Decimal

from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.widgets import DataTable, Static, TabbedContent, TabPane

from cfd_client.errors import NotFound
from cfd_client.models import LedgerEntry, Order, Position
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
ORDER_COLUMNS = (Column("Time", "time", 19), Column("Market", "market", 9), Column("Side", "side", 5),
                 Column("Type", "type", 5), Column("Qty", "qty", 10), Column("Price", "price", 11, drop=3),
                 Column("Status", "status", 9), Column("Why / fill", "detail", 32, drop=2),
                 Column("Placed", "placed", 19, drop=1))
LEDGER_COLUMNS = (Column("Time", "time", 19), Column("Kind", "kind", 13), Column("Amount", "amount", 13),
                  Column("Balance", "balance", 13, drop=2), Column("Reference", "reference", 36, drop=1))
REASONS = {"manual": "by hand", "stop_loss": "stop-loss", "take_profit": "take-profit",
           "trailing_stop": "trailing stop", "stop_out": "stop-out"}
KINDS = {"deposit": "deposit", "realized_pnl": "realised PnL", "fee": "fee", "shortfall": "shortfall",
         "commission": "commission", "financing": "financing"}
HISTORY_PAGE = 500  # newest closed positions, orders and ledger entries shown: a page, however long it grows
TABS = ("tab-closed", "tab-orders", "tab-ledger")


class HistoryScreen(CfdScreen[None]):
    """Pushed over the dashboard; Esc goes back."""

    BINDINGS = [
        Binding("escape,h", "back", "Dashboard"),
        Binding("r", "reload", "Reload"),
        Binding("right", "switch_tab(1)", "Next tab", show=False),
        Binding("left", "switch_tab(-1)", "Previous tab", show=False),
        Binding("x", "app.sign_out", "Sign out"),
    ]

    _closed_positions: dict[str, Position] = {}

    def compose(self) -> ComposeResult:
        yield TopBar(screen_name="History", id="top-bar")
        yield Static("", id="history-summary")
        with TabbedContent(id="history-tabs"):
            with TabPane("Closed positions", id="tab-closed"):
                yield FittedTable(CLOSED_COLUMNS, right=("qty", "entry", "exit", "lev", "pnl"), id="closed-table",
                                  cursor_type="row")
                yield Static("", id="fill-receipts")
            with TabPane("Orders", id="tab-orders"):
                yield FittedTable(ORDER_COLUMNS, right=("qty", "price"), id="orders-table", cursor_type="row")
            with TabPane("Ledger", id="tab-ledger"):
                yield FittedTable(LEDGER_COLUMNS, right=("amount", "balance"), id="ledger-table", cursor_type="row")
        yield AppFooter()

    def on_mount(self) -> None:
        self.query_one("#closed-table").focus()
        self.action_reload()

    def action_back(self) -> None:
        self.app.pop_screen()

    def action_switch_tab(self, step: int = 1) -> None:
        tabs = self.query_one(TabbedContent)
        tabs.active = TABS[(TABS.index(tabs.active) + step) % len(TABS)] if tabs.active in TABS else TABS[0]
        self.query_one(f"#{tabs.active.removeprefix('tab-')}-table").focus()

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
        try:
            orders = [o for o in await client.orders(None, limit=HISTORY_PAGE) if o.status != "working"]
        except NotFound:  # a server without pending orders
            orders = []
        self._fill_closed(closed)
        self._fill_orders(orders[:HISTORY_PAGE])
        self._fill_ledger(ledger)
        total = sum((p.realized_pnl or Decimal(0) for p in closed), Decimal(0))
        wins = sum(1 for p in closed if (p.realized_pnl or 0) > 0)
        text = Text.assemble(("Realised PnL ", "dim"), (fmt.money(total, signed=True) + " USD",
                                                        "green" if total > 0 else "red" if total < 0 else ""),
                             ("   closed ", "dim"), str(len(closed)), ("   winners ", "dim"), str(wins),
                             ("   orders ", "dim"), str(len(orders)), ("   ledger entries ", "dim"), str(len(ledger)))
        summary.update(text)

    def on_data_table_row_highlighted(self, event: DataTable.RowHighlighted) -> None:
        if event.data_table.id == "closed-table":
            self._show_receipts(event.row_key.value)

    def _show_receipts(self, position_id: str | None) -> None:
        """The receipts of the highlighted closed position's fills: what each was priced from."""
        p = self._closed_positions.get(position_id or "")
        panel = self.query_one("#fill-receipts", Static)
        if p is None:
            panel.update("")
            return
        market = self.ctx.board.markets.get(p.symbol)
        tick = market.price_tick if market else fmt.CENT
        panel.update(Text("\n").join([fmt.receipt("Opened", p.open_receipt, tick, self.ctx.tz),
                                       fmt.receipt("Closed", p.close_receipt, tick, self.ctx.tz)]))

    def _fill_closed(self, positions: list[Position]) -> None:
        self._closed_positions = {p.id: p for p in positions}
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

    def _fill_orders(self, orders: list[Order]) -> None:
        """Orders no longer working, the latest change first: a fill names the position it opened, a rejection
        says why."""
        tz = self.ctx.tz
        markets = self.ctx.board.markets
        rows: list[tuple[str | None, dict[str, object]]] = []
        for o in sorted(orders, key=lambda o: (o.updated_at, o.id), reverse=True):
            market = markets.get(o.symbol)
            tick = market.price_tick if market else fmt.CENT
            step = market.qty_step if market else Decimal("0.0001")
            style = {"filled": "green", "rejected": "red", "expired": "yellow"}.get(o.status, "")
            if o.status == "rejected":  # the platform's code first, in words: the gist in a narrow column
                code, _, message = (o.reason or "").partition(": ")
                detail = f"{code.replace('_', ' ')}: {message}" if message else code.replace("_", " ")
            elif o.status == "filled":
                detail = f"position {(o.position_id or '')[:8]}"
            else:
                detail = o.reason or ""
            rows.append((o.id, {
                "time": fmt.timestamp(o.updated_at, tz), "market": o.symbol.replace("_", "/"), "side": o.side,
                "type": o.type, "qty": Text(fmt.qty(o.qty, step), justify="right"),
                "price": Text(fmt.price(o.price, tick), justify="right"), "status": Text(o.status, style=style),
                "detail": detail, "placed": fmt.timestamp(o.created_at, tz)}))
        if not orders:
            rows.append((None, {"time": "no orders yet"}))
        self.query_one("#orders-table", FittedTable).set_rows(rows)

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
