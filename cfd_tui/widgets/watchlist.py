"""`Watchlist`: every market's bid, ask, change and a sparkline of recent mids; ticks flash green or red."""

from __future__ import annotations

from collections.abc import Iterable

from rich.style import Style
from rich.text import Text
from textual.widgets import DataTable

from cfd_tui import format as fmt
from cfd_tui.state import SPARKLINE_POINTS, MarketBoard, Ticker
from cfd_tui.widgets.live_table import Column, LiveTable

SPARK_WIDTH = SPARKLINE_POINTS  # one character per mid the board keeps
# when too narrow, the trend goes first, then the change; market, bid and ask always stay
COLUMNS = (Column("Market", "market", 10), Column("Bid", "bid", 11), Column("Ask", "ask", 11),
           Column("1h chg", "chg", 8, drop=2), Column("Trend", "trend", SPARK_WIDTH, drop=1))
KEYS = tuple(column.key for column in COLUMNS)


class Watchlist(LiveTable):
    """One row per market; moving the cursor (keys or mouse) chooses the market the chart shows."""

    COLUMNS = COLUMNS
    COMPONENT_CLASSES = DataTable.COMPONENT_CLASSES | {
        "watchlist--up", "watchlist--down", "watchlist--flash-up", "watchlist--flash-down", "watchlist--stale",
        "watchlist--symbol",
    }

    def __init__(self, **kwargs) -> None:
        super().__init__(cursor_type="row", zebra_stripes=False, **kwargs)
        self._rows: list[str] = []
        self._board: MarketBoard | None = None

    def _show_columns(self, columns: tuple[Column, ...]) -> None:
        self.clear(columns=True)
        self.shown = columns
        for column in columns:
            self.add_column(Text(column.label, justify="left" if column.key in ("market", "trend") else "right"),
                            key=column.key, width=column.width)
        self.set_markets(list(self._rows))
        if self._board is not None:
            self.update_symbols(self._board, self._rows, 0.0)

    def set_markets(self, symbols: Iterable[str]) -> None:
        """(Re)build the rows, keeping the cursor on the same market."""
        current = self.selected_symbol
        self._rows = []  # no market is selected while the rows are rebuilt (the cursor moves meanwhile)
        self.clear()
        rows = list(symbols)
        for symbol in rows:
            self.add_row(*self._shown(self._blank(symbol)), key=symbol)
        self._rows = rows
        if current in rows:
            self.move_cursor(row=rows.index(current))

    @property
    def symbols(self) -> list[str]:
        """The markets shown, top to bottom."""
        return list(self._rows)

    @property
    def selected_symbol(self) -> str | None:
        if not self._rows or not 0 <= self.cursor_row < len(self._rows):
            return None
        return self._rows[self.cursor_row]

    def select(self, symbol: str) -> None:
        if symbol in self._rows:
            self.move_cursor(row=self._rows.index(symbol))

    def update_symbols(self, board: MarketBoard, symbols: Iterable[str], now: float) -> None:
        """Redraw the rows of `symbols` from the board."""
        self._board = board
        shown = {column.key for column in self.shown}
        for symbol in symbols:
            ticker = board.tickers.get(symbol)
            if ticker is None or symbol not in self._rows:
                continue
            market = board.markets.get(symbol)
            tick = market.price_tick if market else fmt.CENT
            for key, cell in zip(KEYS, self._cells(ticker, tick, board.mids.get(symbol, ()), now), strict=True):
                if key in shown:
                    self.update_cell(symbol, key, cell)  # a cell that looks the same is skipped

    def _shown(self, cells: tuple[Text, ...]) -> list[Text]:
        shown = {column.key for column in self.shown}
        return [cell for key, cell in zip(KEYS, cells, strict=True) if key in shown]

    def _blank(self, symbol: str) -> tuple[Text, ...]:
        return (Text(symbol.replace("_", "/"), style=self.get_component_rich_style("watchlist--symbol")),
                Text("—", justify="right"), Text("—", justify="right"), Text("", justify="right"), Text(""))

    def _cells(self, ticker: Ticker, tick, mids, now: float) -> tuple[Text, ...]:
        style = self.get_component_rich_style
        flashing = ticker.flash_until > now
        if ticker.stale:
            price_style = style("watchlist--stale")
        elif flashing:
            price_style = style("watchlist--flash-up" if ticker.direction > 0 else "watchlist--flash-down")
        else:
            price_style = Style()
        change = fmt.change_percent(ticker.mid, ticker.reference)
        change_style = "" if not change else style("watchlist--up" if change > 0 else "watchlist--down")
        trend_style = style("watchlist--up" if ticker.direction >= 0 else "watchlist--down")
        name = Text(ticker.symbol.replace("_", "/"), style=style("watchlist--symbol"))
        if ticker.stale:
            name.append(" ⏸", style=style("watchlist--stale"))
        return (name,
                Text(fmt.price(ticker.bid, tick), style=price_style, justify="right"),
                Text(fmt.price(ticker.ask, tick), style=price_style, justify="right"),
                Text(fmt.percent(change, signed=True) if change is not None else "—", style=change_style,
                     justify="right"),
                Text(fmt.sparkline(list(mids), SPARK_WIDTH), style=trend_style))
