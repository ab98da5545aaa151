"""`MarketCard`: the selected market's quote and contract terms, under the watchlist."""

from __future__ import annotations

from datetime import tzinfo

from rich.console import RenderableType
from rich.table import Table
from rich.text import Text
from textual.widget import Widget

from cfd_tui import format as fmt
from cfd_tui.state import MarketBoard


class MarketCard(Widget):
    """Spread, mid, quote time and the terms a ticket is checked against (leverage, size, tick).

    Fixed height and drawn by `render`, so a tick repaints it without a re-layout.
    """

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self._content: RenderableType = ""

    def show(self, board: MarketBoard, symbol: str, tz: tzinfo | None = None) -> None:
        """Redraw for `symbol` from the board."""
        market = board.markets.get(symbol)
        ticker = board.tickers.get(symbol)
        if market is None:
            self._content = ""
            self.refresh()
            return
        self.border_title = f"{market.base} / {market.quote}"
        grid = Table.grid(padding=(0, 2), expand=True)
        for _ in range(4):
            grid.add_column()
        tick = market.price_tick
        if ticker is not None:
            spread = ticker.ask - ticker.bid
            bps = spread / ticker.mid * 10_000 if ticker.mid else None
            grid.add_row(Text("Mid", style="dim"), fmt.price(ticker.mid, tick / 10),
                         Text("Spread", style="dim"),
                         f"{fmt.price(spread, tick)} ({fmt.money(bps)} bps)" if bps is not None else "—")
            grid.add_row(Text("Quote at", style="dim"),
                         Text(fmt.clock(ticker.ts / 1000, tz) + (" stale" if ticker.stale else ""),
                              style="bold yellow" if ticker.stale else ""),
                         Text("Markup", style="dim"), f"{market.spread_bps.normalize():f} bps")
        else:
            grid.add_row(Text("Mid", style="dim"), "—", Text("Spread", style="dim"), "—")
            grid.add_row(Text("Quote at", style="dim"), "waiting", Text("Markup", style="dim"),
                         f"{market.spread_bps.normalize():f} bps")
        grid.add_row(Text("Leverage", style="dim"), f"up to {market.max_leverage}×", Text("Tick", style="dim"),
                     f"{tick.normalize():f}")
        grid.add_row(Text("Min qty", style="dim"), f"{market.min_qty.normalize():f} {market.base}",
                     Text("Qty step", style="dim"), f"{market.qty_step.normalize():f}")
        self._content = grid
        self.refresh()

    def render(self) -> RenderableType:
        return self._content
