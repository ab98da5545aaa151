"""The quote book: one broker quote per tick, the frame encoded once, staleness on this server's clock."""

from __future__ import annotations

import json
from decimal import Decimal

from cfd_server.market.quotes import QuoteBook
from shared.contracts import encode
from shared.contracts.bus import PriceTick
from shared.markets import MARKETS, broker_quote


def raw(symbol: str, bid: str, ask: str, ts_us: int) -> bytes:
    return encode(PriceTick(symbol=symbol, bid=Decimal(bid), ask=Decimal(ask), exchange_time_us=ts_us,
                            ingest_time_us=ts_us))


class Clock:
    now = 100.0

    def __call__(self) -> float:
        return self.now


def test_a_tick_becomes_the_broker_quote_and_one_price_frame():
    book = QuoteBook(stale_after=10)
    sent: list[tuple[str, bytes]] = []
    mids: list[tuple[str, int, Decimal]] = []
    book.on_price(lambda s, f: sent.append((s, f)))
    book.on_mid(lambda s, ts, m: mids.append((s, ts, m)))
    quote = book.apply(raw("BTC_USDC", "96500.0", "96500.5", 1_700_000_000_123_456))
    expected = broker_quote(MARKETS["BTC_USDC"], Decimal("96500.0"), Decimal("96500.5"), 1_700_000_000_123,
                            exchange_time_us=1_700_000_000_123_456)
    assert quote == expected
    assert [s for s, _ in sent] == ["BTC_USDC"]
    assert json.loads(sent[0][1]) == {"type": "price", "symbol": "BTC_USDC", "bid": str(expected.bid),
                                      "ask": str(expected.ask), "mid": str(expected.mid), "ts": 1_700_000_000_123}
    assert book.frame("BTC_USDC") is sent[0][1]
    assert mids == [("BTC_USDC", 1_700_000_000_123, expected.mid)]


def test_bad_unknown_old_and_redelivered_ticks_are_rejected():
    book = QuoteBook(stale_after=10)
    assert book.apply(raw("SOL_USDC", "185", "185.1", 2_000)) is not None
    assert book.apply(b"garbage") is None
    assert book.apply(raw("XRP_USDC", "1", "1.1", 3_000)) is None
    assert book.apply(raw("SOL_USDC", "185.2", "185.1", 3_000)) is None  # crossed
    assert book.apply(raw("SOL_USDC", "0", "185.1", 3_000)) is None
    assert book.apply(raw("SOL_USDC", "184", "184.1", 1_000)) is None  # older
    assert book.apply(raw("SOL_USDC", "185", "185.1", 2_000)) is None  # the same tick again
    assert book.rejected == 6 and book.ticks == 1
    assert book.get("SOL_USDC")[0].ts == 2  # type: ignore[index]


def test_staleness_follows_this_servers_clock():
    clock = Clock()
    book = QuoteBook(stale_after=10, clock=clock)
    assert book.get("ETH_USDC") is None and book.all() == []
    book.apply(raw("ETH_USDC", "3450", "3450.1", 1))  # an ancient exchange time (a replay) is not stale
    assert book.get("ETH_USDC")[1] is False  # type: ignore[index]
    clock.now += 10.5
    assert book.get("ETH_USDC")[1] is True  # type: ignore[index]
    assert book.check_staleness() == ["ETH_USDC"]
    book.apply(raw("ETH_USDC", "3450", "3450.1", 2))
    assert [stale for _, stale in book.all()] == [False]
