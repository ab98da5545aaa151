"""The dashboard: watchlist, chart, positions (or the working orders) and the account, all live; the order
ticket is a key away."""

from __future__ import annotations

from collections import OrderedDict
from decimal import Decimal

from textual import events, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.widgets import Static

from cfd_client.errors import ApiError
from cfd_client.models import Order, Position, Side
from cfd_tui import format as fmt
from cfd_tui.layout import BOTTOM_VIEWS, INTERVALS, NARROW_BELOW, BottomView
from cfd_tui.messages import ChartChanged
from cfd_tui.screens.account import AccountScreen
from cfd_tui.screens.alerts import AlertsScreen
from cfd_tui.screens.api_keys import ApiKeysScreen
from cfd_tui.screens.base import CfdScreen
from cfd_tui.screens.cancel_order import CancelOrderScreen
from cfd_tui.screens.close_all import CloseAllScreen
from cfd_tui.screens.close_position import ClosePositionScreen
from cfd_tui.screens.edit_order import EditOrderScreen
from cfd_tui.screens.edit_stops import EditStopsScreen
from cfd_tui.screens.history import HistoryScreen
from cfd_tui.screens.new_alert import NewAlertScreen
from cfd_tui.screens.ticket import TicketScreen
from cfd_tui.state import Portfolio
from cfd_tui.widgets.account_bar import AccountBar
from cfd_tui.widgets.candle_chart import CandleChart, Level
from cfd_tui.widgets.connection_status import ConnectionStatus
from cfd_tui.widgets.footer import AppFooter
from cfd_tui.widgets.market_card import MarketCard
from cfd_tui.widgets.orders_table import OrdersTable
from cfd_tui.widgets.positions_table import PositionsTable
from cfd_tui.widgets.top_bar import TopBar
from cfd_tui.widgets.watchlist import Watchlist

CHART_CANDLES = 200  # candles fetched per chart
CACHED_CHARTS = 20  # charts kept to show at once when chosen again: every interval of five markets; the least
# recently shown goes first, so a server listing many markets does not make the cache grow with each one seen
TRADING_UNAVAILABLE = "trading unavailable on this server"
# The keys that act on the highlighted row mean the same for either view: `c` closes a position or cancels an
# order, `e` edits a position's stops or an order; `p` part-closes a position. The footer shows the view's.
VIEW_ACTIONS: dict[str, BottomView] = {"close_position": "positions", "partial_close": "positions",
                                       "edit_stops": "positions", "cancel_order": "orders",
                                       "modify_order": "orders"}


def chart_levels(symbol: str, portfolio: Portfolio) -> list[Level]:
    """The lines the chart of `symbol` draws: each open position's entry, stop-loss (a trailing one as such) and
    take-profit, the price at which the account would be stopped out (the platform's latest mark), and each
    working order's price."""
    levels: list[Level] = []
    for p in portfolio.positions.values():
        if p.symbol != symbol:
            continue
        levels.append(Level(p.entry_price, f"{p.side} {p.qty.normalize():f}", "entry", p.side))
        stop_out = portfolio.stop_out_price(p)
        if stop_out is not None:
            levels.append(Level(stop_out, "stop-out", "stop_out", "SO"))
        if p.stop_loss is not None:
            trailing = p.trailing_distance is not None
            levels.append(Level(p.stop_loss, "trailing SL" if trailing else "SL", "stop", "TSL" if trailing else ""))
        if p.take_profit is not None:
            levels.append(Level(p.take_profit, "TP", "target"))
    for o in portfolio.orders.values():
        if o.symbol == symbol:
            levels.append(Level(o.price, f"{'buy' if o.side == 'long' else 'sell'} {o.type} {o.qty.normalize():f}",
                                "order", o.type))
    return levels


class DashboardScreen(CfdScreen[None]):
    """Where the trader spends the day."""

    BINDINGS = [
        Binding("b", "ticket('long')", "Buy", tooltip="Order ticket: buy (long) the selected market"),
        Binding("s", "ticket('short')", "Sell", tooltip="Order ticket: sell (short) the selected market"),
        Binding("c", "close_position", "Close"),
        Binding("c", "cancel_order", "Cancel", tooltip="Cancel the highlighted working order"),
        Binding("p", "partial_close", "Part-close"),
        Binding("e", "edit_stops", "Stops", tooltip="Edit the stop-loss, take-profit and trailing stop"),
        Binding("e", "modify_order", "Modify", tooltip="Change the highlighted order's price, size, stops, expiry"),
        Binding("o", "show_view('orders')", "Orders", tooltip="Show the working (limit and stop) orders"),
        Binding("o", "show_view('positions')", "Positions", tooltip="Show the open positions"),
        Binding("C", "close_all", "Close all", show=False),
        Binding("i", "next_interval", "Interval", show=False),
        Binding("1", "interval('1m')", "1m", show=False),
        Binding("2", "interval('5m')", "5m", show=False),
        Binding("3", "interval('15m')", "15m", show=False),
        Binding("4", "interval('1h')", "1h", show=False),
        Binding("right_square_bracket", "step_market(1)", "Next market", show=False),
        Binding("left_square_bracket", "step_market(-1)", "Previous market", show=False),
        Binding("tab", "app.focus_next", "Switch table", show=False),
        Binding("h", "history", "History"),
        # in the footer from 110 columns (`_wide`); below, only in Help and the palette, as are the keys after it
        Binding("a", "price_alert('footer')", "Alert", tooltip="A price alert on the selected market's bid"),
        Binding("a", "price_alert('help')", "Alert", show=False),
        Binding("A", "alerts", "Alerts", show=False),
        Binding("k", "api_keys", "API keys", show=False),
        Binding("u", "account", "Account", show=False),
        Binding("x", "app.sign_out", "Sign out", show=False),
    ]

    def __init__(self) -> None:
        super().__init__()
        self.symbol = ""
        self.interval = "1m"
        self.view: BottomView = "positions"  # what the pane under the chart shows
        self._pane_title = ""
        self._wide = False  # the footer has room for the alert key
        # (symbol, interval) -> the last candles fetched, the most recently shown last
        self._chart_cache: OrderedDict[tuple[str, str], list] = OrderedDict()

    def compose(self) -> ComposeResult:
        yield TopBar(screen_name="Dashboard", id="top-bar")
        with Horizontal(id="market-row"):
            with Vertical(id="watch-pane"):
                yield Watchlist(id="watchlist")
                yield MarketCard(id="market-card")
            yield CandleChart(tz=self.ctx.tz, id="chart")
        with Vertical(id="positions-pane"):
            yield PositionsTable(id="positions")
            yield OrdersTable(tz=self.ctx.tz, id="orders")
            yield Static("", id="positions-empty")
        yield AccountBar(id="account-bar")
        yield AppFooter()

    def on_mount(self) -> None:
        board = self.ctx.board
        self.query_one("#watch-pane").border_title = "Markets"
        self.query_one(OrdersTable).display = False
        watchlist = self.query_one(Watchlist)
        watchlist.set_markets(board.symbols)
        watchlist.focus()
        # watched rather than told by a message: the chart then changes in the same frame as the cursor
        self.watch(watchlist, "cursor_coordinate", self._on_watchlist_cursor, init=False)
        self.watch(self.app, "market_version", self._on_market, init=False)
        self.watch(self.app, "portfolio_version", self._on_portfolio)
        if board.symbols:
            self.choose_market(board.symbols[0])
        self._on_market()

    def on_resize(self, event: events.Resize) -> None:
        self.query_one(AppFooter).fit(event.size.width)
        wide = event.size.width >= NARROW_BELOW
        if wide != self._wide:
            self._wide = wide
            self.refresh_bindings()

    # --- reactives down -----------------------------------------------------------------------------------

    def _on_market(self, _version: int = 0) -> None:
        ctx = self.ctx
        board = ctx.board
        watchlist = self.query_one(Watchlist)
        if board.symbols != watchlist.symbols:
            watchlist.set_markets(board.symbols)
            changed = set(board.symbols)
            if self.symbol not in board.symbols and board.symbols:
                self.choose_market(board.symbols[0])
        else:
            changed = ctx.changed_symbols
        now = ctx.clock()
        watchlist.update_symbols(board, changed, now)
        self.query_one(ConnectionStatus).stale = tuple(board.stale_symbols())
        if self.symbol in changed or not changed:
            self.query_one(MarketCard).show(board, self.symbol, ctx.tz)
        key = (self.symbol, self.interval)
        if key in ctx.changed_candles and key in board.live_candles:
            self.query_one(CandleChart).apply_live(board.live_candles[key])

    def _on_portfolio(self, _version: int = 0) -> None:
        portfolio = self.ctx.portfolio
        board = self.ctx.board
        positions = self.query_one(PositionsTable)
        orders = self.query_one(OrdersTable)
        positions.sync(portfolio, board)
        orders.sync(portfolio, board, int(self.ctx.clock() * 1000))
        empty = self.query_one("#positions-empty", Static)
        showing_orders = self.view == "orders"
        rows = portfolio.orders if showing_orders else portfolio.positions
        if portfolio.available is False:
            empty.update(f"⚠ {TRADING_UNAVAILABLE}: prices and charts still work.")
        elif showing_orders and portfolio.orders_available is False:
            empty.update("This server takes no pending orders yet. Press [b]o[/b] for the positions.")
        elif showing_orders and not rows:
            empty.update("No working orders. In the ticket ([b]b[/b] / [b]s[/b]), [b]F5[/b] makes it a limit or "
                         "stop order. Press [b]o[/b] for the positions.")
        elif not rows:
            empty.update("No open positions. Press [b]b[/b] to buy (long) or [b]s[/b] to sell (short).")
        positions.display = not showing_orders and bool(portfolio.positions)
        orders.display = showing_orders and bool(portfolio.orders)
        empty.display = not rows
        self._retitle_pane()
        self.query_one(CandleChart).set_levels(chart_levels(self.symbol, portfolio))
        self._show_account()

    def _retitle_pane(self) -> None:
        """`Open positions 3 · Working orders 2`, the view shown in bold, the other dim (set only when it changes:
        a new title repaints the whole pane, and the portfolio changes with every mark)."""
        portfolio = self.ctx.portfolio
        titles = {"positions": f"Open positions {len(portfolio.positions)}",
                  "orders": f"Working orders {len(portfolio.orders)}"}
        title = " · ".join(f"[b]{text}[/b]" if view == self.view else f"[dim]{text}[/dim]"
                           for view, text in titles.items())
        if title != self._pane_title:
            self._pane_title = title
            self.query_one("#positions-pane").border_title = title

    # --- positions or orders ------------------------------------------------------------------------------

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action in VIEW_ACTIONS:
            return VIEW_ACTIONS[action] == self.view
        if action == "show_view":
            return parameters[0] != self.view
        if action == "price_alert" and parameters:  # one of the two `a` keys: shown in the footer, or not
            return (parameters[0] == "footer") == self._wide
        return True

    def show_view(self, view: BottomView) -> None:
        """Show the open positions or the working orders under the chart (the keys follow)."""
        if view not in BOTTOM_VIEWS:
            return
        had_focus = self.focused in (self.query_one(PositionsTable), self.query_one(OrdersTable))
        self.view = view
        self._on_portfolio()
        self.refresh_bindings()
        table = self.query_one(OrdersTable if view == "orders" else PositionsTable)
        if had_focus and table.display:
            table.focus()
        elif had_focus:
            self.query_one(Watchlist).focus()

    def action_show_view(self, view: BottomView) -> None:
        self.show_view(view)

    def _show_account(self) -> None:
        portfolio = self.ctx.portfolio
        bar = self.query_one(AccountBar)
        if portfolio.available is False:
            bar.note = f"⚠ {TRADING_UNAVAILABLE}"
        bar.account = portfolio.account

    # --- the chart ----------------------------------------------------------------------------------------

    def _on_watchlist_cursor(self, _coordinate) -> None:
        symbol = self.query_one(Watchlist).selected_symbol
        if symbol is not None:
            self.choose_market(symbol)

    def choose_market(self, symbol: str) -> None:
        """Show `symbol` in the chart (and move the watchlist cursor to it)."""
        if symbol == self.symbol:
            return
        self.symbol = symbol
        self.query_one(Watchlist).select(symbol)
        self.query_one(MarketCard).show(self.ctx.board, symbol, self.ctx.tz)
        self.query_one(CandleChart).set_levels(chart_levels(symbol, self.ctx.portfolio))
        self._show_chart()

    def action_interval(self, interval: str) -> None:
        if interval != self.interval:
            self.interval = interval
            self._show_chart()

    def action_next_interval(self) -> None:
        self.action_interval(INTERVALS[(INTERVALS.index(self.interval) + 1) % len(INTERVALS)])

    def action_step_market(self, step: int) -> None:
        symbols = self.ctx.board.symbols
        if symbols:
            index = symbols.index(self.symbol) if self.symbol in symbols else 0
            self.choose_market(symbols[(index + step) % len(symbols)])

    def _show_chart(self) -> None:
        """Show the chosen market at the chosen interval, then load its candles."""
        symbol, interval = self.symbol, self.interval
        chart = self.query_one(CandleChart)
        market = self.ctx.board.markets.get(symbol)
        tick = market.price_tick if market else fmt.CENT
        seen = self._chart_cache.get((symbol, interval))
        if seen is not None:
            self._chart_cache.move_to_end((symbol, interval))
        # A chart seen before shows at once, in the frame that answers the key (the next key press must not
        # wait for the network); it is refreshed from the server right after.
        chart.set_history(symbol, interval, seen or [], tick)
        if seen is None:
            chart.show_message(f"loading {symbol.replace('_', '/')} {interval}…")
        self.post_message(ChartChanged(symbol, interval))  # the app follows its live candles
        self._load_chart(symbol, interval, tick, seen is not None)

    @work(group="chart", exclusive=True, exit_on_error=False)
    async def _load_chart(self, symbol: str, interval: str, tick: Decimal, shown: bool) -> None:
        chart = self.query_one(CandleChart)
        try:
            candles = await self.ctx.client.candles(symbol, interval, CHART_CANDLES)
        except ApiError as exc:
            if not shown:
                chart.show_message(f"no chart: {exc.message}")
            return
        self._chart_cache[(symbol, interval)] = candles
        self._chart_cache.move_to_end((symbol, interval))
        while len(self._chart_cache) > CACHED_CHARTS:
            self._chart_cache.popitem(last=False)
        if (symbol, interval) == (self.symbol, self.interval):
            chart.set_history(symbol, interval, candles, tick)
            live = self.ctx.board.live_candles.get((symbol, interval))
            if live is not None:
                chart.apply_live(live)

    # --- trading ------------------------------------------------------------------------------------------

    def _trading_ready(self) -> bool:
        if self.ctx.portfolio.available is False:
            self.notify("This server has no trading endpoints yet; prices and charts still work.",
                        title="Trading unavailable", severity="warning")
            return False
        return True

    def action_ticket(self, side: Side = "long") -> None:
        if self._trading_ready() and self.symbol:
            self.app.push_screen(TicketScreen(self.symbol, side))

    def selected_position(self) -> Position | None:
        position_id = self.query_one(PositionsTable).selected_id
        found = self.ctx.portfolio.positions.get(position_id) if position_id else None
        if found is None and self._trading_ready():
            self.notify("Select an open position first (Tab to the positions table).", severity="warning")
        return found

    def action_close_position(self) -> None:
        position = self.selected_position()
        if position is not None:
            self.app.push_screen(ClosePositionScreen(position, partial=False))

    def action_partial_close(self) -> None:
        position = self.selected_position()
        if position is not None:
            self.app.push_screen(ClosePositionScreen(position, partial=True))

    def action_edit_stops(self) -> None:
        position = self.selected_position()
        if position is not None:
            self.app.push_screen(EditStopsScreen(position))

    def selected_order(self) -> Order | None:
        order_id = self.query_one(OrdersTable).selected_id
        found = self.ctx.portfolio.orders.get(order_id) if order_id else None
        if found is None and self._trading_ready():
            self.notify("Select a working order first (Tab to the orders table).", severity="warning")
        return found

    def action_cancel_order(self) -> None:
        order = self.selected_order()
        if order is not None:
            self.app.push_screen(CancelOrderScreen(order))

    def action_modify_order(self) -> None:
        order = self.selected_order()
        if order is not None:
            self.app.push_screen(EditOrderScreen(order))

    def action_close_all(self) -> None:
        """Close every open position, or those of the selected market, after a confirmation that counts them."""
        if not self._trading_ready():
            return
        if not self.ctx.portfolio.positions:
            self.notify("There are no open positions to close.", title="Close all")
            return
        self.app.push_screen(CloseAllScreen(self.symbol))

    def action_history(self) -> None:
        self.app.push_screen(HistoryScreen())

    # --- alerts, keys, the account ------------------------------------------------------------------------

    def action_price_alert(self, _where: str = "") -> None:
        """A price alert on the selected market, starting at its bid now."""
        if not self.symbol:
            return
        if self.symbol not in self.ctx.board.tickers:
            self.notify(f"No price for {self.symbol.replace('_', '/')} yet: an alert starts from the bid.",
                        severity="warning")
            return
        self.app.push_screen(NewAlertScreen(self.symbol))

    def action_margin_alert(self) -> None:
        self.app.push_screen(NewAlertScreen(None))

    def action_alerts(self) -> None:
        self.app.push_screen(AlertsScreen(self.symbol))

    def action_api_keys(self) -> None:
        self.app.push_screen(ApiKeysScreen())

    def action_account(self) -> None:
        self.app.push_screen(AccountScreen())
