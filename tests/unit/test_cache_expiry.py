"""The in-process cache lets expired keys go by the clock, not by how often it is written to."""

from __future__ import annotations

import asyncio

from shared.cache import Budget
from shared.cache.memory import MemoryCache


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


async def test_expired_keys_are_gone_without_any_write():
    clock = Clock()
    cache = MemoryCache(clock=clock)
    for i in range(5000):
        await cache.set(f"session:{i}", b"s", ttl=60)
        await cache.incr(f"throttle:{i}", ttl=30)
    await cache.take(Budget("signin:x", 10, 90))
    await cache.set("directory:x", b"kept")  # no expiry
    assert cache.expiring() == 10_001

    clock.now += 61
    await asyncio.sleep(2 * MemoryCache.SWEEP_SECONDS)  # nothing touches the cache: only its timer runs
    assert cache.expiring() == 1  # the 90 s window is still open
    clock.now += 30
    await asyncio.sleep(2 * MemoryCache.SWEEP_SECONDS)
    assert cache.expiring() == 0
    assert await cache.get("directory:x") == b"kept"
    await cache.close()


async def test_a_key_set_again_keeps_its_new_expiry():
    clock = Clock()
    cache = MemoryCache(clock=clock)
    await cache.set("k", b"old", ttl=10)
    clock.now += 5
    await cache.set("k", b"new", ttl=10)  # expires at 115 now, not 110
    clock.now += 6
    assert await cache.get("k") == b"new"
    clock.now += 5
    assert await cache.get("k") is None
    await cache.close()


def test_a_cache_used_outside_an_event_loop_sweeps_on_use():
    clock = Clock()
    cache = MemoryCache(clock=clock)
    asyncio.run(cache.set("otp", b"123456", ttl=5))  # its loop is gone once this returns
    clock.now += 6
    assert asyncio.run(cache.get("other")) is None
    assert cache.expiring() == 0
