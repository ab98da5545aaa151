"""The dbproc's quotes: broker quotes from ticks, and no trading on a stale or unknown market."""

from __future__ import annotations

from decimal import Decimal

import pytest

from cfd_dbproc.trading.quotes import QuoteCache
from shared.bus import Message
from shared.contracts import encode
from shared.contracts.bus import PriceTick
from shared.errors import NotFound, Unavailable


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def tick(symbol: str, bid: str, ask: str) -> Message:
    value = encode(PriceTick(symbol=symbol, bid=Decimal(bid), ask=Decimal(ask), exchange_time_us=1_000_000,
                             ingest_time_us=1_000_000))
    return Message("prices", 0, 0, symbol.encode(), value)


def test_ticks_become_broker_quotes_and_go_stale():
    clock = Clock()
    quotes = QuoteCache(stale_after=10, clock=clock)
    quote = quotes.on_tick(tick("SOL_USDC", "100.00", "100.02"))
    assert (quote.bid, quote.ask) == (Decimal("99.97"), Decimal("100.06"))
    market, live = quotes.quote("SOL_USDC")
    assert market.symbol == "SOL_USDC" and live == quote
    clock.now += 10.5
    with pytest.raises(Unavailable) as stale:
        quotes.quote("SOL_USDC")
    assert stale.value.code == "market_unavailable" and stale.value.retry_after
    assert quotes.fresh() == {}


def test_unknown_and_never_quoted_markets():
    quotes = QuoteCache(stale_after=10)
    assert quotes.on_tick(tick("XRP_USDC", "1", "1")) is None
    with pytest.raises(NotFound):
        quotes.quote("XRP_USDC")
    with pytest.raises(Unavailable):
        quotes.quote("BTC_USDC")
