"""Live candles: the in-progress candle of every market and interval, built by this server from ticks.

The dbproc stores history; the bucket in progress is built here so `GET /candles` and the
`candles.<interval>.<SYMBOL>` channels show it tick by tick. A candle closes when a tick of a later bucket
arrives, or when the market's clock passes the bucket's end (`sweep`, so a quiet market's candle still
closes). The market's clock is its last exchange time plus the time elapsed here since that tick, so a
replayed feed with old timestamps closes candles as its own time passes, not ours.

A candle this server saw from its bucket's start is `whole`; one it joined midway (after a restart) holds
only the latest ticks and is completed from the stored history (`absorb`).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from decimal import Decimal

from shared.candles import INTERVALS, add_price, open_candle
from shared.contracts.rest import Candle

CandleListener = Callable[[str, str, Candle, bool], None]
"""Called with (symbol, interval, candle, closed) whenever a live candle changes or closes."""

CLOSE_GRACE_MS = 2_000
"""How long past a bucket's end the sweep waits for a late tick before closing the candle."""


class LiveCandle:
    __slots__ = ("candle", "closed", "whole")

    def __init__(self, candle: Candle, whole: bool) -> None:
        self.candle = candle
        self.whole = whole
        self.closed = False


class LiveCandles:
    """One live candle per (symbol, interval); fed with (symbol, exchange ms, mid) by the quote book."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        self._live: dict[tuple[str, str], LiveCandle] = {}
        self._first_ms: dict[str, int] = {}
        self._market_clock: dict[str, tuple[int, float]] = {}  # symbol -> (last exchange ms, our clock then)
        self._listeners: list[CandleListener] = []
        self._intervals = tuple(INTERVALS.items())

    def on_change(self, listener: CandleListener) -> None:
        self._listeners.append(listener)

    def add(self, symbol: str, ts_ms: int, price: Decimal) -> None:
        """Fold one quote into every interval's live candle of `symbol`."""
        first = self._first_ms.setdefault(symbol, ts_ms)
        self._market_clock[symbol] = (ts_ms, self.clock())
        for interval, length in self._intervals:
            t = ts_ms - ts_ms % length
            key = (symbol, interval)
            live = self._live.get(key)
            if live is not None and live.candle.t == t:
                if live.closed:
                    continue  # a late tick for a bucket already announced closed
                add_price(live.candle, price)
            elif live is None or t > live.candle.t:
                if live is not None and not live.closed:
                    self._emit(symbol, interval, live.candle, True)
                live = self._live[key] = LiveCandle(open_candle(t, price), whole=first < t)
            else:
                continue  # older than the live bucket
            self._emit(symbol, interval, live.candle, False)

    def sweep(self) -> int:
        """Close candles whose bucket ended on their market's clock; returns how many closed."""
        now = self.clock()
        closed = 0
        for (symbol, interval), live in self._live.items():
            if live.closed:
                continue
            last_ms, seen_at = self._market_clock[symbol]
            market_now = last_ms + int((now - seen_at) * 1000)
            if market_now >= live.candle.t + INTERVALS[interval] + CLOSE_GRACE_MS:
                live.closed = True
                closed += 1
                self._emit(symbol, interval, live.candle, True)
        return closed

    def current(self, symbol: str, interval: str) -> tuple[Candle, bool] | None:
        """The live candle of (symbol, interval) and whether it covers its whole bucket; None if none."""
        live = self._live.get((symbol, interval))
        if live is None:
            return None
        return live.candle, live.whole

    def is_closed(self, symbol: str, interval: str) -> bool:
        """Whether the last candle of (symbol, interval) has been announced closed (its bucket ended)."""
        live = self._live.get((symbol, interval))
        return live is not None and live.closed

    def partial(self) -> list[tuple[str, str, int]]:
        """(symbol, interval, bucket start) of every open candle joined midway, still to be completed."""
        return [(symbol, interval, live.candle.t) for (symbol, interval), live in self._live.items()
                if not live.whole and not live.closed]

    def absorb(self, symbol: str, interval: str, stored: Candle) -> None:
        """Complete a candle joined midway with the stored part of its bucket (the earlier ticks)."""
        live = self._live.get((symbol, interval))
        if live is None or live.whole or live.candle.t != stored.t:
            return
        candle = live.candle
        candle.o = stored.o
        candle.h = max(candle.h, stored.h)
        candle.l = min(candle.l, stored.l)
        candle.n = max(candle.n, stored.n)
        live.whole = True

    def _emit(self, symbol: str, interval: str, candle: Candle, closed: bool) -> None:
        for listener in self._listeners:
            listener(symbol, interval, candle, closed)

