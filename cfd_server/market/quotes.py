"""The server's quote book: `shared.quotes.LatestQuotes` fed by every tick on `price-updates`, plus the
encoded `price` frame of each market.

Every server instance consumes every tick (a broadcast subscription), so any instance can answer
`GET /prices` and push prices to its own WebSocket clients. Per accepted tick the book encodes the `price`
frame once and hands those bytes to its listener (the WebSocket hub) and the mid to the live candles.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from decimal import Decimal

from shared.bus import Message
from shared.contracts import encode
from shared.contracts.quote import Quote, view_of
from shared.contracts.ws import PriceFrame
from shared.markets import MarketBook
from shared.quotes import LatestQuotes

PriceListener = Callable[[str, bytes], None]
"""Called with (symbol, encoded `price` frame) once per accepted tick."""

MidListener = Callable[[str, int, Decimal], None]
"""Called with (symbol, exchange time in ms, broker mid) once per accepted tick."""


class QuoteBook(LatestQuotes):
    """Latest quote and `price` frame per market; lives in the server's event loop."""

    def __init__(self, stale_after: float, clock: Callable[[], float] = time.monotonic,
                 markets: MarketBook | None = None) -> None:
        super().__init__(stale_after, clock, markets)
        self._frames: dict[str, bytes] = {}
        self._price_listeners: list[PriceListener] = []
        self._mid_listeners: list[MidListener] = []

    def on_price(self, listener: PriceListener) -> None:
        self._price_listeners.append(listener)

    def on_mid(self, listener: MidListener) -> None:
        self._mid_listeners.append(listener)

    async def on_message(self, message: Message) -> None:
        """Bus handler for `price-updates`."""
        self.apply(message.value)

    def _accepted(self, symbol: str, quote: Quote) -> None:
        frame = encode(view_of(quote, PriceFrame))
        self._frames[symbol] = frame
        for listener in self._price_listeners:
            listener(symbol, frame)
        for mid_listener in self._mid_listeners:
            mid_listener(symbol, quote.ts, quote.mid)

    def frame(self, symbol: str) -> bytes | None:
        """The last `price` frame of `symbol` (what a new subscriber gets first)."""
        return self._frames.get(symbol)
