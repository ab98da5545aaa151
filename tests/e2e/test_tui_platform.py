"""The TUI against the in-process platform, through its public REST API and WebSocket feed.

Prices are ticks published to the platform's bus, as the poller would. A journey: sign up with the mailed
code, watch prices move, open a position, see its PnL move, close it, find it in the history. Pending
orders: a limit order placed and cancelled in the terminal, another filled when the price comes to it.
Then a dropped connection: the TUI says "reconnecting" and recovers when the network comes back.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from decimal import Decimal

import httpx
import pytest
from helpers import Forwarder, sign_up
from textual import events

from cfd_client import ApiClient, FeedClient
from cfd_client.models import FeedState
from cfd_poller.simulation import SIMULATION
from cfd_tui.app import CfdApp, create_app
from cfd_tui.screens.dashboard import DashboardScreen
from cfd_tui.screens.history import HistoryScreen
from cfd_tui.screens.signin import SignInScreen
from cfd_tui.screens.verify import VerifyScreen
from cfd_tui.widgets.orders_table import OrdersTable
from cfd_tui.widgets.positions_table import PositionsTable
from cfd_tui.widgets.watchlist import Watchlist
from shared.bus import Topics
from shared.contracts import encode
from shared.contracts.bus import PriceTick
from shared.markets import MARKETS

SIZE = (140, 45)


@pytest.fixture
async def market_data(platform):
    """Skip when this server build does not serve prices yet; else publish ticks for every market."""
    async with httpx.AsyncClient(base_url=platform.base_url + "/api/v1") as http:
        if (await http.get("/prices")).status_code == 404:
            pytest.skip("this server build does not serve market data (/prices, /ws) yet")
    ticker = Ticker(platform)
    await ticker.start()
    yield ticker
    await ticker.stop()


class Ticker:
    """Publishes a tick per market every `period` seconds, walking each price up by one tick."""

    def __init__(self, platform, period: float = 0.1) -> None:
        self.bus = platform.bus
        self.topic = Topics(platform.settings.bus).prices
        self.period = period
        self.step = 0
        self.offset: dict[str, Decimal] = {}
        self._task: asyncio.Task | None = None

    async def start(self) -> None:
        await self.publish_all()
        self._task = asyncio.get_running_loop().create_task(self._run())

    async def stop(self) -> None:
        if self._task:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def publish(self, symbol: str, mid: Decimal) -> None:
        market = MARKETS[symbol]
        now_us = time.time_ns() // 1000
        tick = PriceTick(symbol=symbol, bid=mid - market.price_tick, ask=mid + market.price_tick,
                         exchange_time_us=now_us, ingest_time_us=now_us)
        await self.bus.publish(self.topic, encode(tick), key=symbol.encode())

    async def publish_all(self) -> None:
        self.step += 1
        for symbol, market in MARKETS.items():
            mid = SIMULATION[symbol].price + market.price_tick * (self.step % 50) + self.offset.get(symbol, Decimal(0))
            await self.publish(symbol, mid)

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self.period)
            await self.publish_all()


async def until(pilot, condition, timeout: float = 10.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not condition():
        assert loop.time() < deadline, "timed out waiting for the screen"
        await pilot.pause(0.05)


def form_error(app: CfdApp) -> str:
    return str(app.screen.query_one("#form-error").render())


def field_error(app: CfdApp, input_id: str) -> str:
    """The error shown under a field of the screen ("" when none)."""
    box = app.screen.query_one(f"#{input_id}-error")
    return str(box.render()) if box.has_class("-shown") else ""


async def test_sign_up_watch_prices_trade_and_see_the_history(platform, market_data, mailbox, email):
    app = create_app(platform.base_url, session_store=False)
    async with app.run_test(size=SIZE) as pilot:
        await until(pilot, lambda: isinstance(app.screen, SignInScreen))
        await pilot.press("ctrl+n")
        await until(pilot, lambda: app.screen.query("#name"))
        for field, value in (("#name", "Ada Trader"), ("#email", email), ("#password", "correct horse battery")):
            app.screen.query_one(field).value = value
        app.screen.query_one("#password").focus()
        await pilot.press("enter")
        await until(pilot, lambda: isinstance(app.screen, VerifyScreen))
        code = await mailbox.code_for(email)
        wrong = "000000" if code != "000000" else "111111"
        await pilot.press(*wrong)
        await until(pilot, lambda: form_error(app) != "")
        assert isinstance(app.screen, VerifyScreen)
        for key in [events.Key(c, c) for c in code] + [events.Key("enter", "\r")]:
            app.post_message(key)  # in one burst, as typed: the sixth digit sends it, the Enter after it must not
        await until(pilot, lambda: isinstance(app.screen, DashboardScreen) and app.feed_state is FeedState.LIVE)

        watchlist = app.screen.query_one(Watchlist)
        await until(pilot, lambda: str(watchlist.get_cell("SOL_USDC", "bid")) not in ("—", ""))
        first = str(watchlist.get_cell("SOL_USDC", "bid"))
        await until(pilot, lambda: str(watchlist.get_cell("SOL_USDC", "bid")) != first)  # prices move

        app.screen.choose_market("SOL_USDC")
        await pilot.press("b")
        await until(pilot, lambda: app.screen.query("#amount"))
        app.screen.query_one("#amount").value = "abc"
        app.screen.query_one("#amount").focus()
        await pilot.press("enter")
        assert "must be a number" in field_error(app, "amount")
        app.screen.query_one("#amount").value = "2"
        await pilot.press("enter")
        await until(pilot, lambda: getattr(app.screen, "confirming", False))
        await pilot.press("enter")
        await until(pilot, lambda: isinstance(app.screen, DashboardScreen) and len(app.portfolio.positions) == 1)
        (position_id,) = app.portfolio.positions
        table = app.screen.query_one(PositionsTable)
        await until(pilot, lambda: table.row_count == 1 and str(table.get_cell(position_id, "pnl")) != "—")
        market_data.offset["SOL_USDC"] = Decimal(3)  # the price jumps: the PnL follows
        await until(pilot, lambda: str(table.get_cell(position_id, "pnl")).startswith("+"))

        table.focus()
        margin = str(table.get_cell(position_id, "margin"))
        await pilot.press("p")  # part-close half: the row shows what is left, from the server's events
        await until(pilot, lambda: app.screen.query("#close-qty"))
        app.screen.query_one("#close-qty").value = "1"
        await pilot.press("enter")
        await until(pilot, lambda: isinstance(app.screen, DashboardScreen)
                    and str(table.get_cell(position_id, "qty")) == "1.00")
        left = await app.client.position(position_id)
        assert str(table.get_cell(position_id, "margin")) == f"{left.margin:,.2f}" != margin
        await pilot.press("c")
        await until(pilot, lambda: app.screen.query("#close-qty"))
        await pilot.press("enter")
        await until(pilot, lambda: isinstance(app.screen, DashboardScreen) and not app.portfolio.positions)
        await pilot.press("h")
        await until(pilot, lambda: isinstance(app.screen, HistoryScreen)
                    and "closed 2" in str(app.screen.query_one("#history-summary").render()))
        summary = str(app.screen.query_one("#history-summary").render())
        closed = await app.client.positions("closed")
        total = sum(p.realized_pnl for p in closed)
        assert f"{total:+,.2f}" in summary and total > 0


async def place_limit_order(pilot, amount: str) -> None:
    """In the ticket: a buy limit of `amount` SOL at the price it suggests, reviewed and placed."""
    app = pilot.app
    app.screen.choose_market("SOL_USDC")
    await pilot.press("b")
    await until(pilot, lambda: app.screen.query("#amount"))
    await pilot.press("f5")
    await until(pilot, lambda: app.screen.query_one("#order-price").value != "")
    app.screen.query_one("#amount").value = amount
    app.screen.query_one("#amount").focus()
    await pilot.press("enter")
    await until(pilot, lambda: getattr(app.screen, "confirming", False))
    await pilot.press("enter")
    await until(pilot, lambda: isinstance(app.screen, DashboardScreen))


async def test_a_limit_order_placed_cancelled_and_filled_through_the_terminal(platform, market_data, mailbox, email,
                                                                              api):
    session = await sign_up(api, mailbox, email)
    client = ApiClient(platform.base_url, token=session["access_token"])
    app = create_app(platform.base_url, client, session_store=False)
    async with app.run_test(size=SIZE, notifications=True) as pilot:
        await until(pilot, lambda: isinstance(app.screen, DashboardScreen) and app.feed_state is FeedState.LIVE
                    and "SOL_USDC" in app.board.tickers)
        await place_limit_order(pilot, "2")
        await until(pilot, lambda: len(app.portfolio.orders) == 1)
        (placed,) = await client.orders("working")
        assert placed.id in app.portfolio.orders and placed.type == "limit" and placed.qty == Decimal(2)
        assert placed.price < app.board.tickers["SOL_USDC"].ask  # it waits under the market
        await pilot.press("o")
        table = app.screen.query_one(OrdersTable)
        await until(pilot, lambda: table.row_count == 1)
        assert str(table.get_cell(placed.id, "price")) == f"{placed.price:,.2f}"
        table.focus()
        await pilot.press("c")
        await until(pilot, lambda: type(app.screen).__name__ == "CancelOrderScreen")
        await pilot.press("enter")
        await until(pilot, lambda: isinstance(app.screen, DashboardScreen) and not app.portfolio.orders)
        assert (await client.order(placed.id)).status == "cancelled"
        assert any(title == "Order cancelled" for _, title, _ in app.notice_log)

        await place_limit_order(pilot, "1")  # this one the market comes down to
        await until(pilot, lambda: len(app.portfolio.orders) == 1)
        (waiting,) = app.portfolio.orders
        market_data.offset["SOL_USDC"] = Decimal(-10)
        await until(pilot, lambda: not app.portfolio.orders and len(app.portfolio.positions) == 1)
        (position,) = app.portfolio.positions.values()
        assert position.order_id == waiting
        await until(pilot, lambda: any(title == "Order filled" for _, title, _ in app.notice_log))
        assert "No working orders" in str(app.screen.query_one("#positions-empty").render())


class ProxiedFeedClient(ApiClient):
    """An ApiClient whose feed goes through the forwarder instead of the advertised URL."""

    feed_url = ""

    async def feed(self, channels=("prices.*",), **options):
        return FeedClient(self.feed_url, channels=channels, token=self.token, **options)


async def test_a_lost_connection_shows_reconnecting_and_recovers(platform, market_data, mailbox, email, api):
    session = await sign_up(api, mailbox, email)
    info = (await api.get("/info")).json()
    forwarder = Forwarder(int(info["ws_url"].rsplit(":", 1)[1].split("/")[0]))
    await forwarder.start()
    client = ProxiedFeedClient(platform.base_url, token=session["access_token"])
    client.feed_url = f"ws://127.0.0.1:{forwarder.port}/ws"
    app = create_app(platform.base_url, client, session_store=False)
    async with app.run_test(size=SIZE) as pilot:
        await until(pilot, lambda: isinstance(app.screen, DashboardScreen) and app.feed_state is FeedState.LIVE)
        await forwarder.cut()
        await until(pilot, lambda: app.feed_state is FeedState.RECONNECTING)
        assert "reconnecting" in str(app.screen.query_one("#connection").render())
        await asyncio.sleep(0.5)  # a few failed attempts while the network is down
        await forwarder.start()  # the same port comes back
        await until(pilot, lambda: app.feed_state is FeedState.LIVE)
        watchlist = app.screen.query_one(Watchlist)
        before = str(watchlist.get_cell("BTC_USDC", "bid"))
        await until(pilot, lambda: str(watchlist.get_cell("BTC_USDC", "bid")) != before)  # prices flow again
        assert isinstance(app.screen, DashboardScreen)  # still signed in: the session survived the drop
    await forwarder.cut()
