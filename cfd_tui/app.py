"""The CFD Broker terminal: the Textual `App`, built by `create_app` for the CLI, `cfd demo` and the tests.

State flows one way. The feed worker applies events to `MarketBoard` and `Portfolio` (plain objects); a
redraw timer (~20 Hz) takes what changed and bumps the `market_version` / `portfolio_version` reactives,
which the screens watch to redraw only the changed rows. Screens read the app through `AppContext`
(`cfd_tui.context`) and never import this module. Widgets post messages up; the screens handle them and
start workers for network I/O, and tell the app what came of it with the messages of `cfd_tui.messages`
(signed in, an order filled, a position closed...), which the app's `on_...` handlers act on. A worker
failure becomes a visible notification in one handler (`on_worker_state_changed`).
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import time
import weakref
from collections import deque
from collections.abc import Callable, Iterable
from datetime import tzinfo
from decimal import Decimal
from pathlib import Path

from textual import work
from textual._styles_cache import StylesCache
from textual.app import App, SystemCommand
from textual.binding import Binding
from textual.notifications import Notify
from textual.reactive import reactive
from textual.screen import Screen
from textual.widgets import Input
from textual.worker import Worker, WorkerState

from cfd_client.api import ApiClient, api_root
from cfd_client.errors import ApiError, ClientError, ConnectionLost, NotFound, NotSignedIn
from cfd_client.feed import AUTH_ERRORS, FeedEvent, reconnect_backoff
from cfd_client.models import AccountFrame, AlertFrame, FeedState, OrderFrame, Position, PositionFrame, StateChanged
from cfd_client.protocol import BrokerApi, Feed
from cfd_client.session import SessionStore
from cfd_tui.layout import NARROW_BELOW, SHORT_BELOW
from cfd_tui.local import default_screenshot_dir, outbox_hint
from cfd_tui.messages import (
    AlertCreated,
    AlertDeleted,
    AlertsLoaded,
    ChartChanged,
    OrderChanged,
    OrderFilled,
    OrderPlaced,
    PasswordReset,
    PositionClosed,
    PositionsClosed,
    SignedIn,
    SignedOut,
    StopsChanged,
)
from cfd_tui.notices import (
    Notice,
    account_notice,
    alert_deleted_notice,
    alert_notice,
    alert_set_notice,
    close_notice,
    closed_all_notice,
    describe,
    fill_notice,
    order_change_notice,
    order_notice,
    placed_notice,
    position_notice,
)
from cfd_tui.screens.dashboard import DashboardScreen
from cfd_tui.screens.form import NEXT_ON_ENTER
from cfd_tui.screens.help import HelpScreen
from cfd_tui.screens.signin import SignInScreen
from cfd_tui.state import AlertBook, MarketBoard, Portfolio
from cfd_tui.widgets.top_bar import TopBar
from shared.contracts.rest import User
from shared.contracts.ws import CandleFrame, ErrorFrame, PriceFrame

log = logging.getLogger(__name__)

STYLES = Path(__file__).parent / "styles"
REDRAW_HZ = 20.0
STALE_AFTER_S = 10.0
SETTLE_AFTER_S = 0.5  # after the dashboard opens, once its objects exist (see `_settle_memory`)
STYLE_MEMO_CLEAR_S = 30.0  # how often Textual's per-widget colour memo is emptied (see `forget_removed_widgets`)
NOTICE_LOG_SIZE = 100  # the latest toasts remembered in `notice_log` (what was said, after the toast is gone)
MAX_TOASTS = 5  # toasts on screen at once: a burst (a stop-out closing many positions) shows the newest five,
# not a column of widgets taller than the screen, each waiting out its timeout


class CfdApp(App[None]):
    """The trader's terminal. Build it with `create_app`."""

    TITLE = "CFD Broker"
    CSS_PATH = [STYLES / name for name in ("app.tcss", "auth.tcss", "dashboard.tcss", "dialogs.tcss",
                                           "history.tcss", "account.tcss")]
    # Laid out for 80×24 upwards: the styles key on these classes of the screen, and the tables fit their
    # columns to their own width.
    HORIZONTAL_BREAKPOINTS = [(0, "-narrow"), (NARROW_BELOW, "-wide")]
    VERTICAL_BREAKPOINTS = [(0, "-short"), (SHORT_BELOW, "-tall")]
    BINDINGS = [
        Binding("f1,question_mark", "help", "Help", tooltip="Every key, on one screen"),
        Binding("ctrl+q", "quit", "Quit", priority=True),
        # Priority: focus moves when the app reads the key, before the keys after it go anywhere. Otherwise a
        # burst (a paste, a password manager's auto-type) is all queued to the old field before Tab is seen.
        Binding("tab", "focus_next", "Next field", show=False, priority=True),
        Binding("shift+tab", "focus_previous", "Previous field", show=False, priority=True),
        # The same for Enter in a form field that leads to the next one (an Input with the class `next-on-enter`);
        # anywhere else the binding does not apply and Enter goes on to the focused widget.
        Binding("enter", "next_field", "Next field", show=False, priority=True),
    ]

    # App-level state is watched by the widgets that show it; repaint=False keeps a change from repainting
    # the whole screen (a full-screen render costs ~50 ms, and the versions change up to 20 times a second).
    feed_state: reactive[FeedState] = reactive(FeedState.CLOSED, repaint=False)
    feed_detail: reactive[str] = reactive("", repaint=False)
    user: reactive[User | None] = reactive(None, repaint=False)
    market_version: reactive[int] = reactive(0, repaint=False)
    portfolio_version: reactive[int] = reactive(0, repaint=False)
    alerts_version: reactive[int] = reactive(0, repaint=False)

    def __init__(self, api_url: str, client: BrokerApi | None = None, *, session_store: SessionStore | None = None,
                 clock: Callable[[], float] = time.time, tz: tzinfo | None = None, redraw_hz: float = REDRAW_HZ,
                 stale_after: float = STALE_AFTER_S, animate: bool = True, code_hint: str = "",
                 data_dir: Path | None = None, screenshot_dir: Path | None = None) -> None:
        super().__init__()
        self.api_url = api_root(api_url)
        self.client: BrokerApi = client or ApiClient(self.api_url)
        self.session_store = session_store
        self.clock = clock
        self.tz = tz
        self.redraw_hz = redraw_hz
        self.stale_after = stale_after
        self.flash_ticks = animate  # not `self.animate`: that would hide Textual's `App.animate` method
        # a local platform's data directory: its outbox holds the sign-up codes, screenshots go beside it
        self.data_dir = data_dir
        self.code_hint = code_hint or (outbox_hint(data_dir) if data_dir is not None else "")  # on code entry
        self.screenshot_dir = screenshot_dir or (data_dir / "screenshots" if data_dir is not None else
                                                 default_screenshot_dir())
        self.board = MarketBoard()
        self.portfolio = Portfolio()
        self.alerts = AlertBook()
        self.changed_symbols: set[str] = set()
        self.changed_candles: set[tuple[str, str]] = set()
        self.feed: Feed | None = None
        self.candle_channel: str | None = None
        self._portfolio_dirty = False
        self._feed_resumes = False  # the feed has an account event to resume after (so a reconnect loses none)
        self._signing_out = False
        self.notice_log: deque[tuple[str, str, str]] = deque(maxlen=NOTICE_LOG_SIZE)  # (severity, title, message)
        self._screens_pushed: weakref.WeakSet[Screen] = weakref.WeakSet()  # see `_settle_memory`

    # --- lifecycle ----------------------------------------------------------------------------------------

    def on_mount(self) -> None:
        self.set_interval(1 / self.redraw_hz, self._redraw, name="redraw")
        self.set_interval(STYLE_MEMO_CLEAR_S, forget_removed_widgets, name="forget removed widgets")
        self._restore_session()

    async def on_unmount(self) -> None:
        gc.unfreeze()
        if self.feed is not None:
            with contextlib.suppress(Exception):
                await self.feed.stop()
        with contextlib.suppress(Exception):
            await self.client.aclose()

    @work(group="session", exclusive=True, exit_on_error=False)
    async def _restore_session(self) -> None:
        """Signed in from a saved token when there is a live one; the sign-in screen otherwise."""
        saved = self.session_store.load(self.api_url) if self.session_store else None
        if saved is None and self.client.token is None:
            await self.show_sign_in()
            return
        if saved is not None:
            self.client.token = saved.access_token
            self.user = saved.user
        try:
            self.user = await self.client.me()
        except NotSignedIn:
            await self.session_ended("Your session has expired; please sign in again.")
            return
        except ConnectionLost:
            if self.user is None:
                raise
        await self.show_dashboard()

    async def show_sign_in(self, message: str = "", email: str = "") -> None:
        await self._replace_screens(SignInScreen(message=message, email=email))

    async def show_dashboard(self) -> None:
        await self._replace_screens(DashboardScreen())
        self.start_feed()
        self.load_markets()
        self.refresh_portfolio()
        self.set_timer(SETTLE_AFTER_S, self._settle_memory, name="settle memory")

    def _settle_memory(self) -> None:
        """Collect garbage once, then leave what survives (app, screens, caches) out of later collections.

        Python's full collections walk every live object: with the dashboard up that took 40–100 ms, a stall
        that a key press could wait behind, every few seconds under a busy feed. `gc.unfreeze` undoes it when
        the dashboard goes.

        Frozen objects are never collected as cycles, so this waits until the dashboard is the screen on top:
        a screen pushed over it meanwhile (history, a ticket) would otherwise stay in memory after it closes.
        """
        if self.user is None or not self.screen_stack:
            return  # signed out, or quitting, meanwhile
        if not isinstance(self.screen, DashboardScreen):
            self.set_timer(SETTLE_AFTER_S, self._settle_memory, name="settle memory")
            return
        gc.collect()
        if any(screen not in self.screen_stack for screen in self._screens_pushed):
            # a screen that has just closed is still referenced while Textual finishes removing it
            self.set_timer(SETTLE_AFTER_S, self._settle_memory, name="settle memory")
            return
        gc.freeze()

    def push_screen(self, screen, *args, **kwargs):
        """Textual's `push_screen`, remembering (weakly) each screen pushed, for `_settle_memory`."""
        if isinstance(screen, Screen):
            self._screens_pushed.add(screen)
        return super().push_screen(screen, *args, **kwargs)

    async def _replace_screens(self, screen: Screen) -> None:
        while len(self.screen_stack) > 1:
            await self.pop_screen()
        await self.push_screen(screen)

    def on_signed_in(self, message: SignedIn) -> None:
        """The sign-in or the code screen signed the trader in: remember the session and go to the dashboard."""
        session = message.session
        self.user = session.user
        if self.session_store is not None:
            try:
                self.session_store.save(self.api_url, session)
            except OSError as exc:
                self.notify(f"Could not save the session ({exc}); you will sign in again next time.",
                            severity="warning")
        self.portfolio.reset()
        self._enter_dashboard()

    @work(group="session", exclusive=True, exit_on_error=False)
    async def _enter_dashboard(self) -> None:
        # an app worker: the screen that signed in is removed, so the change cannot run in its own worker
        await self.show_dashboard()

    def on_signed_out(self, message: SignedOut) -> None:
        """The account screen signed out everywhere: the token is gone already; show the sign-in screen."""
        self.end_session(message.message)

    def on_password_reset(self, message: PasswordReset) -> None:
        """A new password was set with the mailed code: sign in with it."""
        self._after_reset(message.email)

    @work(group="session", exclusive=True, exit_on_error=False)
    async def _after_reset(self, email: str) -> None:
        await self.show_sign_in("Your password is changed, and every session of the account was signed out. "
                                "Sign in with the new password.", email)

    def end_session(self, message: str) -> None:
        """The server no longer accepts the token: forget it and ask to sign in again."""
        self._end_session(message)

    @work(group="session", exclusive=True, exit_on_error=False)
    async def _end_session(self, message: str) -> None:
        await self.session_ended(message)

    async def session_ended(self, message: str) -> None:
        """Forget the session and show the sign-in screen with `message` (from an app worker only)."""
        if self._signing_out:
            return
        self._signing_out = True
        try:
            self.client.token = None
            if self.session_store is not None:
                self.session_store.forget(self.api_url)
            await self._stop_feed()
            self.user = None
            self.portfolio.reset()
            self.alerts.reset()
            self.alerts_version += 1
            gc.unfreeze()  # the dashboard may be collected once it is gone
            await self.show_sign_in(message)
        finally:
            self._signing_out = False

    def watch_user(self, user: User | None) -> None:
        for bar in self._top_bars():
            bar.show_user(user)

    def watch_feed_state(self, state: FeedState) -> None:
        for bar in self._top_bars():
            bar.show_feed_state(state)

    def _top_bars(self) -> list[TopBar]:
        return [bar for screen in self.screen_stack for bar in screen.query(TopBar) if bar.is_mounted]

    # --- actions ------------------------------------------------------------------------------------------

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action == "next_field":
            return isinstance(self.focused, Input) and self.focused.has_class(NEXT_ON_ENTER)
        return True

    def action_next_field(self) -> None:
        self.screen.focus_next()

    def action_help(self) -> None:
        if not isinstance(self.screen, HelpScreen):
            self.push_screen(HelpScreen())

    @work(group="session", exclusive=True, exit_on_error=False)
    async def action_sign_out(self) -> None:
        """Revoke the session on the server (if it can be reached) and go back to the sign-in screen."""
        with contextlib.suppress(ClientError):
            await self.client.logout()
        await self.session_ended("Signed out.")

    def get_system_commands(self, screen: Screen) -> Iterable[SystemCommand]:
        yield from super().get_system_commands(screen)
        if self.user is None:
            return
        dashboard = next((s for s in self.screen_stack if isinstance(s, DashboardScreen)), None)
        if dashboard is not None:
            for symbol in self.board.symbols:
                yield SystemCommand(f"Market {symbol.replace('_', '/')}", f"Show {symbol} in the chart",
                                    lambda s=symbol: dashboard.choose_market(s))
            yield SystemCommand("Order ticket", "Open a new position in the selected market",
                                lambda: dashboard.action_ticket("long"))
            yield SystemCommand("Working orders", "Show the pending limit and stop orders (o toggles)",
                                lambda: dashboard.show_view("orders"))
            yield SystemCommand("Close all positions", "Close every open position, or those of the selected "
                                "market, after a confirmation", dashboard.action_close_all)
            yield SystemCommand("History", "Closed positions, orders and the ledger", dashboard.action_history)
            yield SystemCommand("Price alert", "Be told when the selected market's bid reaches a price (a)",
                                dashboard.action_price_alert)
            yield SystemCommand("Margin-level alert", "Be told when the margin level falls below a level",
                                dashboard.action_margin_alert)
            yield SystemCommand("Alerts", "The active and fired alerts; delete one (A)", dashboard.action_alerts)
            yield SystemCommand("API keys", "Keys for bots and scripts: create, copy once, revoke (k)",
                                dashboard.action_api_keys)
            yield SystemCommand("Account", "Change the password, sign out everywhere (u)", dashboard.action_account)
        yield SystemCommand("Sign out", "End this session and return to the sign-in screen", self.action_sign_out)

    # --- data ---------------------------------------------------------------------------------------------

    @work(group="markets", exclusive=True, exit_on_error=False)
    async def load_markets(self) -> None:
        """The server's catalogue and latest prices, then a little history per market for the sparklines."""
        try:
            markets = await self.client.markets()
        except NotFound:
            markets = []
        if markets:
            self.board.set_markets(markets)
        now = self.clock()
        for price in await self.client.prices():
            if price.symbol not in self.board.tickers:
                self.board.apply_price(price, now, flash=False)
        for symbol in self.board.symbols:
            with contextlib.suppress(ApiError):
                self.board.seed(symbol, await self.client.candles(symbol, "1m", 60))

    @work(group="portfolio", exclusive=True, exit_on_error=False)
    async def refresh_portfolio(self) -> None:
        """Account, open positions and working orders from REST (at sign-in and after each reconnect)."""
        try:
            account = await self.client.account()
            positions = await self.client.positions("open")
        except NotFound:
            self.portfolio.available = False
            self._portfolio_dirty = True
            return
        try:
            orders = await self.client.orders("working")
            self.portfolio.orders_available = True
        except NotFound:  # a server without pending orders: trading works without them
            orders, self.portfolio.orders_available = [], False
        self.portfolio.available = True
        self.portfolio.account = account
        self.portfolio.set_positions(positions)
        self.portfolio.set_orders(orders)
        self._portfolio_dirty = True

    def apply_position(self, position: Position) -> None:
        """A position this terminal opened, changed or closed over REST: shown before the feed says so."""
        self.portfolio.apply_position(position)
        self._portfolio_dirty = True

    def on_order_filled(self, message: OrderFilled) -> None:
        self.apply_position(message.position)
        self.refresh_portfolio()  # the margin it uses
        notice = fill_notice(message.position)
        self.notify(notice.message, title=notice.title, severity=notice.severity)

    def on_position_closed(self, message: PositionClosed) -> None:
        self.apply_position(message.position)
        self.refresh_portfolio()  # the margin it freed, the PnL it realised
        notice = close_notice(message.position)
        self.notify(notice.message, title=notice.title, severity=notice.severity)

    def on_stops_changed(self, message: StopsChanged) -> None:
        self.apply_position(message.position)
        self.notify(f"Stops of {describe(message.position)} saved.", title="Stops")

    def on_positions_closed(self, message: PositionsClosed) -> None:
        for position in message.positions:
            self.portfolio.apply_position(position)
        self._portfolio_dirty = True
        self.refresh_portfolio()  # the margin they freed, the PnL they realised
        self._notice(closed_all_notice(message.positions, message.symbol))

    def on_alert_created(self, message: AlertCreated) -> None:
        self.alerts.apply(message.alert)
        self.alerts_version += 1
        self._notice(alert_set_notice(message.alert, self._tick_of(message.alert.symbol)))

    def on_alert_deleted(self, message: AlertDeleted) -> None:
        self.alerts.remove(message.alert.id)
        self.alerts_version += 1
        self._notice(alert_deleted_notice(message.alert, self._tick_of(message.alert.symbol)))

    def on_alerts_loaded(self, message: AlertsLoaded) -> None:
        self.alerts.set_all(message.alerts)
        self.alerts_version += 1

    def _tick_of(self, symbol: str | None) -> Decimal | None:
        market = self.board.markets.get(symbol or "")
        return None if market is None else market.price_tick

    def on_order_placed(self, message: OrderPlaced) -> None:
        self.portfolio.apply_order(message.order)
        self._portfolio_dirty = True
        self._notice(placed_notice(message.order, self.tz))

    def on_order_changed(self, message: OrderChanged) -> None:
        self.portfolio.apply_order(message.order)
        self._portfolio_dirty = True
        self._notice(order_change_notice(message.order, self.tz))

    # --- the feed -----------------------------------------------------------------------------------------

    def start_feed(self) -> None:
        self._run_feed()

    async def _stop_feed(self) -> None:
        self.workers.cancel_group(self, "feed")
        self.workers.cancel_group(self, "candles")
        feed, self.feed = self.feed, None
        if feed is not None:
            with contextlib.suppress(Exception):
                await feed.stop()
        self.feed_state = FeedState.CLOSED

    @work(group="feed", exclusive=True, exit_on_error=False)
    async def _run_feed(self) -> None:
        """Open the feed (retrying until the server answers) and apply its events until cancelled."""
        backoff = reconnect_backoff()
        self.feed_state = FeedState.CONNECTING
        channels = ["prices.*", "account"] + ([self.candle_channel] if self.candle_channel else [])
        while True:
            try:
                feed = await self.client.feed(channels, stale_after=self.stale_after)
                break
            except ClientError as exc:  # the REST API is down too: say so and retry
                delay = backoff.next()
                self.feed_state, self.feed_detail = FeedState.RECONNECTING, str(exc)
                await asyncio.sleep(delay)
        if self.feed is not None:
            with contextlib.suppress(Exception):
                await self.feed.stop()
        self.feed = feed
        self._feed_resumes = False
        await feed.start()
        if self.candle_channel and self.candle_channel not in feed.channels:
            self._subscribe_candles()  # the chart changed while the feed was opening
        try:
            async for event in feed.events():
                await self._apply(event)
        finally:
            with contextlib.suppress(Exception):
                await feed.stop()

    async def _apply(self, event: FeedEvent) -> None:
        """One event of the feed, by its type; the frames not named here (acknowledgements, pongs) need
        nothing."""
        if isinstance(event, PositionFrame | OrderFrame | AlertFrame | AccountFrame) and event.seq is not None:
            self._feed_resumes = True
        match event:
            case PriceFrame():
                self.board.apply_price(event, self.clock(), flash=self.flash_ticks)
            case CandleFrame():
                self.board.apply_candle(event)
            case PositionFrame(position=position, balance=balance):
                self.portfolio.apply_position(position)
                if self.portfolio.account is not None and balance is not None:
                    self.portfolio.account.balance = balance
                self._portfolio_dirty = True
                self._notice(position_notice(event))
            case OrderFrame(order=order):
                self.portfolio.apply_order(order)
                self._portfolio_dirty = True
                self._notice(order_notice(event, self.portfolio.positions))
            case AlertFrame(event="deleted", alert=alert):
                self.alerts.remove(alert.id)
                self.alerts_version += 1
            case AlertFrame(alert=alert):
                self.alerts.apply(alert)
                self.alerts_version += 1
                self._notice(alert_notice(event, self._tick_of(alert.symbol)))
            case AccountFrame(account=account, marks=marks):
                if account is not None or marks is not None:
                    self.portfolio.apply_account(account, marks)
                    self.portfolio.available = True
                    self._portfolio_dirty = True
                self._notice(account_notice(event))
            case StateChanged(state=state, detail=detail):
                was = self.feed_state
                self.feed_detail = detail
                self.feed_state = state
                if state is FeedState.LIVE and was is FeedState.RECONNECTING:
                    if not self._feed_resumes:
                        self.refresh_portfolio()  # no event to resume after: what happened while away is unknown
                    if not self.board.tickers:
                        self.load_markets()
            case ErrorFrame(code="resume_gap"):
                self.refresh_portfolio()  # the missed events are no longer kept: start again from the account
            case ErrorFrame(code=code) if code in AUTH_ERRORS and self.client.token:
                token = self.client.token
                try:
                    await self.client.me()  # the feed refused the token; the REST API says whether it is gone
                except NotSignedIn:
                    if self.client.token == token:  # not signed out from here meanwhile (that says so itself)
                        self.end_session("Your session has expired; please sign in again.")
                except ClientError:
                    pass

    def _notice(self, notice: Notice | None) -> None:
        """A toast of what the broker did on its own (see `cfd_tui.notices`), when there is one."""
        if notice is not None:
            self.notify(notice.message, title=notice.title, severity=notice.severity, timeout=notice.timeout)

    def on_chart_changed(self, message: ChartChanged) -> None:
        """The dashboard charts another market or interval: follow its live candles (and stop the previous)."""
        channel = f"candles.{message.interval}.{message.symbol}"
        if channel == self.candle_channel:
            return
        self.candle_channel = channel
        self.board.follow_candles(message.symbol, message.interval)
        self._subscribe_candles()

    @work(group="candles", exclusive=True, exit_on_error=False)
    async def _subscribe_candles(self) -> None:
        """Bring the feed's candle channels in line with `candle_channel`. A run cut short by the next chart
        leaves nothing behind: the next run compares with what the feed has, not with the previous chart."""
        feed, channel = self.feed, self.candle_channel
        if feed is None:
            return  # `_run_feed` subscribes to `candle_channel` when it opens the feed
        stale = [c for c in feed.channels if c.startswith("candles.") and c != channel]
        if stale:
            await feed.unsubscribe(stale)
        if channel:
            await feed.subscribe([channel])

    # --- redraw -------------------------------------------------------------------------------------------

    def _redraw(self) -> None:
        """Take what changed since the last frame and tell the screens (≤ `redraw_hz` times a second)."""
        now = self.clock()
        self.board.mark_stale(now, self.stale_after)
        self.board.expire_flashes(now)
        symbols, candles = self.board.take_changes()
        if symbols or candles:
            self.changed_symbols, self.changed_candles = symbols, candles
            self.market_version += 1
        if self._portfolio_dirty:
            self._portfolio_dirty = False
            self.portfolio_version += 1

    def deliver_screenshot(self, filename: str | None = None, path: str | None = None,
                           time_format: str | None = None) -> str | None:
        """Save an SVG of the screen in `screenshot_dir` (created when missing) and say where, or why not.

        The Screenshot command of the palette comes here. Textual's default folder (~/Downloads) often does not
        exist, and its toast then only said "Failed to save screenshot".
        """
        folder = Path(path) if path else self.screenshot_dir
        try:
            folder.mkdir(mode=0o700, parents=True, exist_ok=True)
            saved = self.save_screenshot(filename, str(folder), time_format)
        except OSError as exc:
            self.notify(f"Could not save it in {folder}: {exc.strerror or exc}. Check that the folder is "
                        "writable.", title="Screenshot not saved", severity="error", markup=False)
            return None
        self.notify(f"Saved to {saved}", title="Screenshot", markup=False)
        return saved

    def notify(self, message: str, *, title: str = "", severity="information", timeout: float | None = None,
               markup: bool = True) -> None:
        """A toast, also kept in `notice_log` (the last `NOTICE_LOG_SIZE`)."""
        self.notice_log.append((severity, title, message))
        super().notify(message, title=title, severity=severity, timeout=timeout, markup=markup)

    def on_notify(self, event: Notify) -> None:
        """Before Textual adds a toast: make room for it by retiring the oldest beyond `MAX_TOASTS`."""
        shown = list(self._notifications)
        for notification in shown[:max(0, len(shown) - MAX_TOASTS + 1)]:
            self._unnotify(notification, refresh=False)  # the toast rack drops its widget on the refresh

    # --- errors -------------------------------------------------------------------------------------------

    async def on_worker_state_changed(self, event: Worker.StateChanged) -> None:
        """The one place a failed worker becomes a message on screen."""
        if event.state is not WorkerState.ERROR:
            return
        match event.worker.error:
            case NotSignedIn():
                self.end_session("Your session has expired; please sign in again.")
            case ConnectionLost() as error:
                self.notify(error.message, title="Connection", severity="error")
            case ApiError() as error:
                self.notify(error.message, title=error.code.replace("_", " ").capitalize(), severity="error")
            case error:
                log.error("worker %s failed", event.worker.name, exc_info=error)
                self.notify(f"{type(error).__name__}: {error}", title="Unexpected error", severity="error")


def forget_removed_widgets() -> None:
    """Let removed widgets go: Textual 8 memoises `StylesCache.get_inner_outer` with `lru_cache(1024)` on the
    instance, so the last 1,024 widgets ever drawn (toasts, footer keys, every history screen's cells) stay in
    memory with their rendered lines, about 1 MB per history screen, long after they were removed. Emptying
    the memo costs the widgets on screen one recomputed pair of colours each."""
    clear = getattr(getattr(StylesCache, "get_inner_outer", None), "cache_clear", None)
    if clear is not None:
        clear()


def create_app(api_url: str = "http://127.0.0.1:8000", client: BrokerApi | None = None, *,
               session_store: SessionStore | bool | None = True, clock: Callable[[], float] | None = None,
               tz: tzinfo | None = None, **options) -> CfdApp:
    """The app against `api_url` (or the given `client`, e.g. a `FakeBroker`).

    `session_store=True` keeps the session in the user's config dir, False/None keeps none, or pass a
    `SessionStore`. `clock` (epoch seconds) and `tz` freeze what the screens show, for snapshots. Other
    options: `redraw_hz`, `stale_after`, `animate` (tick flashes), `data_dir` (a local platform's data directory:
    the code screen says how to read its outbox, screenshots go in its `screenshots/`), `code_hint` (shown on
    code entry instead), `screenshot_dir`.
    """
    store = SessionStore() if session_store is True else (session_store or None)
    return CfdApp(api_url, client, session_store=store, clock=clock or time.time, tz=tz, **options)
