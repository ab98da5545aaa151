"""The cache contract, on the cache of the selected backend set (in-process or Redis)."""

from __future__ import annotations

import asyncio
import uuid

import pytest

from shared.cache import Budget, Pace, create_cache


@pytest.fixture
async def cache(make_settings):
    the_cache = create_cache(make_settings().cache)
    yield the_cache
    await the_cache.close()


@pytest.fixture
def key() -> str:
    return f"test:{uuid.uuid4().hex}"


async def test_values_expire(cache, key):
    assert await cache.set(key, b"v", ttl=0.2)
    assert await cache.get(key) == b"v"
    assert 0 < (await cache.ttl(key)) <= 0.2
    await asyncio.sleep(0.3)
    assert await cache.get(key) is None and await cache.ttl(key) is None


async def test_only_if_absent(cache, key):
    assert await cache.set(key, b"first", ttl=5, only_if_absent=True)
    assert not await cache.set(key, b"second", ttl=5, only_if_absent=True)
    assert await cache.get(key) == b"first"


async def test_getdel_hands_the_value_to_exactly_one_caller(cache, key):
    await cache.set(key, b"code", ttl=5)
    results = await asyncio.gather(*(cache.getdel(key) for _ in range(20)))
    assert results.count(b"code") == 1 and results.count(None) == 19


async def test_incr_counts_within_a_window(cache, key):
    assert [await cache.incr(key, ttl=0.3) for _ in range(3)] == [1, 2, 3]
    await asyncio.sleep(0.4)
    assert await cache.incr(key, ttl=0.3) == 1


async def test_delete(cache, key):
    await cache.set(key, b"v")
    assert await cache.delete(key, key + ":missing") == 1
    assert await cache.get(key) is None


async def test_get_many_and_set_many_in_one_round_trip(cache, key):
    assert await cache.set_many({key + ":a": b"1", key + ":b": b"2"}) == 2
    assert await cache.get_many(key + ":a", key + ":missing", key + ":b") == [b"1", None, b"2"]
    assert await cache.set_many({key + ":a": b"new", key + ":c": b"3"}, only_if_absent=True) == 1
    assert await cache.get_many(key + ":a", key + ":c") == [b"1", b"3"]
    assert await cache.ttl(key + ":c") is None  # no expiry
    await cache.delete(key + ":a", key + ":b", key + ":c")


async def test_take_admits_exactly_the_budget_under_a_concurrent_burst(cache, key):
    budget = Budget(key, limit=5, window=5)
    results = await asyncio.gather(*(cache.take(budget) for _ in range(60)))
    admitted = [r for r in results if r.admitted]
    assert len(admitted) == 5
    assert sorted(r.counts[0] for r in admitted) == [1, 2, 3, 4, 5]
    refused = [r for r in results if not r.admitted]
    assert all(r.counts == (5,) and r.exhausted([budget]) == [0] for r in refused)
    assert all(4 <= r.retry_after([budget]) <= 5 for r in refused)


async def test_take_counts_in_every_budget_or_in_none(cache, key):
    tight, loose = Budget(key + ":tight", 2, 5), Budget(key + ":loose", 10, 5)
    assert [(await cache.take(tight, loose)).counts for _ in range(2)] == [(1, 1), (2, 2)]
    refused = await cache.take(tight, loose)
    assert not refused.admitted and refused.counts == (2, 2) and refused.exhausted([tight, loose]) == [0]
    assert (await cache.take(loose)).counts == (3,)  # the refused take was not counted in the loose budget


async def test_take_windows_open_on_the_first_take_and_close(cache, key):
    budget = Budget(key, limit=2, window=0.3)
    first = await cache.take(budget)
    assert first.admitted and 0 < first.resets_in[0] <= 0.3
    assert (await cache.take(budget)).admitted
    assert not (await cache.take(budget)).admitted
    await asyncio.sleep(0.4)
    again = await cache.take(budget)
    assert again.admitted and again.counts == (1,)


async def test_give_back_returns_one_take_and_keeps_the_window(cache, key):
    budget = Budget(key, limit=3, window=5)
    for _ in range(3):
        await cache.take(budget)
    ttl_before = await cache.ttl(key)
    await cache.give_back(key, key + ":never-taken")
    assert 0 < await cache.ttl(key) <= ttl_before
    assert (await cache.take(budget)).counts == (3,)
    assert not (await cache.take(budget)).admitted
    for _ in range(5):
        await cache.give_back(key)
    assert (await cache.take(budget)).counts == (1,)  # never below zero
    assert await cache.get(key + ":never-taken") is None


async def test_pace_admits_the_burst_of_a_concurrent_crowd_then_one_per_interval(cache, key):
    pace = Pace(key, interval=0.2, burst=5)
    results = await asyncio.gather(*(cache.pace(pace) for _ in range(40)))
    admitted = [r for r in results if r.admitted]
    assert len(admitted) == 5
    assert sorted(r.remaining for r in admitted) == [0, 1, 2, 3, 4]
    refused = [r for r in results if not r.admitted]
    assert all(r.remaining == 0 and 0 < r.next_in <= 0.2 and 0.8 <= r.full_in <= 1.0 for r in refused)
    await asyncio.sleep(refused[-1].next_in + 0.02)
    one, two = await cache.pace(pace), await cache.pace(pace)  # a steady rate: one more per interval, no burst
    assert one.admitted and one.remaining == 0 and not two.admitted


async def test_a_pace_finer_than_the_clock_admits_everything(cache, key):
    """A limit lifted out of the way (a billion per 10 s, as a load test sets it): its interval is below the
    clock's precision, and every request is admitted, never an error."""
    pace = Pace(key, interval=10 / 1_000_000_000, burst=100_000_000)
    results = await asyncio.gather(*(cache.pace(pace) for _ in range(200)))
    assert all(result.admitted for result in results)


async def test_pace_refills_to_the_whole_burst_and_no_further(cache, key):
    pace = Pace(key, interval=0.05, burst=3)
    assert [(await cache.pace(pace)).admitted for _ in range(4)] == [True, True, True, False]
    await asyncio.sleep(0.5)  # ten intervals: the bucket is full again, with three
    assert [(await cache.pace(pace)).admitted for _ in range(4)] == [True, True, True, False]
