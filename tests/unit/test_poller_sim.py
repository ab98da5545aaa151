"""The simulator: reproducible with a seed, prices exact on each market's tick, every market ticking."""

from __future__ import annotations

import itertools
from collections.abc import AsyncIterator
from decimal import Decimal

import pytest

from cfd_poller.simulation import SIMULATION
from cfd_poller.sources.sim import RandomWalk, SimSource, quantised_quote, seeded_rng
from shared.contracts.bus import PriceTick
from shared.markets import MARKETS


def walk_quotes(seed: int | None, symbol: str, steps: int, tick_hz: float = 4.0) -> list[tuple[Decimal, Decimal]]:
    walk = RandomWalk(MARKETS[symbol], seeded_rng(seed, symbol), 1.0 / tick_hz)
    return [walk.step() for _ in range(steps)]


@pytest.mark.parametrize("symbol", list(MARKETS))
def test_the_same_seed_gives_the_same_prices(symbol: str) -> None:
    assert walk_quotes(42, symbol, 200) == walk_quotes(42, symbol, 200)
    assert walk_quotes(42, symbol, 200) != walk_quotes(43, symbol, 200)


@pytest.mark.parametrize("symbol", list(MARKETS))
def test_prices_are_exact_decimals_on_the_tick_around_the_simulated_price(symbol: str) -> None:
    market = MARKETS[symbol]
    quotes = walk_quotes(7, symbol, 2000)
    for bid, ask in quotes:
        assert isinstance(bid, Decimal) and isinstance(ask, Decimal)
        assert bid == bid.quantize(market.price_tick) and ask == ask.quantize(market.price_tick)
        assert bid.as_tuple().exponent == ask.as_tuple().exponent == market.price_tick.as_tuple().exponent
        assert 0 < bid < ask
    mids = [(bid + ask) / 2 for bid, ask in quotes]
    assert len(set(mids)) > 10  # it moves
    assert all(abs(mid / SIMULATION[market.symbol].price - 1) < Decimal("0.1") for mid in mids)  # and stays realistic


def test_the_spread_follows_the_market_setting() -> None:
    market = MARKETS["BTC_USDC"]
    spreads = [(ask - bid) / ((ask + bid) / 2) * 10_000 for bid, ask in walk_quotes(1, "BTC_USDC", 500)]
    # the simulated spread, widened by at most one tick on each side by the rounding
    simulated = SIMULATION[market.symbol].spread_bps
    assert all(simulated <= spread < simulated + 1 for spread in spreads)


def test_quantising_never_crosses_or_reaches_zero() -> None:
    market = MARKETS["DOGE_USDC"]
    assert quantised_quote(market, 0.3200012, 0.3200013) == (Decimal("0.32000"), Decimal("0.32001"))
    assert quantised_quote(market, 0.0000001, 0.0000002) == (Decimal("0.00001"), Decimal("0.00002"))


async def test_exchange_times_only_ever_increase() -> None:
    ticks = SimSource([MARKETS["SOL_USDC"]], tick_hz=5000, seed=1).ticks()
    try:
        times = [t.exchange_time_us async for t in _take(ticks, 200)]
    finally:
        await ticks.aclose()
    assert all(later > earlier for earlier, later in itertools.pairwise(times))


async def test_the_source_ticks_every_market_in_turn_reproducibly() -> None:
    markets = [MARKETS["BTC_USDC"], MARKETS["SOL_USDC"]]

    async def first(n: int, seed: int) -> list[tuple[str, Decimal, Decimal]]:
        ticks = SimSource(markets, tick_hz=2000, seed=seed).ticks()
        try:
            return [(t.symbol, t.bid, t.ask) async for t in _take(ticks, n)]
        finally:
            await ticks.aclose()

    run1, run2 = await first(20, seed=5), await first(20, seed=5)
    assert run1 == run2
    assert [symbol for symbol, _, _ in run1] == list(itertools.islice(itertools.cycle(["BTC_USDC", "SOL_USDC"]), 20))
    assert [q for s, *q in run1 if s == "SOL_USDC"] == [list(q) for q in walk_quotes(5, "SOL_USDC", 10, 2000)]


async def _take(ticks: AsyncIterator[PriceTick], n: int) -> AsyncIterator[PriceTick]:
    async for tick in ticks:
        yield tick
        n -= 1
        if n == 0:
            return
