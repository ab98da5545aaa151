"""The broker quote: a market's bid, ask and mid after the broker's markup. Every view of a price is a
`BrokerPrice`: `Price` (REST), `PriceFrame` (the feed), and the `Quote` the platform trades at, which also
remembers the exchange top of book it was computed from (its `QuoteSource`), for the receipt of every fill."""

from __future__ import annotations

from decimal import Decimal
from typing import Any, TypeVar

from msgspec import Struct


class BrokerPrice(Struct, kw_only=True):
    """A market's broker bid, ask and mid at `ts` (epoch ms)."""

    symbol: str
    bid: Decimal
    ask: Decimal
    mid: Decimal
    ts: int


class QuoteSource(Struct, kw_only=True):
    """The exchange's top of book a broker quote was computed from, and the market's spread in force then."""

    exchange_bid: Decimal
    exchange_ask: Decimal
    exchange_time_us: int
    update_id: int | None = None  # the exchange's book update id, when its feed gives one
    spread_bps: Decimal


class Quote(BrokerPrice, kw_only=True):
    """A broker quote: the exchange bid/ask widened by the market's markup (`source`: from what)."""

    source: QuoteSource | None = None



View = TypeVar("View", bound=BrokerPrice)


def view_of(price: BrokerPrice, view: type[View], **extra: Any) -> View:
    """Another view of the same broker price (a `Price`, a `PriceFrame`), with the `extra` fields it adds."""
    return view(symbol=price.symbol, bid=price.bid, ask=price.ask, mid=price.mid, ts=price.ts, **extra)
