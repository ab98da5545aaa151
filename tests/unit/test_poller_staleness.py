"""Staleness: a market with no tick for a while is reported once, and once again when it is back."""

from __future__ import annotations

import pytest

from cfd_poller.staleness import StalenessTracker


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
