"""The latest broker quote of every market, from encoded price ticks; shared by the server and the dbproc.

Per tick: decode once, refuse what is not a quote (unknown market, bid above ask, a tick not newer than the
last one applied, which is how a redelivery looks), and compute the broker quote once, with the market's
terms in force (its `MarketBook`): when an operator changes a market's spread, its latest quote is computed
again from the exchange's last bid and ask at once (`requote`), not at the next tick. A market is stale
when no tick has arrived for `stale_after` seconds of this process's clock (not the exchange's: a replayed
feed carries old exchange times, and other machines' clocks drift).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import NamedTuple

import msgspec

from shared.contracts.bus import PriceTick
from shared.contracts.quote import Quote
from shared.markets import MARKETS, Market, MarketBook, broker_quote
from shared.watermarks import Watermarks

log = logging.getLogger(__name__)


class _Entry(NamedTuple):
    quote: Quote
    received: float  # this process's monotonic clock when the tick arrived
    exchange_us: int  # the tick's exchange time: a tick not after it is old or a redelivery


class LatestQuotes:
    """Latest quote per market plus freshness; lives in one event loop (not thread-safe)."""

    def __init__(self, stale_after: float, clock: Callable[[], float] = time.monotonic,
                 markets: MarketBook | None = None) -> None:
        self.stale_after = stale_after
        self.clock = clock
        self.markets = markets if markets is not None else MarketBook()
        self.markets.on_change(self._market_changed)
        self.ticks = 0
        self.rejected = 0
        self._entries: dict[str, _Entry] = {}
        self._decoder = msgspec.json.Decoder(PriceTick)
        self._stale: set[str] = set()
        self.seen = Watermarks()
        """The exchange time of each market's latest quote here (a lockstep replay's step waits on it)."""

    def apply(self, raw: bytes) -> Quote | None:
        """Take one encoded `PriceTick`; returns the broker quote, or None when the tick is refused."""
        try:
            tick = self._decoder.decode(raw)
        except msgspec.DecodeError as exc:
            self.rejected += 1
            log.warning("skipping an undecodable tick: %s", exc)
            return None
        market = self.markets.get(tick.symbol)
        if market is None or not (0 < tick.bid <= tick.ask):
            self.rejected += 1
            return None
        symbol = tick.symbol
        previous = self._entries.get(symbol)
        if previous is not None and tick.exchange_time_us <= previous.exchange_us:
            self.rejected += 1  # a redelivery, or out of order: an older price never replaces a newer one
            return None
        quote = broker_quote(market, tick.bid, tick.ask, tick.exchange_time_us // 1000,
                             exchange_time_us=tick.exchange_time_us, update_id=tick.update_id)
        self._entries[symbol] = _Entry(quote, self.clock(), tick.exchange_time_us)
        self.ticks += 1
        if symbol in self._stale:
            self._stale.discard(symbol)
            log.info("%s is live again", symbol)
        self._accepted(symbol, quote)
        self.seen.advance(symbol, tick.exchange_time_us)  # after the listeners: the server's frames went out
        return quote

    def _accepted(self, symbol: str, quote: Quote) -> None:
        """Called once per accepted tick (and per quote computed again); subclasses hang their own work here."""

    def _market_changed(self, before: Market, after: Market) -> None:
        if after.spread_bps != before.spread_bps:
            self.requote(after)

    def requote(self, market: Market) -> Quote | None:
        """Compute the latest quote of `market` again with its terms now (a changed spread), from the exchange's
        last bid and ask; its time and freshness stay the tick's. None before the market's first tick."""
        entry = self._entries.get(market.symbol)
        if entry is None:
            return None
        source = entry.quote.source
        assert source is not None  # every quote here came from `broker_quote`
        quote = broker_quote(market, source.exchange_bid, source.exchange_ask, entry.quote.ts,
                             exchange_time_us=source.exchange_time_us, update_id=source.update_id)
        if quote == entry.quote:
            return quote
        self._entries[market.symbol] = entry._replace(quote=quote)
        self._accepted(market.symbol, quote)
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

    def latest(self) -> dict[str, Quote]:
        """The last quote of every market, stale or not, by symbol: what positions are valued at."""
        return {s: e.quote for s, e in self._entries.items()}

    def fresh(self) -> dict[str, Quote]:
        """The quotes that are not stale, by symbol."""
        now = self.clock()
        return {s: e.quote for s, e in self._entries.items() if now - e.received <= self.stale_after}

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
