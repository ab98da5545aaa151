"""The latest broker quote per market, as the dbproc fills orders at it."""

from __future__ import annotations

from shared.bus import Message
from shared.contracts.quote import Quote
from shared.errors import Unavailable
from shared.markets import MARKETS, Market
from shared.quotes import LatestQuotes


class QuoteCache(LatestQuotes):
    """Fed by every tick (a broadcast subscription); refuses to trade on a quote older than `stale_after`."""

    def on_tick(self, message: Message) -> Quote | None:
        """Bus handler body: the tick's broker quote, or None when the tick was refused."""
        return self.apply(message.value)

    def unpriced(self) -> list[str]:
        """The catalogue's markets without a live quote, in catalogue order."""
        fresh = self.fresh()
        return [symbol for symbol in MARKETS if symbol not in fresh]

    def quote(self, symbol: str) -> tuple[Market, Quote]:
        """The market (its terms in force) and its live quote, or an error a client understands."""
        market = self.markets.market_of(symbol, field="symbol")
        found = self.get(symbol)
        if found is None or found[1]:
            raise Unavailable(f"No live price for {symbol} right now; try again in a moment.",
                              code="market_unavailable", retry_after=2, details={"symbol": symbol})
        return market, found[0]
