"""Candle maths (`shared.candles`) and the server's live candles, against hand computations."""

from __future__ import annotations

from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from cfd_server.market.live_candles import CLOSE_GRACE_MS, LiveCandles
from shared.candles import (
    INTERVALS,
    aggregate,
    bucket_start,
    build,
    combine,
    interval_ms,
    overlay,
)
from shared.contracts.rest import Candle

D = Decimal
MIN = 60_000
T0 = 1_767_225_600_000  # 2026-01-01 00:00:00 UTC


def test_buckets_are_aligned_to_the_epoch_in_utc():
    assert bucket_start(T0 + 59_999, MIN) == T0
    assert bucket_start(T0 + 60_000, MIN) == T0 + MIN
    assert bucket_start(T0 + 3 * 3_600_000 + 5, INTERVALS["4h"]) == T0  # 00:00, 04:00, ... UTC
    assert bucket_start(T0 + 86_399_999, INTERVALS["1d"]) == T0  # midnight UTC
    assert [interval_ms(n) // MIN for n in ("1m", "5m", "15m", "1h", "4h", "1d")] == [1, 5, 15, 60, 240, 1440]
    with pytest.raises(ValueError, match="use one of 1m, 5m"):
        interval_ms("2m")


def test_ohlc_and_count_across_a_minute_boundary_match_a_hand_computation():
    ticks = [(T0 + 5_000, D("100.0")), (T0 + 20_000, D("101.5")), (T0 + 30_000, D("99.5")),
             (T0 + 59_999, D("100.5")), (T0 + 60_000, D("102.0")), (T0 + 61_000, D("101.0"))]
    assert build(ticks, MIN) == [
        Candle(t=T0, o=D("100.0"), h=D("101.5"), l=D("99.5"), c=D("100.5"), n=4),
        Candle(t=T0 + MIN, o=D("102.0"), h=D("102.0"), l=D("101.0"), c=D("101.0"), n=2),
    ]


def test_a_quiet_minute_leaves_a_gap_and_an_older_tick_is_ignored():
    ticks = [(T0, D("1")), (T0 + 3 * MIN, D("2")), (T0 + 10, D("9"))]
    assert [c.t for c in build(ticks, MIN)] == [T0, T0 + 3 * MIN]
    assert build(ticks, MIN)[-1].h == D("2")


def test_1m_candles_roll_up_into_5m():
    ones = [
        Candle(t=T0 + 3 * MIN, o=D("10"), h=D("12"), l=D("9"), c=D("11"), n=3),
        Candle(t=T0 + 4 * MIN, o=D("11"), h=D("15"), l=D("10"), c=D("14"), n=2),
        Candle(t=T0 + 5 * MIN, o=D("14"), h=D("14"), l=D("8"), c=D("8"), n=5),
        Candle(t=T0 + 9 * MIN, o=D("8"), h=D("9"), l=D("7"), c=D("9"), n=1),
    ]
    assert aggregate(ones, 5 * MIN) == [
        Candle(t=T0, o=D("10"), h=D("15"), l=D("9"), c=D("14"), n=5),
        Candle(t=T0 + 5 * MIN, o=D("14"), h=D("14"), l=D("7"), c=D("9"), n=6),
    ]
    assert aggregate(ones, MIN) == ones
    assert aggregate([], 5 * MIN) == []


@given(st.lists(st.tuples(st.integers(0, 2 * 86_400_000), st.integers(1, 10_000)), max_size=200),
       st.sampled_from(["5m", "15m", "1h", "4h", "1d"]))
def test_rolling_up_1m_equals_building_the_interval_from_the_ticks(raw, interval):
    ticks = sorted((T0 + ms, Decimal(p) / 100) for ms, p in raw)
    ticks = [t for i, t in enumerate(ticks) if i == 0 or t[0] != ticks[i - 1][0]]
    assert aggregate(build(ticks, MIN), INTERVALS[interval]) == build(ticks, INTERVALS[interval])


def test_combine_keeps_the_first_open_and_the_last_close():
    a = Candle(t=T0, o=D("5"), h=D("6"), l=D("4"), c=D("5.5"), n=2)
    b = Candle(t=T0, o=D("5.5"), h=D("7"), l=D("5"), c=D("6.5"), n=3)
    assert combine(a, b) == Candle(t=T0, o=D("5"), h=D("7"), l=D("4"), c=D("6.5"), n=5)


class TestOverlay:
    stored = [Candle(t=T0, o=D("1"), h=D("2"), l=D("1"), c=D("2"), n=3),
              Candle(t=T0 + MIN, o=D("2"), h=D("4"), l=D("1.5"), c=D("3"), n=10)]

    def test_a_live_candle_of_a_new_bucket_is_appended_and_the_limit_holds(self):
        live = Candle(t=T0 + 2 * MIN, o=D("3"), h=D("3"), l=D("3"), c=D("3"), n=1)
        assert overlay(self.stored, live, live_is_whole=True, limit=2) == [self.stored[1], live]

    def test_a_whole_live_candle_replaces_the_stored_one(self):
        live = Candle(t=T0 + MIN, o=D("2"), h=D("5"), l=D("1.5"), c=D("4"), n=12)
        assert overlay(self.stored, live, live_is_whole=True, limit=10)[-1] is live

    def test_a_joined_live_candle_takes_the_stored_open_and_its_own_close(self):
        live = Candle(t=T0 + MIN, o=D("3.5"), h=D("3.6"), l=D("1.0"), c=D("3.2"), n=4)
        assert overlay(self.stored, live, live_is_whole=False, limit=10)[-1] == Candle(
            t=T0 + MIN, o=D("2"), h=D("4"), l=D("1.0"), c=D("3.2"), n=10)

    def test_no_live_candle_or_an_old_one_leaves_the_history(self):
        old = Candle(t=T0 - MIN, o=D("9"), h=D("9"), l=D("9"), c=D("9"), n=1)
        assert overlay(self.stored, None, live_is_whole=True, limit=10) == self.stored
        assert overlay(self.stored, old, live_is_whole=True, limit=10) == self.stored
        assert overlay([], None, live_is_whole=True, limit=10) == []


class TestLiveCandles:
    def setup_method(self):
        self.now = 0.0
        self.events: list[tuple[str, str, Candle, bool]] = []
        self.live = LiveCandles(clock=lambda: self.now)
        self.live.on_change(lambda s, i, c, closed: self.events.append((s, i, Candle(**_fields(c)), closed)))

    def one_minute(self) -> list[tuple[Candle, bool]]:
        return [(c, closed) for s, i, c, closed in self.events if i == "1m"]

    def test_ticks_update_every_interval_and_a_later_bucket_closes_the_candle(self):
        for ts, p in [(T0 + 1_000, "10"), (T0 + 2_000, "12"), (T0 + 3_000, "9"), (T0 + MIN, "11")]:
            self.live.add("SOL_USDC", ts, D(p))
        events = self.one_minute()
        assert [closed for _, closed in events] == [False, False, False, True, False]
        assert events[3][0] == Candle(t=T0, o=D("10"), h=D("12"), l=D("9"), c=D("9"), n=3)
        assert events[4][0] == Candle(t=T0 + MIN, o=D("11"), h=D("11"), l=D("11"), c=D("11"), n=1)
        assert {i for _, i, _, _ in self.events} == set(INTERVALS)
        five, whole = self.live.current("SOL_USDC", "5m")
        assert five == Candle(t=T0, o=D("10"), h=D("12"), l=D("9"), c=D("11"), n=4)
        assert not whole  # this builder started inside the bucket
        assert self.live.current("SOL_USDC", "1m")[1] is True  # it saw the 00:01 bucket from its start

    def test_the_sweep_closes_a_quiet_market_on_its_own_clock(self):
        self.live.add("SOL_USDC", T0 + 30_000, D("10"))  # an old exchange time, as a replay has
        self.now = 30.0 + CLOSE_GRACE_MS / 1000 - 0.01  # the market's clock: 00:00:59.99 + grace
        assert self.live.sweep() == 0
        self.now += 0.01
        assert self.live.sweep() == 1  # only 1m: its bucket ended on the market's clock
        assert self.one_minute()[-1] == (Candle(t=T0, o=D("10"), h=D("10"), l=D("10"), c=D("10"), n=1), True)
        assert self.live.is_closed("SOL_USDC", "1m") and not self.live.is_closed("SOL_USDC", "5m")
        self.live.add("SOL_USDC", T0 + 59_000, D("11"))  # too late for a closed bucket
        assert self.live.current("SOL_USDC", "1m")[0].n == 1

    def test_absorb_completes_a_candle_joined_midway(self):
        self.live.add("SOL_USDC", T0 + 30_000, D("10"))
        assert ("SOL_USDC", "1m", T0) in self.live.partial()
        self.live.absorb("SOL_USDC", "1m", Candle(t=T0, o=D("8"), h=D("9"), l=D("7"), c=D("9"), n=6))
        assert self.live.current("SOL_USDC", "1m") == (Candle(t=T0, o=D("8"), h=D("10"), l=D("7"), c=D("10"),
                                                              n=6), True)
        assert ("SOL_USDC", "1m", T0) not in self.live.partial()


def _fields(c: Candle) -> dict:
    return {"t": c.t, "o": c.o, "h": c.h, "l": c.l, "c": c.c, "n": c.n}
