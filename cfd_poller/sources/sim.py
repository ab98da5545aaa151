"""The simulator: a seeded random walk per market around its simulated price (`cfd_poller.simulation`), at
`sim_tick_hz` per market.

The walk runs on floats (log price, normal increments scaled by the market's per-second volatility, a gentle
pull back towards the simulated price); every published bid and ask is an exact `Decimal` on the market's price
tick, the bid rounded down and the ask up from `mid ∓ spread_bps/2`. The same seed gives the same prices. A walk
starts at the simulated price, or where the stored prices end (`SimSource.resume`, see `cfd_poller.history`).
"""

from __future__ import annotations

import asyncio
import math
import random
from collections.abc import AsyncGenerator, Mapping, Sequence
from decimal import ROUND_CEILING, ROUND_FLOOR, Decimal

from cfd_poller.metrics import PollerMetrics
from cfd_poller.simulation import SIMULATION
from shared import clock
from shared.contracts.bus import PriceTick
from shared.markets import BPS, Market

# The walk drifts back towards the simulated price with this time constant, so a long demo stays near real prices.
MEAN_REVERSION_SECONDS = 3600.0
# When the loop falls this far behind its schedule (a stalled event loop), it skips ahead instead of bursting.
MAX_LAG_SECONDS = 1.0


class RandomWalk:
    """One market's simulated top of book; `step()` advances it by `dt` seconds."""

    def __init__(self, market: Market, rng: random.Random, dt: float) -> None:
        self.market = market
        self._rng = rng
        self._sigma = SIMULATION[market.symbol].volatility * math.sqrt(dt)
        self._revert = min(1.0, dt / MEAN_REVERSION_SECONDS)
        self._half_spread = float(SIMULATION[market.symbol].spread_bps / 2 / BPS)
        self._start = float(SIMULATION[market.symbol].price)
        self._x = 0.0  # log(mid / simulated price)

    @property
    def mid(self) -> float:
        """The current mid."""
        return self._start * math.exp(self._x)

    def move_to(self, mid: Decimal | float) -> None:
        """Continue the walk from `mid` (e.g. the last stored price) instead of where it is."""
        if not 0 < float(mid) < math.inf:
            raise ValueError(f"a mid must be a positive price, got {mid}")
        self._x = math.log(float(mid) / self._start)

    def step(self) -> tuple[Decimal, Decimal]:
        """The next (bid, ask), both on the market's price tick, bid < ask."""
        self._x += self._sigma * self._rng.gauss(0.0, 1.0) - self._x * self._revert
        mid = self._start * math.exp(self._x)
        return quantised_quote(self.market, mid * (1 - self._half_spread), mid * (1 + self._half_spread))


def quantised_quote(market: Market, bid: float, ask: float) -> tuple[Decimal, Decimal]:
    """Exact Decimals on the price tick: the bid rounded down, the ask up, at least one tick apart and above 0."""
    tick = market.price_tick
    exact_bid = max(tick, Decimal(repr(bid)).quantize(tick, rounding=ROUND_FLOOR))
    exact_ask = Decimal(repr(ask)).quantize(tick, rounding=ROUND_CEILING)
    if exact_ask <= exact_bid:
        exact_ask = exact_bid + tick
    return exact_bid, exact_ask


def seeded_rng(seed: int | None, symbol: str) -> random.Random:
    """One generator per market, so a market's prices do not depend on which other markets run."""
    return random.Random(f"{seed}:{symbol}") if seed is not None else random.Random()


class SimSource:
    """Ticks every market in turn, `tick_hz` times a second each, spread evenly over the second."""

    name = "sim"

    def __init__(self, markets: Sequence[Market], metrics: PollerMetrics | None = None, *, tick_hz: float = 4.0,
                 seed: int | None = None) -> None:
        if tick_hz <= 0:
            raise ValueError("tick_hz must be positive")
        self.metrics = metrics or PollerMetrics()
        self.markets = tuple(markets)
        self.symbols = tuple(m.symbol for m in self.markets)
        self.tick_hz = tick_hz
        self.seed = seed
        self.walks = [RandomWalk(m, seeded_rng(seed, m.symbol), 1.0 / tick_hz) for m in self.markets]

    def resume(self, mids: Mapping[str, Decimal]) -> None:
        """Start each market named in `mids` from that mid (the last stored price) instead of its simulated price."""
        for walk in self.walks:
            if walk.market.symbol in mids:
                walk.move_to(mids[walk.market.symbol])

    def mid(self, symbol: str) -> float:
        """Where `symbol`'s walk is now (before the next tick)."""
        return next(w.mid for w in self.walks if w.market.symbol == symbol)

    async def ticks(self) -> AsyncGenerator[PriceTick, None]:
        if not self.walks:
            return
        loop = asyncio.get_running_loop()
        rate = self.tick_hz * len(self.walks)  # ticks per second, all markets together
        start = loop.time()
        emitted = 0
        index = 0
        last_us = 0  # exchange times only ever increase, even if the wall clock steps back
        while True:
            elapsed = loop.time() - start
            due = int(elapsed * rate) + 1 - emitted
            if due <= 0:
                await asyncio.sleep(emitted / rate - elapsed)
                continue
            if due > rate * MAX_LAG_SECONDS:
                start, emitted, due = loop.time(), 0, 1
            for _ in range(due):
                walk = self.walks[index]
                index = (index + 1) % len(self.walks)
                bid, ask = walk.step()
                now_us = clock.now_us()
                last_us = max(now_us, last_us + 1)
                yield PriceTick(symbol=walk.market.symbol, bid=bid, ask=ask, exchange_time_us=last_us,
                                ingest_time_us=now_us)
                emitted += 1
            await asyncio.sleep(0)
