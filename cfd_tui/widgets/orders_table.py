"""`OrdersTable`: the working (pending) limit and stop orders, beside the positions on the dashboard."""

from __future__ import annotations

from datetime import tzinfo
from decimal import Decimal
from typing import Literal

from rich.text import Text
from textual.widgets import DataTable

from cfd_client.models import Order
from cfd_tui import format as fmt
from cfd_tui.state import MarketBoard, Portfolio
from cfd_tui.widgets.live_table import Column, LiveTable

# Left to right as shown; `drop` orders what goes first when the table is too narrow (0: never dropped).
COLUMNS = (
    Column("ID", "id", 8, drop=1),
    Column("Market", "market", 9),
    Column("Side", "side", 5),
    Column("Type", "type", 5),
    Column("Qty", "qty", 9),
    Column("Price", "price", 10),
    Column("SL / TP", "stops", 21, drop=3),
    Column("Trailing", "trailing", 8, drop=4),
    Column("Expires", "expires", 11),
    Column("Status", "status", 7, drop=2),
)
LEFT = ("id", "market", "side", "type", "status")


class OrdersTable(LiveTable):
    """One row per working order, oldest first; the highlighted row is the one the modify/cancel keys act on.

    Rows follow the feed's order frames (a filled, cancelled, expired or rejected order leaves the table).
    When narrow, the ID, status, stops and trailing distance go first; market, side, type, quantity, price and
    expiry always stay.
    """

    COLUMNS = COLUMNS
    COMPONENT_CLASSES = DataTable.COMPONENT_CLASSES | {"orders--long", "orders--short"}

    def __init__(self, tz: tzinfo | None = None, **kwargs) -> None:
        super().__init__(cursor_type="row", **kwargs)
        self.tz = tz
        self._ids: list[str] = []
        self._orders: dict[str, Order] = {}
        self._board: MarketBoard | None = None
        self._now_ms = 0

    def _show_columns(self, columns: tuple[Column, ...]) -> None:
        selected = self.selected_id
        self.clear(columns=True)
        self.shown = columns
        for column in columns:
            self.add_column(Text(column.label, justify="left" if column.key in LEFT else "right"), key=column.key,
                            width=column.width)
        self._ids = []
        self._rebuild(list(self._orders.values()), selected)

    @property
    def selected_id(self) -> str | None:
        if not self._ids or not 0 <= self.cursor_row < len(self._ids):
            return None
        return self._ids[self.cursor_row]

    def sync(self, portfolio: Portfolio, board: MarketBoard, now_ms: int) -> None:
        """Match the rows to the working orders and every cell to its order."""
        wanted = sorted(portfolio.orders.values(), key=lambda o: (o.created_at, o.id))
        self._orders = {o.id: o for o in wanted}
        self._board, self._now_ms = board, now_ms
        if [o.id for o in wanted] != self._ids:
            self._rebuild(wanted, self.selected_id)
            return
        for order in wanted:
            for key, value in self._cells(order, board).items():
                self.update_cell(order.id, key, value)  # a cell that looks the same is skipped

    def _rebuild(self, wanted: list[Order], selected: str | None) -> None:
        self.clear()
        self._ids = [o.id for o in wanted]
        board = self._board
        if board is None:
            return
        for order in wanted:
            cells = self._cells(order, board)
            self.add_row(*(cells[column.key] for column in self.shown), key=order.id)
        if selected in self._ids:
            self.move_cursor(row=self._ids.index(selected))

    def _cells(self, o: Order, board: MarketBoard) -> dict[str, Text]:
        style = self.get_component_rich_style
        market = board.markets.get(o.symbol)
        tick = market.price_tick if market else fmt.CENT
        step = market.qty_step if market else Decimal("0.0001")
        right: Literal["right"] = "right"
        stops = f"{fmt.price(o.stop_loss, tick)} / {fmt.price(o.take_profit, tick)}"
        makers = {
            "id": lambda: Text(o.id[:8]),
            "market": lambda: Text(o.symbol.replace("_", "/")),
            "side": lambda: Text(o.side, style=style(f"orders--{o.side}")),
            "type": lambda: Text(o.type),
            "qty": lambda: Text(fmt.qty(o.qty, step), justify=right),
            "price": lambda: Text(fmt.price(o.price, tick), justify=right),
            "stops": lambda: Text(stops, justify=right),
            "trailing": lambda: Text(fmt.price(o.trailing_distance, tick), justify=right),
            "expires": lambda: Text(fmt.expiry(o.expires_at, self._now_ms, self.tz), justify=right),
            "status": lambda: Text(o.status),
        }
        shown = {column.key for column in self.shown}
        return {key: maker() for key, maker in makers.items() if key in shown}
