"""Reconnect backoff and staleness: the timing rules of the poller."""

from __future__ import annotations

import random

import pytest

from cfd_poller.backoff import Backoff
from cfd_poller.staleness import StalenessTracker


def test_delays_double_up_to_the_cap_within_the_jitter_bounds() -> None:
    backoff = Backoff(initial=0.5, cap=30.0, factor=2.0, jitter=0.5, rng=random.Random(1))
    ceilings = [0.5, 1, 2, 4, 8, 16, 30, 30, 30, 30]
    for ceiling in ceilings:
        delay = backoff.next()
        assert ceiling * 0.5 <= delay <= ceiling
    assert max(backoff.next() for _ in range(100)) <= 30.0


def test_jitter_spreads_clients_that_lost_the_same_server() -> None:
    delays = {Backoff(rng=random.Random(seed)).next() for seed in range(20)}
    assert len(delays) == 20
    assert all(0.25 <= d <= 0.5 for d in delays)


def test_reset_starts_again_from_the_initial_delay() -> None:
    backoff = Backoff(initial=0.5, cap=30.0, jitter=0.0)
    assert [backoff.next() for _ in range(4)] == [0.5, 1.0, 2.0, 4.0]
    backoff.reset()
    assert backoff.next() == 0.5


def test_many_attempts_do_not_overflow() -> None:
    backoff = Backoff(initial=0.5, cap=30.0, jitter=0.0)
    for _ in range(5000):
        assert backoff.next() <= 30.0


@pytest.mark.parametrize("kwargs", [{"initial": 0}, {"initial": 5, "cap": 1}, {"jitter": 1.0}, {"factor": 0.5}])
def test_nonsense_settings_are_refused(kwargs: dict[str, float]) -> None:
    with pytest.raises(ValueError):
        Backoff(**kwargs)


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_a_quiet_market_goes_stale_once_and_recovers_once(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level("INFO")
    clock = FakeClock()
    tracker = StalenessTracker(["SOL_USDC", "BTC_USDC"], after_seconds=10, source="backpack", clock=clock)
    clock.now += 9
    tracker.seen("BTC_USDC")
    assert tracker.check() == [] and tracker.stale_symbols() == []

    clock.now += 2  # SOL quiet for 11 s, BTC for 2 s
    assert tracker.check() == ["SOL_USDC"]
    assert tracker.check() == []  # reported once, not on every check
    assert tracker.stale_symbols() == ["SOL_USDC"]
    assert caplog.text.count("SOL_USDC is stale") == 1

    tracker.seen("SOL_USDC")
    tracker.seen("SOL_USDC")
    assert tracker.stale_symbols() == []
    assert caplog.text.count("SOL_USDC is live again on backpack") == 1
