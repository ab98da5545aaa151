"""The broker quote: a market's bid, ask and mid after the broker's markup. Every view of a price is one:
`Price` (REST), `PriceFrame` (the feed)."""

from __future__ import annotations

from decimal import Decimal

from msgspec import Struct


class Quote(Struct, kw_only=True):
    """A broker quote: the exchange bid/ask widened by the market's markup."""

    symbol: str
    bid: Decimal
    ask: Decimal
    mid: Decimal
    ts: int
