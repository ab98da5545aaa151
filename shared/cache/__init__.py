"""The cache: short-lived keys with TTLs (one-time codes, sessions, rate limits) and the credentials directory.

`MemoryCache` (in-process, the default) and `RedisCache` keep one contract; every operation that the
auth flow needs to be race-free (`set(..., only_if_absent=True)`, `getdel`, `incr`, `take`, `give_back`)
and the request rate limits' `pace` are atomic in both. A cache that cannot be reached raises `BackendDown("cache")`.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from dataclasses import dataclass

from shared.settings import CacheSettings


@dataclass(frozen=True)
class Budget:
    """At most `limit` takes of `key` in a window of `window` seconds, opened by the window's first take."""

    key: str
    limit: int
    window: float


@dataclass(frozen=True)
class Taken:
    """What `Cache.take` decided, with each budget's count and the seconds until its window closes."""

    admitted: bool
    counts: tuple[int, ...]  # takes in the window: this one included when admitted
    resets_in: tuple[float, ...]  # 0 for a budget with no open window

    def exhausted(self, budgets: tuple[Budget, ...] | list[Budget]) -> list[int]:
        """The indexes of the budgets that refused this take (empty when it was admitted)."""
        if self.admitted:
            return []
        return [i for i, budget in enumerate(budgets) if self.counts[i] >= budget.limit]

    def retry_after(self, budgets: tuple[Budget, ...] | list[Budget]) -> int:
        """Whole seconds until every budget that refused this take has room again (at least 1)."""
        waits = [self.resets_in[i] for i in self.exhausted(budgets)]
        return max(1, math.ceil(max(waits, default=0)))


@dataclass(frozen=True)
class Pace:
    """A steady rate: one request every `interval` seconds on average, up to `burst` at once (the generic cell
    rate algorithm: a full bucket of `burst` refills by one every `interval`)."""

    key: str
    interval: float
    burst: int


@dataclass(frozen=True)
class Paced:
    """What `Cache.pace` decided: admitted or not, how many more are admitted right now, the seconds until the
    next one is (0 when one is now), and the seconds until the whole burst is available again."""

    admitted: bool
    remaining: int
    next_in: float
    full_in: float


def gcra(pace: Pace, tat: float, now: float, admitted: bool | None = None) -> tuple[Paced, float | None]:
    """One step of the cell rate algorithm at `now` for a stored theoretical arrival time `tat` (0: none): the
    decision (or the one given as `admitted`), and the new `tat` to store (None when refused: nothing changes)."""
    tat = max(tat, now)
    tolerance = pace.interval * (pace.burst - 1)
    if admitted is None:
        admitted = now >= tat - tolerance
    if not admitted:
        return Paced(False, 0, max(0.0, tat - tolerance - now), tat - now), None
    new_tat = tat + pace.interval
    remaining = max(0, math.floor((now + tolerance + pace.interval - new_tat) / pace.interval + 1e-9))
    next_in = 0.0 if remaining > 0 else max(0.0, new_tat - tolerance - now)
    return Paced(True, remaining, next_in, new_tat - now), new_tat


class Cache(ABC):
    name: str

    @abstractmethod
    async def get(self, key: str) -> bytes | None: ...

    @abstractmethod
    async def set(self, key: str, value: bytes, ttl: float | None = None, *, only_if_absent: bool = False) -> bool:
        """Store `value`; with `only_if_absent`, only when the key is missing. True when stored."""

    @abstractmethod
    async def get_many(self, *keys: str) -> list[bytes | None]:
        """The values of `keys` in one round trip, None for each missing key."""

    @abstractmethod
    async def set_many(self, items: dict[str, bytes], *, only_if_absent: bool = False) -> int:
        """Store many keys without expiry in one round trip; with `only_if_absent`, only missing ones.
        Returns how many were stored."""

    @abstractmethod
    async def getdel(self, key: str) -> bytes | None:
        """Return and delete in one step: of two racing callers, only one gets the value."""

    @abstractmethod
    async def delete(self, *keys: str) -> int: ...

    @abstractmethod
    async def incr(self, key: str, ttl: float) -> int:
        """Add one; the first increment starts a window of `ttl` seconds."""

    @abstractmethod
    async def take(self, *budgets: Budget) -> Taken:
        """Count one attempt against every budget, all or none, in one atomic step: admitted only if each
        budget still has room, and then counted in each. A refused take counts nowhere. Of N concurrent
        callers, exactly as many are admitted as the tightest budget has room for."""

    @abstractmethod
    async def pace(self, pace: Pace) -> Paced:
        """Admit one request at `pace` or refuse it (`gcra`), in one atomic step, on one clock for every caller
        (the cache's): of N concurrent callers with a full bucket, exactly `burst` are admitted."""

    @abstractmethod
    async def give_back(self, *keys: str) -> None:
        """Return one take to each budget key (never below zero), keeping its window: for an attempt that
        turned out not to be the kind the budget limits (a right password, a right code)."""

    @abstractmethod
    async def ttl(self, key: str) -> float | None:
        """Seconds left before `key` expires, None if it does not exist or never expires."""

    @abstractmethod
    async def ping(self) -> None: ...

    @abstractmethod
    async def close(self) -> None: ...


def create_cache(settings: CacheSettings) -> Cache:
    """Redis when `CFD_REDIS_URL` is set, else in-process."""
    if settings.url:
        from shared.cache.redis import RedisCache

        return RedisCache(settings.url, max_connections=settings.max_connections,
                          pool_timeout=settings.pool_timeout)
    from shared.cache.memory import MemoryCache

    return MemoryCache(snapshot=settings.snapshot)
