"""The quote book: the latest broker quote of every market, fed by every tick on `price-updates`.

Every server instance consumes every tick (a broadcast subscription), so any instance can answer
`GET /prices` and push prices to its own WebSocket clients. Per tick the book decodes once, computes the
broker quote once (`shared.markets.broker_quote`, the one place the markup is applied), encodes the
`price` frame once, and hands those bytes to its listener (the WebSocket hub) and the live candles.

A market is stale when no tick has arrived for `stale_after` seconds of this server's clock (not the
exchange's: a replayed feed carries old exchange times, and clocks of other machines drift).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from decimal import Decimal
from typing import NamedTuple

import msgspec

from shared.bus import Message
from shared.contracts import PriceFrame, PriceTick, Quote, encode
from shared.markets import MARKETS, broker_quote

log = logging.getLogger(__name__)

PriceListener = Callable[[str, bytes], None]
"""Called with (symbol, encoded `price` frame) once per accepted tick."""

MidListener = Callable[[str, int, Decimal], None]
"""Called with (symbol, exchange time in ms, broker mid) once per accepted tick."""


class BookEntry(NamedTuple):
    quote: Quote
    frame: bytes  # the encoded `price` frame, reused for snapshots
    received: float  # this server's monotonic clock when the tick arrived
    exchange_us: int  # the tick's exchange time: a tick not after it is old or a redelivery


class QuoteBook:
    """Latest quote per market plus freshness; not thread-safe, lives in the server's event loop."""

    def __init__(self, stale_after: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.stale_after = stale_after
        self.clock = clock
        self.ticks = 0
        self.rejected = 0
        self._entries: dict[str, BookEntry] = {}
        self._decoder = msgspec.json.Decoder(PriceTick)
        self._price_listeners: list[PriceListener] = []
        self._mid_listeners: list[MidListener] = []
        self._stale: set[str] = set()

    def on_price(self, listener: PriceListener) -> None:
        self._price_listeners.append(listener)

    def on_mid(self, listener: MidListener) -> None:
        self._mid_listeners.append(listener)

    async def on_message(self, message: Message) -> None:
        """Bus handler for `price-updates`."""
        self.apply(message.value)

    def apply(self, raw: bytes) -> Quote | None:
        """Take one encoded `PriceTick`; returns the broker quote, or None when the tick is rejected."""
        try:
            tick = self._decoder.decode(raw)
        except msgspec.DecodeError as exc:
            self.rejected += 1
            log.warning("skipping an undecodable tick: %s", exc)
            return None
        market = MARKETS.get(tick.symbol)
        if market is None or not (0 < tick.bid <= tick.ask):
            self.rejected += 1
            return None
        symbol = tick.symbol
        previous = self._entries.get(symbol)
        if previous is not None and tick.exchange_time_us <= previous.exchange_us:
            self.rejected += 1  # a redelivery, or out of order: an older price never replaces a newer one
            return None
        ts = tick.exchange_time_us // 1000
        quote = broker_quote(market, tick.bid, tick.ask, ts)
        frame = encode(PriceFrame(symbol=symbol, bid=quote.bid, ask=quote.ask, mid=quote.mid, ts=ts))
        self._entries[symbol] = BookEntry(quote, frame, self.clock(), tick.exchange_time_us)
        self.ticks += 1
        if symbol in self._stale:
            self._stale.discard(symbol)
            log.info("%s is live again", symbol)
        for listener in self._price_listeners:
            listener(symbol, frame)
        for mid_listener in self._mid_listeners:
            mid_listener(symbol, ts, quote.mid)
        return quote

    def get(self, symbol: str) -> tuple[Quote, bool] | None:
        """The latest quote of `symbol` and whether it is stale; None before the first tick."""
        entry = self._entries.get(symbol)
        if entry is None:
            return None
        return entry.quote, self.clock() - entry.received > self.stale_after

    def all(self) -> list[tuple[Quote, bool]]:
        """Every market that has a quote, in catalogue order, each with its staleness."""
        now = self.clock()
        return [(e.quote, now - e.received > self.stale_after)
                for symbol in MARKETS if (e := self._entries.get(symbol)) is not None]

    def frame(self, symbol: str) -> bytes | None:
        """The last `price` frame of `symbol` (what a new subscriber gets first)."""
        entry = self._entries.get(symbol)
        return entry.frame if entry is not None else None

    def age(self, symbol: str) -> float | None:
        """Seconds since the last tick of `symbol` arrived."""
        entry = self._entries.get(symbol)
        return None if entry is None else self.clock() - entry.received

    def check_staleness(self) -> list[str]:
        """Log markets that went quiet since the last check; returns the stale ones."""
        now = self.clock()
        stale = [s for s, e in self._entries.items() if now - e.received > self.stale_after]
        for symbol in stale:
            if symbol not in self._stale:
                self._stale.add(symbol)
                log.warning("%s is stale: no tick for %.0f s", symbol, now - self._entries[symbol].received)
        return stale
