"""How the simulator moves each market: where its price starts, its exchange spread, its volatility.

Only the poller's simulator (and the history it makes up for the minutes before it started) reads these;
the market's contract terms are `shared.markets.MARKETS`.
"""

from __future__ import annotations

from decimal import Decimal

from msgspec import Struct


class SimulatedMarket(Struct, frozen=True, kw_only=True):
    price: Decimal  # where the walk starts and what it is pulled back towards
    spread_bps: Decimal  # the exchange's spread, before the broker's markup
    volatility: float  # per-second standard deviation of log returns


SIMULATION: dict[str, SimulatedMarket] = {
    "BTC_USDC": SimulatedMarket(price=Decimal("96500"), spread_bps=Decimal("0.5"), volatility=0.0004),
    "ETH_USDC": SimulatedMarket(price=Decimal("3450"), spread_bps=Decimal("1"), volatility=0.0005),
    "SOL_USDC": SimulatedMarket(price=Decimal("185"), spread_bps=Decimal("2"), volatility=0.0007),
    "BNB_USDC": SimulatedMarket(price=Decimal("690"), spread_bps=Decimal("2"), volatility=0.0005),
    "DOGE_USDC": SimulatedMarket(price=Decimal("0.32"), spread_bps=Decimal("3"), volatility=0.0009),
}
