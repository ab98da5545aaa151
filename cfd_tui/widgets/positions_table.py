"""`PositionsTable`: the open positions with their latest mark and unrealised PnL, green when positive and red
when negative."""

from __future__ import annotations

from decimal import Decimal
from typing import Literal

from rich.text import Text
from textual.widgets import DataTable

from cfd_client.models import Position
from cfd_tui import format as fmt
from cfd_tui.state import MarketBoard, Portfolio
from cfd_tui.widgets.live_table import Column, LiveTable

# Left to right as shown; `drop` orders what goes first when the table is too narrow (0: never dropped).
COLUMNS = (
    Column("ID", "id", 8, drop=1),
    Column("Market", "market", 9),
    Column("Side", "side", 5),
    Column("Qty", "qty", 9),
    Column("Entry", "entry", 10, drop=6),
    Column("Mark", "mark", 10, drop=7),
    Column("Stop-out", "stop_out", 10, drop=8),
    Column("Lev", "lev", 4, drop=2),
    Column("Stop-loss", "sl", 10, drop=4),
    Column("Take-profit", "tp", 11, drop=3),
    Column("Margin", "margin", 10, drop=5),
    Column("PnL", "pnl", 11),
)
LEFT = ("id", "market", "side")


def stop_loss_text(p: Position, tick: Decimal) -> str:
    """The stop-loss as the table shows it; a trailing one with the way it moves: `↑ 204.93` (a long's ratchets
    up), `↓ 2,920.73` (a short's down)."""
    price = fmt.price(p.stop_loss, tick)
    if p.trailing_distance is None:
        return price
    return f"{'↑' if p.side == 'long' else '↓'} {price}"


class PositionsTable(LiveTable):
    """One row per open position; the highlighted row is the one the close/edit keys act on. A trailing
    stop-loss shows with an arrow, the way it ratchets (`↑ 204.93`), and moves as the platform moves it.

    Every cell follows the position it shows: a part-close changes the quantity and the margin in place. When
    the table is too narrow for every column, the least important go first (ID, leverage, take-profit,
    stop-loss, margin, entry, mark, stop-out); market, side, quantity and PnL always stay. The stop-out column is
    the price at which the account would be stopped out if this position's market alone moved there.
    """

    COLUMNS = COLUMNS
    COMPONENT_CLASSES = DataTable.COMPONENT_CLASSES | {"positions--profit", "positions--loss", "positions--long",
                                                       "positions--short"}

    def __init__(self, **kwargs) -> None:
        super().__init__(cursor_type="row", **kwargs)
        self._ids: list[str] = []
        self._positions: dict[str, Position] = {}
        self._portfolio: Portfolio | None = None
        self._board: MarketBoard | None = None

    def _show_columns(self, columns: tuple[Column, ...]) -> None:
        selected = self.selected_id
        self.clear(columns=True)
        self.shown = columns
        for column in columns:
            self.add_column(Text(column.label, justify="left" if column.key in LEFT else "right"), key=column.key,
                            width=column.width)
        self._ids = []
        self._rebuild(list(self._positions.values()), selected)

    @property
    def selected_id(self) -> str | None:
        if not self._ids or not 0 <= self.cursor_row < len(self._ids):
            return None
        return self._ids[self.cursor_row]

    def sync(self, portfolio: Portfolio, board: MarketBoard) -> None:
        """Match the rows to the open positions (adding and removing rows) and every cell to its position."""
        wanted = sorted(portfolio.positions.values(), key=lambda p: (p.opened_at, p.id))
        self._positions = {p.id: p for p in wanted}
        self._portfolio, self._board = portfolio, board
        if [p.id for p in wanted] != self._ids:
            self._rebuild(wanted, self.selected_id)
            return
        for position in wanted:
            for key, value in self._cells(position, portfolio, board).items():
                self.update_cell(position.id, key, value)  # a cell that looks the same is skipped

    def _rebuild(self, wanted: list[Position], selected: str | None) -> None:
        self.clear()
        self._ids = [p.id for p in wanted]
        portfolio, board = self._portfolio, self._board
        if portfolio is None or board is None:
            return
        for position in wanted:
            cells = self._cells(position, portfolio, board)
            self.add_row(*(cells[column.key] for column in self.shown), key=position.id)
        if selected in self._ids:
            self.move_cursor(row=self._ids.index(selected))

    def _cells(self, p: Position, portfolio: Portfolio, board: MarketBoard) -> dict[str, Text]:
        """The shown cells of `p`, by column key; the mark and the PnL are the platform's latest mark."""
        style = self.get_component_rich_style
        market = board.markets.get(p.symbol)
        tick = market.price_tick if market else fmt.CENT
        step = market.qty_step if market else Decimal("0.0001")
        right: Literal["right"] = "right"
        makers = {
            "id": lambda: Text(p.id[:8]),
            "market": lambda: Text(p.symbol.replace("_", "/")),
            "side": lambda: Text(p.side, style=style(f"positions--{p.side}")),
            "qty": lambda: Text(fmt.qty(p.qty, step), justify=right),
            "entry": lambda: Text(fmt.price(p.entry_price, tick), justify=right),
            "mark": lambda: Text(fmt.price(portfolio.mark_price(p), tick), justify=right),
            "stop_out": lambda: self._stop_out_cell(p, portfolio, tick),
            "lev": lambda: Text(f"{p.leverage}×", justify=right),
            "sl": lambda: Text(stop_loss_text(p, tick), justify=right),
            "tp": lambda: Text(fmt.price(p.take_profit, tick), justify=right),
            "margin": lambda: Text(fmt.money(p.margin), justify=right),
            "pnl": lambda: self._pnl_cell(portfolio.pnl(p)),
        }
        shown = {column.key for column in self.shown}
        return {key: maker() for key, maker in makers.items() if key in shown}

    def _stop_out_cell(self, p: Position, portfolio: Portfolio, tick: Decimal) -> Text:
        """The stop-out price; `none` when the platform's mark says no price of the market gets there (a long
        that would need a price below zero, a market held as much long as short), `—` before the first mark."""
        price = portfolio.stop_out_price(p)
        if price is None and portfolio.mark_price(p) is not None:
            return Text("none", style="dim", justify="right")
        return Text(fmt.price(price, tick), justify="right")

    def _pnl_cell(self, pnl: Decimal | None) -> Text:
        style = "" if not pnl else self.get_component_rich_style("positions--profit" if pnl > 0 else
                                                                   "positions--loss")
        return Text(fmt.money(pnl, signed=True), style=style, justify="right")
