"""The market catalogue and the broker quote, computed here and nowhere else."""

from __future__ import annotations

from decimal import ROUND_CEILING, ROUND_FLOOR, Decimal

from msgspec import Struct

from shared.contracts.quote import Quote
from shared.errors import NotFound

BPS = Decimal(10_000)


class Market(Struct, frozen=True, kw_only=True):
    """A tradable market and its contract terms (`GET /markets`). `spread_bps` is the broker's total markup."""

    symbol: str
    base: str
    quote: str
    max_leverage: int
    min_qty: Decimal
    qty_step: Decimal
    price_tick: Decimal
    spread_bps: Decimal


MARKETS: dict[str, Market] = {
    m.symbol: m
    for m in (
        Market(symbol="BTC_USDC", base="BTC", quote="USDC", max_leverage=50, min_qty=Decimal("0.0001"),
               qty_step=Decimal("0.0001"), price_tick=Decimal("0.1"), spread_bps=Decimal("4")),
        Market(symbol="ETH_USDC", base="ETH", quote="USDC", max_leverage=50, min_qty=Decimal("0.001"),
               qty_step=Decimal("0.001"), price_tick=Decimal("0.01"), spread_bps=Decimal("5")),
        Market(symbol="SOL_USDC", base="SOL", quote="USDC", max_leverage=20, min_qty=Decimal("0.01"),
               qty_step=Decimal("0.01"), price_tick=Decimal("0.01"), spread_bps=Decimal("6")),
        Market(symbol="BNB_USDC", base="BNB", quote="USDC", max_leverage=20, min_qty=Decimal("0.001"),
               qty_step=Decimal("0.001"), price_tick=Decimal("0.01"), spread_bps=Decimal("6")),
        Market(symbol="DOGE_USDC", base="DOGE", quote="USDC", max_leverage=10, min_qty=Decimal("1"),
               qty_step=Decimal("1"), price_tick=Decimal("0.00001"), spread_bps=Decimal("10")),
    )
}

SYMBOLS: tuple[str, ...] = tuple(MARKETS)


def broker_quote(market: Market, bid: Decimal, ask: Decimal, ts_ms: int) -> Quote:
    """Widen the exchange's bid/ask by half the market's markup on each side, rounded away from the mid."""
    half = market.spread_bps / 2 / BPS
    broker_bid = (bid * (1 - half)).quantize(market.price_tick, rounding=ROUND_FLOOR)
    broker_ask = (ask * (1 + half)).quantize(market.price_tick, rounding=ROUND_CEILING)
    mid = ((broker_bid + broker_ask) / 2).quantize(market.price_tick / 10)
    return Quote(symbol=market.symbol, bid=broker_bid, ask=broker_ask, mid=mid, ts=ts_ms)


def market_of(symbol: str, *, field: str | None = None) -> Market:
    """The market `symbol` names; otherwise 404 `unknown_market` (the same everywhere: a path, a body field or a
    bus request), listing the markets, and naming the `field` when the symbol came in one."""
    market = MARKETS.get(symbol)
    if market is None:
        details: dict[str, object] = {"markets": list(MARKETS)}
        if field is not None:
            details["field"] = field
        raise NotFound(f"There is no market {symbol!r}; see GET /markets.", code="unknown_market", details=details)
    return market
