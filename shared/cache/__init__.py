"""The cache: short-lived keys with TTLs (one-time codes, sessions, rate limits) and the credentials directory.

`MemoryCache` (in-process, the default) and `RedisCache` keep one contract; every operation that the
auth flow needs to be race-free (`set(..., only_if_absent=True)`, `getdel`, `incr`) is atomic in both.
A cache that cannot be reached raises `BackendDown("cache")`.
"""

from __future__ import annotations

from abc import ABC, abstractmethod

from shared.settings import Settings


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
    async def ttl(self, key: str) -> float | None:
        """Seconds left before `key` expires, None if it does not exist or never expires."""

    @abstractmethod
    async def ping(self) -> None: ...

    @abstractmethod
    async def close(self) -> None: ...


def create_cache(settings: Settings) -> Cache:
    """Redis when `CFD_REDIS_URL` is set, else in-process."""
    if settings.redis_url:
        from shared.cache.redis import RedisCache

        return RedisCache(settings.redis_url, max_connections=settings.redis_max_connections,
                          pool_timeout=settings.redis_pool_timeout)
    from shared.cache.memory import MemoryCache

    return MemoryCache(snapshot=settings.data_dir / "cache-snapshot" if settings.is_dev else None)
