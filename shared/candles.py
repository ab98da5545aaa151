"""Candle maths shared by the dbproc (which persists 1-minute candles) and the server (which builds live ones).

Buckets are aligned to the Unix epoch in UTC: a 5m candle starts at :00, :05, ...; a 4h candle at 00:00,
04:00, ... UTC; a 1d candle at midnight UTC. `t` is the bucket's start in epoch milliseconds. A candle's
price is the mid of the broker quote (see `docs/websocket.md`), and `n` counts the quotes that went into it.
Everything here is a pure function over `shared.contracts.Candle`.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from decimal import Decimal

from shared.contracts.rest import Candle

MINUTE_MS = 60_000

INTERVALS: dict[str, int] = {
    "1m": MINUTE_MS,
    "5m": 5 * MINUTE_MS,
    "15m": 15 * MINUTE_MS,
    "1h": 60 * MINUTE_MS,
    "4h": 240 * MINUTE_MS,
    "1d": 1440 * MINUTE_MS,
}
"""Interval name → length in milliseconds, shortest first."""

DEFAULT_LIMIT = 200
MAX_LIMIT = 1000


def interval_ms(name: str) -> int:
    """The length of interval `name`; `ValueError` naming the valid ones otherwise."""
    try:
        return INTERVALS[name]
    except KeyError:
        raise ValueError(f"unknown interval {name!r}; use one of {', '.join(INTERVALS)}") from None


def bucket_start(ts_ms: int, length_ms: int) -> int:
    """The start of the bucket of `length_ms` that holds the instant `ts_ms`."""
    return ts_ms - ts_ms % length_ms


def open_candle(t: int, price: Decimal) -> Candle:
    """A candle whose first quote is `price`."""
    return Candle(t=t, o=price, h=price, l=price, c=price, n=1)


def add_price(candle: Candle, price: Decimal) -> None:
    """Fold one more quote into `candle` (in place): the close moves, the range widens, the count grows."""
    if price > candle.h:
        candle.h = price
    elif price < candle.l:
        candle.l = price
    candle.c = price
    candle.n += 1


def build(prices: Iterable[tuple[int, Decimal]], length_ms: int) -> list[Candle]:
    """Candles of `length_ms` from `(ts_ms, price)` pairs in time order: the reference every builder matches."""
    candles: list[Candle] = []
    for ts_ms, price in prices:
        t = bucket_start(ts_ms, length_ms)
        if candles and candles[-1].t == t:
            add_price(candles[-1], price)
        elif not candles or t > candles[-1].t:
            candles.append(open_candle(t, price))
    return candles


def combine(first: Candle, second: Candle) -> Candle:
    """One candle from two consecutive stretches of the same bucket: `first` is earlier, `second` later."""
    return Candle(t=first.t, o=first.o, h=max(first.h, second.h), l=min(first.l, second.l), c=second.c,
                  n=first.n + second.n)


def aggregate(candles: Sequence[Candle], length_ms: int) -> list[Candle]:
    """Shorter candles (in time order, e.g. 1m) rolled up into buckets of `length_ms` (e.g. 5m)."""
    out: list[Candle] = []
    for candle in candles:
        t = bucket_start(candle.t, length_ms)
        if out and out[-1].t == t:
            out[-1] = combine(out[-1], candle)
        else:
            out.append(Candle(t=t, o=candle.o, h=candle.h, l=candle.l, c=candle.c, n=candle.n))
    return out


def overlay(history: Sequence[Candle], live: Candle | None, *, live_is_whole: bool, limit: int) -> list[Candle]:
    """The stored history with the live in-progress candle on top, at most `limit` candles, oldest first.

    `live` covers the ticks since its builder started; when it started before the bucket (`live_is_whole`)
    it is the whole bucket and replaces the stored one. Otherwise both hold part of the bucket: the stored
    one has the earlier ticks (the open), the live one the latest (the close); the count is the larger of
    the two, since the stretches overlap by an unknown number of ticks.
    """
    candles = list(history)
    if live is not None:
        last = candles[-1] if candles else None
        if last is None or live.t > last.t:
            candles.append(live)
        elif live.t == last.t:
            if live_is_whole:
                candles[-1] = live
            else:
                candles[-1] = Candle(t=last.t, o=last.o, h=max(last.h, live.h), l=min(last.l, live.l), c=live.c,
                                     n=max(last.n, live.n))
    return candles[-limit:] if limit > 0 else []
