"""`shared.backoff.Backoff`, the one reconnect backoff: growth, cap, jitter bounds, reset."""

from __future__ import annotations

import random

import pytest

from cfd_client.feed import reconnect_backoff
from shared.backoff import Backoff


def test_delays_double_up_to_the_cap_within_the_jitter_bounds() -> None:
    backoff = Backoff(initial=0.5, cap=30.0, factor=2.0, jitter=0.5, rng=random.Random(1))
    ceilings = [0.5, 1, 2, 4, 8, 16, 30, 30, 30, 30]
    for ceiling in ceilings:
        assert backoff.ceiling() == ceiling
        delay = backoff.next()
        assert ceiling * 0.5 <= delay <= ceiling
    assert max(backoff.next() for _ in range(100)) <= 30.0


def test_without_jitter_the_delays_are_the_ceilings() -> None:
    backoff = Backoff(initial=0.25, cap=8.0, factor=3.0, jitter=0.0)
    assert [backoff.next() for _ in range(5)] == [0.25, 0.75, 2.25, 6.75, 8.0]


def test_jitter_spreads_clients_that_lost_the_same_server() -> None:
    delays = {Backoff(rng=random.Random(seed)).next() for seed in range(20)}
    assert len(delays) == 20
    assert all(0.25 <= d <= 0.5 for d in delays)
    one = Backoff(initial=0.25, cap=8.0, jitter=0.3, rng=random.Random(1))
    series = [one.next() for _ in range(12)]
    assert len(set(series)) == len(series)  # no two attempts in lock-step either, even at the cap


def test_reset_starts_again_from_the_initial_delay() -> None:
    backoff = Backoff(initial=0.5, cap=30.0, jitter=0.0)
    assert [backoff.next() for _ in range(4)] == [0.5, 1.0, 2.0, 4.0]
    assert backoff.attempts == 4
    backoff.reset()
    assert backoff.attempts == 0
    assert backoff.next() == 0.5


def test_many_attempts_do_not_overflow() -> None:
    backoff = Backoff(initial=0.5, cap=30.0, jitter=0.0)
    for _ in range(5000):
        assert backoff.next() <= 30.0


@pytest.mark.parametrize("kwargs", [{"initial": 0}, {"initial": 5, "cap": 1}, {"jitter": 1.0}, {"jitter": -0.1},
                                    {"factor": 0.5}])
def test_nonsense_settings_are_refused(kwargs: dict[str, float]) -> None:
    with pytest.raises(ValueError):
        Backoff(**kwargs)


def test_the_client_reconnects_from_a_quarter_second_up_to_eight() -> None:
    backoff = reconnect_backoff()
    delays = [backoff.next() for _ in range(12)]
    assert 0.25 * 0.7 <= delays[0] <= 0.25
    assert all(0 < d <= 8.0 for d in delays) and delays[-1] >= 8.0 * 0.7
