"""The cache contract, on the cache of the selected backend set (in-process or Redis)."""

from __future__ import annotations

import asyncio
import uuid

import pytest

from shared.cache import create_cache


@pytest.fixture
async def cache(make_settings):
    the_cache = create_cache(make_settings())
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
