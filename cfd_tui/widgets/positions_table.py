"""`PositionsTable`: the open positions with live unrealised PnL, green when positive and red when negative."""

from __future__ import annotations

from decimal import Decimal

from rich.text import Text
from textual.widgets import DataTable

from cfd_tui import format as fmt
from cfd_tui.client.models import Position
from cfd_tui.state import MarketBoard, Portfolio
from cfd_tui.widgets.live_table import LiveTable

COLUMNS = (("ID", "id", 8), ("Market", "market", 9), ("Side", "side", 5), ("Qty", "qty", 10),
           ("Entry", "entry", 11), ("Mark", "mark", 11), ("Lev", "lev", 4), ("Stop-loss", "sl", 11),
           ("Take-profit", "tp", 11), ("Margin", "margin", 10), ("PnL", "pnl", 11))


class PositionsTable(LiveTable):
    """One row per open position; the highlighted row is the one the close/edit keys act on."""

    COMPONENT_CLASSES = DataTable.COMPONENT_CLASSES | {"positions--profit", "positions--loss", "positions--long",
                                                       "positions--short"}

    def __init__(self, **kwargs) -> None:
        super().__init__(cursor_type="row", **kwargs)
        self._ids: list[str] = []

    def on_mount(self) -> None:
        for label, key, width in COLUMNS:
            self.add_column(Text(label, justify="left" if key in ("id", "market", "side") else "right"), key=key,
                            width=width)

    @property
    def selected_id(self) -> str | None:
        if not self._ids or not 0 <= self.cursor_row < len(self._ids):
            return None
        return self._ids[self.cursor_row]

    def sync(self, portfolio: Portfolio, board: MarketBoard) -> None:
        """Match the rows to the open positions (adding and removing rows), then refresh every cell."""
        wanted = sorted(portfolio.positions.values(), key=lambda p: (p.opened_at, p.id))
        ids = [p.id for p in wanted]
        if ids != self._ids:
            selected = self.selected_id
            self.clear()
            self._ids = ids
            for position in wanted:
                self.add_row(*self._cells(position, portfolio, board), key=position.id)
            if selected in ids:
                self.move_cursor(row=ids.index(selected))
            return
        self.refresh_prices(portfolio, board)

    def refresh_prices(self, portfolio: Portfolio, board: MarketBoard, symbols: set[str] | None = None) -> None:
        """Redraw the mark and PnL cells (of positions in `symbols`, or all)."""
        quotes = None
        for position_id in self._ids:
            position = portfolio.positions.get(position_id)
            if position is None or (symbols is not None and position.symbol not in symbols):
                continue
            quotes = quotes or board.quotes()
            cells = self._cells(position, portfolio, board, quotes)
            self.update_cell(position_id, "mark", cells[5])
            self.update_cell(position_id, "pnl", cells[10])
            self.update_cell(position_id, "sl", cells[7])
            self.update_cell(position_id, "tp", cells[8])

    def _cells(self, p: Position, portfolio: Portfolio, board: MarketBoard, quotes=None) -> tuple[Text, ...]:
        style = self.get_component_rich_style
        market = board.markets.get(p.symbol)
        tick = market.price_tick if market else fmt.CENT
        step = market.qty_step if market else Decimal("0.0001")
        quotes = quotes if quotes is not None else board.quotes()
        pnl = portfolio.pnl(p, quotes)
        quote = quotes.get(p.symbol)
        mark = None if quote is None else (quote.bid if p.side == "long" else quote.ask)
        pnl_style = "" if not pnl else style("positions--profit" if pnl > 0 else "positions--loss")
        right = "right"
        return (Text(p.id[:8]), Text(p.symbol.replace("_", "/")),
                Text(p.side, style=style(f"positions--{p.side}")),
                Text(fmt.qty(p.qty, step), justify=right), Text(fmt.price(p.entry_price, tick), justify=right),
                Text(fmt.price(mark, tick), justify=right), Text(f"{p.leverage}×", justify=right),
                Text(fmt.price(p.stop_loss, tick), justify=right), Text(fmt.price(p.take_profit, tick), justify=right),
                Text(fmt.money(p.margin), justify=right),
                Text(fmt.money(pnl, signed=True), style=pnl_style, justify=right))
