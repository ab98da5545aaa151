"""Live market data in a server: the quote book, live candles and the WebSocket feed, started together.

`start_market(ctx)` is called from the app's lifespan: it follows the market terms in force (`terms.py`),
subscribes to every tick (a broadcast subscription, so every server instance sees every price), wires ticks
→ quote book → hub and live candles, and starts the WebSocket listener on `CFD_WS_PORT` in the same event
loop. `MarketRuntime.stop()` undoes it.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import logging
from collections.abc import Iterator

from cfd_server.auth.session_ends import SessionNotices
from cfd_server.auth.tokens import Sessions
from cfd_server.context import ServerContext
from cfd_server.limits import RequestLimits
from cfd_server.market.history import fetch_history, fetch_page
from cfd_server.market.live_candles import LiveCandles
from cfd_server.market.quotes import QuoteBook
from cfd_server.market.terms import MarketTerms
from cfd_server.trading.feed import AccountHistory
from cfd_server.ws import Hub, Limits, WsServer
from shared import metrics
from shared.bus import Subscription
from shared.candles import overlay
from shared.contracts import encode
from shared.contracts.bus import CandlesQuery
from shared.contracts.rest import Candle
from shared.contracts.ws import CandleFrame
from shared.markets import MarketBook

log = logging.getLogger(__name__)

HOUSEKEEPING_SECONDS = 1.0
HEAL_TIMEOUT = 3.0


class MarketSnapshots:
    """What a new WebSocket subscriber gets first: the last price, the live candle."""

    def __init__(self, quotes: QuoteBook, candles: LiveCandles) -> None:
        self.quotes = quotes
        self.candles = candles

    def price(self, symbol: str) -> bytes | None:
        return self.quotes.frame(symbol)

    def candle(self, symbol: str, interval: str) -> bytes | None:
        current = self.candles.current(symbol, interval)
        if current is None:
            return None
        c = current[0]
        return encode(CandleFrame(symbol=symbol, interval=interval, t=c.t, o=c.o, h=c.h, l=c.l, c=c.c, n=c.n,
                                  closed=self.candles.is_closed(symbol, interval)))


def _hub_metrics(hub: Hub) -> Iterator[tuple[str, dict[str, str], float]]:
    stats = hub.stats
    yield "cfd_ws_clients", {}, len(hub.clients)
    yield "cfd_ws_connections", {}, stats.connections
    yield "cfd_ws_frames", {}, stats.frames
    yield "cfd_ws_deliveries", {}, stats.deliveries
    yield "cfd_ws_closed_slow", {}, stats.closed_slow


class MarketRuntime:
    """The server's live market data; `app.state.market`."""

    def __init__(self, ctx: ServerContext, limits: Limits | None = None) -> None:
        settings = ctx.settings
        self.ctx = ctx
        self.markets = MarketBook()  # the terms in force (`GET /markets`, the broker quote, order checks)
        self.terms = MarketTerms(ctx, self.markets)
        self.quotes = QuoteBook(settings.prices.quotes_stale_after, markets=self.markets)
        self.candles = LiveCandles()
        self.hub = Hub()
        metrics.track(self.hub, settings.instance_id, _hub_metrics)
        metrics.track(self.quotes, settings.instance_id, metrics.quote_book_metrics("server"))
        self.quotes.on_price(self.hub.publish_price)
        self.quotes.on_mid(self.candles.add)
        self.candles.on_change(self.hub.publish_candle)
        self.sessions = Sessions.for_server(ctx)
        self.session_notices = SessionNotices(ctx.bus, ctx.topics.sessions)
        self.request_limits = RequestLimits(ctx.cache, settings.auth, settings.bus.topic_prefix)
        self.ws = WsServer(self.hub, MarketSnapshots(self.quotes, self.candles), host=settings.http.host,
                           port=settings.http.ws_port, reuse_port=settings.http.reuse_port, limits=limits,
                           authenticate=self.sessions.resolve,
                           throttle=lambda session: self.request_limits.take(session, "subscribe"),
                           history=AccountHistory(ctx))
        self._subscription: Subscription | None = None
        self._session_ends: Subscription | None = None
        self._housekeeping: asyncio.Task[None] | None = None
        self._healing: set[tuple[str, str, int]] = set()
        self._tasks: set[asyncio.Task[None]] = set()

    @property
    def ws_port(self) -> int:
        """The port the WebSocket feed listens on (the bound one when `CFD_WS_PORT=0`)."""
        return self.ws.port

    async def start(self) -> None:
        # Sessions that end anywhere end on this feed too; followed before the feed takes its first sign-in.
        self._session_ends = await self.session_notices.follow(self.hub)
        try:
            await self.terms.start()
            self._subscription = await self.ctx.bus.subscribe([self.ctx.topics.prices], self.quotes.on_message,
                                                              group=None)
            await self.ws.start()
        except BaseException:
            for subscription in (self._subscription, self._session_ends):
                if subscription is not None:
                    await subscription.stop()
            await self.terms.stop()
            raise
        self._housekeeping = asyncio.get_running_loop().create_task(self._housekeep())

    async def stop(self) -> None:
        """Stop taking ticks, close every WebSocket connection (1001) and stop listening."""
        for subscription in (self._subscription, self._session_ends):
            if subscription is not None:
                await subscription.stop()
        self._subscription = self._session_ends = None
        await self.terms.stop()
        tasks = [t for t in (self._housekeeping, *self._tasks) if t is not None]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._housekeeping = None
        await self.ws.stop()

    async def chart(self, symbol: str, interval: str, limit: int, *, since: int | None = None,
                    until: int | None = None) -> tuple[list[Candle], bool]:
        """The last `limit` candles of (symbol, interval) that start before `until`, oldest first, or with `since`
        the first `limit` that start at `since` or later: the stored history with this server's live candle on
        top when the page reaches it. Also whether more candles follow the page (with `since`). Reading it
        changes nothing; a candle joined midway is completed by `_heal`."""
        page = await fetch_page(self.ctx, CandlesQuery(symbol=symbol, interval=interval, limit=limit, since=since,
                                                       until=until))
        history, more = page.candles, page.more
        current = self.candles.current(symbol, interval)
        if current is None:
            return history[-limit:], more
        live, whole = current
        if (until is not None and live.t >= until) or (since is not None and (live.t < since or more)):
            return history[-limit:], more  # the live candle is not in this window, or not on this page
        candles = overlay(history, copy.copy(live), live_is_whole=whole, limit=len(history) + 1)
        if since is None:
            return candles[-limit:], more
        return candles[:limit], len(candles) > limit

    async def _housekeep(self) -> None:
        """Once a second: note stale markets, close candles whose bucket ended, complete joined candles."""
        while True:
            await asyncio.sleep(HOUSEKEEPING_SECONDS)
            try:
                self.quotes.check_staleness()
                self.candles.sweep()
                self._heal()
            except Exception:
                log.exception("market housekeeping failed")

    def _heal(self) -> None:
        """Ask the stored part of each candle this server joined midway (once per bucket)."""
        for key in self.candles.partial():
            if key in self._healing:
                continue
            self._healing.add(key)
            task = asyncio.get_running_loop().create_task(self._heal_one(*key))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        if len(self._healing) > 10_000:
            self._healing.clear()

    async def _heal_one(self, symbol: str, interval: str, t: int) -> None:
        with contextlib.suppress(Exception):
            stored = await fetch_history(self.ctx, symbol, interval, 1, timeout=HEAL_TIMEOUT)
            if stored and stored[-1].t == t:
                self.candles.absorb(symbol, interval, stored[-1])


async def start_market(ctx: ServerContext, *, limits: Limits | None = None) -> MarketRuntime:
    """Start live prices, candles and the WebSocket feed for this server; `stop()` the result on shutdown."""
    runtime = MarketRuntime(ctx, limits)
    await runtime.start()
    return runtime
