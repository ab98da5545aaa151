"""The simulator's candle history and Backpack's klines format: deterministic, continuous, and like the walk."""

from __future__ import annotations

import itertools
import math
import random
import statistics
from decimal import Decimal

import pytest

from cfd_poller.history import history_rng, simulate_minutes, steps_per_minute
from cfd_poller.klines import Kline, format_time, from_candle, parse_time, rest_url, to_candle
from cfd_poller.simulation import SIMULATION
from shared.candles import MINUTE_MS
from shared.contracts.bus import CandleGap
from shared.markets import MARKETS

END = 1_767_225_600_000  # 2026-01-01 00:00 UTC
DAY = 1440 * MINUTE_MS


def day_of(symbol: str, seed: int | None, *, end_mid: str = "190", start_mid: str | None = None, steps: int = 60):
    gap = CandleGap(start=END - DAY, end=END)
    return simulate_minutes(MARKETS[symbol], gap.start, gap.end, Decimal(end_mid), history_rng(seed, symbol, gap),
                            start_mid=None if start_mid is None else Decimal(start_mid), steps=steps)


def test_the_same_seed_gives_the_same_history_and_another_seed_another() -> None:
    assert day_of("SOL_USDC", 7) == day_of("SOL_USDC", 7)
    assert day_of("SOL_USDC", 7) != day_of("SOL_USDC", 8)
    assert day_of("SOL_USDC", None) != day_of("SOL_USDC", None)  # no seed: a fresh history each time


@pytest.mark.parametrize("symbol", list(MARKETS))
def test_a_day_of_whole_minutes_that_ends_where_the_live_walk_starts(symbol: str) -> None:
    market = MARKETS[symbol]
    end_mid = SIMULATION[market.symbol].price * Decimal("1.03")
    candles = simulate_minutes(market, END - DAY, END, end_mid, random.Random(1))
    assert [c.t for c in candles] == list(range(END - DAY, END, MINUTE_MS))
    quantum = market.price_tick / 10
    assert candles[-1].c == end_mid.quantize(quantum)  # the chart's last history close is the first live price
    for before, after in itertools.pairwise(candles):
        assert after.o == before.c  # no jumps between minutes
    for c in candles:
        assert 0 < c.l <= min(c.o, c.c) <= max(c.o, c.c) <= c.h
        assert all(p == p.quantize(quantum) for p in (c.o, c.h, c.l, c.c))
        assert c.n == 60


def test_a_gap_between_stored_candles_is_bridged_from_one_to_the_other() -> None:
    candles = day_of("SOL_USDC", 3, start_mid="180", end_mid="190")
    assert candles[0].o == Decimal("180.000") and candles[-1].c == Decimal("190.000")


def test_the_history_moves_like_the_live_walk() -> None:
    """One-minute returns have the walk's volatility: the simulated volatility per √second, so × √60 a minute."""
    market = MARKETS["BTC_USDC"]
    candles = simulate_minutes(market, END - 3 * DAY, END, SIMULATION[market.symbol].price, random.Random(11),
                               steps=steps_per_minute(3 * 1440))
    returns = [math.log(c.c / c.o) for c in candles]
    assert statistics.pstdev(returns) == pytest.approx(SIMULATION[market.symbol].volatility * math.sqrt(60), rel=0.15)
    assert abs(statistics.fmean(returns)) < SIMULATION[market.symbol].volatility  # no drift


def test_long_windows_are_simulated_more_coarsely_to_stay_cheap() -> None:
    assert steps_per_minute(24 * 60) == 60
    assert steps_per_minute(720 * 60) == 4
    assert 4 <= steps_per_minute(100 * 60) < 60


# --- klines ----------------------------------------------------------------------------------------------


def test_a_backpack_kline_becomes_a_candle_at_the_mids_precision() -> None:
    kline = Kline(start="2025-07-19 13:09:00", end="2025-07-19 13:10:00", open="185.1", high="185.37",
                  low="184.9", close="185.25", volume="12.5", quoteVolume="2312.2", trades="42")
    candle = to_candle(kline, MARKETS["SOL_USDC"])
    assert candle is not None
    assert candle.t == parse_time("2025-07-19T13:09:00+00:00") == 1_752_930_540_000
    assert (str(candle.o), str(candle.h), str(candle.l), str(candle.c), candle.n) == (
        "185.100", "185.370", "184.900", "185.250", 42)
    assert from_candle(candle)["start"] == "2025-07-19 13:09:00" == format_time(candle.t)
    assert to_candle(Kline(**{**from_candle(candle)}), MARKETS["SOL_USDC"]) == candle


def test_a_minute_without_trades_is_no_candle_and_nonsense_is_refused() -> None:
    market = MARKETS["SOL_USDC"]
    assert to_candle(Kline(start="2025-07-19 13:09:00", volume="0", trades="0"), market) is None
    for bad in ({"open": "-1"}, {"high": "1e3"}, {"low": "186"}, {"start": "2025-07-19 13:09:30"},
                {"close": "NaN"}):
        fields = {"start": "2025-07-19 13:09:00", "open": "185", "high": "185.5", "low": "184.5", "close": "185.2"}
        with pytest.raises(ValueError):
            to_candle(Kline(**{**fields, **bad}), market)


@pytest.mark.parametrize(("feed", "configured", "expected"), [
    ("wss://ws.backpack.exchange/", None, "https://api.backpack.exchange"),
    ("ws://127.0.0.1:9000/", None, "http://127.0.0.1:9000"),
    ("wss://proxy.example:8443/stream", None, "https://proxy.example:8443"),
    ("wss://ws.backpack.exchange/", "https://mirror.example/", "https://mirror.example"),
])
def test_where_the_klines_are(feed: str, configured: str | None, expected: str) -> None:
    assert rest_url(feed, configured) == expected
