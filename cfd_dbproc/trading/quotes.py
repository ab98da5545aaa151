"""The latest broker quote per market, as the dbproc fills orders at it."""

from __future__ import annotations

import time

import msgspec

from shared.bus import Message
from shared.contracts import PriceTick, Quote
from shared.errors import NotFound, Unavailable
from shared.markets import MARKETS, Market, broker_quote

_tick_decoder = msgspec.json.Decoder(PriceTick)


class QuoteCache:
    """Fed by every tick (a broadcast subscription); refuses to trade on a quote older than `stale_after`."""

    def __init__(self, stale_after: float, clock=time.monotonic) -> None:
        self.stale_after = stale_after
        self._clock = clock
        self._quotes: dict[str, tuple[Quote, float]] = {}

    def update(self, quote: Quote) -> None:
        self._quotes[quote.symbol] = (quote, self._clock())

    def on_tick(self, message: Message) -> Quote | None:
        """Decode a price tick, store its broker quote and return it (None for a market we do not list)."""
        tick = _tick_decoder.decode(message.value)
        market = MARKETS.get(tick.symbol)
        if market is None:
            return None
        quote = broker_quote(market, tick.bid, tick.ask, tick.exchange_time_us // 1000)
        self.update(quote)
        return quote

    def fresh(self) -> dict[str, Quote]:
        now = self._clock()
        return {s: q for s, (q, at) in self._quotes.items() if now - at <= self.stale_after}

    def quote(self, symbol: str) -> tuple[Market, Quote]:
        """The market and its live quote, or an error a client understands."""
        market = MARKETS.get(symbol)
        if market is None:
            raise NotFound(f"There is no market {symbol!r}; see GET /markets.", code="unknown_market",
                           details={"field": "symbol"})
        entry = self._quotes.get(symbol)
        if entry is None or self._clock() - entry[1] > self.stale_after:
            raise Unavailable(f"No live price for {symbol} right now; try again in a moment.",
                              code="market_unavailable", retry_after=2, details={"symbol": symbol})
        return market, entry[0]
