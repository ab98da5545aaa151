"""The Redis cache (redis.asyncio); connection failures become `BackendDown("cache")`."""

from __future__ import annotations

import functools
from collections.abc import Callable, Coroutine
from typing import Any, ParamSpec, TypeVar, cast

import redis.asyncio as aioredis
from redis.commands.core import AsyncScript
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError, ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

from shared.cache import Budget, Cache, Pace, Paced, Taken, gcra
from shared.errors import BackendDown

P = ParamSpec("P")
T = TypeVar("T")


def _guarded(method: Callable[P, Coroutine[Any, Any, T]]) -> Callable[P, Coroutine[Any, Any, T]]:
    @functools.wraps(method)
    async def wrapper(*args: P.args, **kwargs: P.kwargs) -> T:
        try:
            return await method(*args, **kwargs)
        except (RedisConnectionError, RedisTimeoutError, OSError) as exc:
            raise BackendDown("cache", f"Redis: {exc}") from exc
        except RedisError as exc:
            raise BackendDown("cache", f"Redis error: {exc}") from exc

    return wrapper


# KEYS: the budgets' keys; ARGV: limit and window (ms) of each, in turn. Returns {admitted, counts, pttls}.
_TAKE = """
local counts, pttls, admitted = {}, {}, 1
for i, key in ipairs(KEYS) do
  counts[i] = tonumber(redis.call('GET', key) or '0')
  pttls[i] = redis.call('PTTL', key)
  if counts[i] >= tonumber(ARGV[2 * i - 1]) then admitted = 0 end
end
if admitted == 1 then
  for i, key in ipairs(KEYS) do
    counts[i] = redis.call('INCR', key)
    if pttls[i] < 0 then
      redis.call('PEXPIRE', key, ARGV[2 * i])
      pttls[i] = tonumber(ARGV[2 * i])
    end
  end
end
return {admitted, counts, pttls}
"""

_PACE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + tonumber(t[2]) / 1000
local interval, burst = tonumber(ARGV[1]), tonumber(ARGV[2])
local tat = tonumber(redis.call('GET', KEYS[1]) or '0')
if tat < now then tat = now end
local tolerance = interval * (burst - 1)
if now < tat - tolerance then
  return {0, string.format('%.17g', tat), string.format('%.17g', now)}
end
local new_tat = tat + interval
-- at least 1 ms: a pace far finer than the clock's precision adds nothing to it, and PX 0 is an error
redis.call('SET', KEYS[1], string.format('%.17g', new_tat), 'PX', math.max(1, math.ceil(new_tat - now)))
return {1, string.format('%.17g', tat), string.format('%.17g', now)}
"""

_GIVE_BACK = """
for _, key in ipairs(KEYS) do
  if tonumber(redis.call('GET', key) or '0') > 0 then redis.call('DECR', key) end
end
return 0
"""


class RedisCache(Cache):
    name = "redis"

    def __init__(self, url: str, *, max_connections: int = 64, pool_timeout: float = 5.0) -> None:
        """A pool of at most `max_connections`; a call finding them all busy waits up to `pool_timeout` seconds
        for one to come back (then `BackendDown`), so a burst of requests queues instead of failing."""
        self.url = url
        pool = aioredis.BlockingConnectionPool.from_url(
            url, max_connections=max_connections, timeout=pool_timeout, socket_connect_timeout=1.0,
            socket_timeout=2.0, health_check_interval=10,
        )
        self._redis = aioredis.Redis.from_pool(pool)

    @_guarded
    async def get(self, key: str) -> bytes | None:
        return cast("bytes | None", await self._redis.get(key))  # the pool does not decode responses

    @_guarded
    async def set(self, key: str, value: bytes, ttl: float | None = None, *, only_if_absent: bool = False) -> bool:
        px = int(ttl * 1000) if ttl else None
        return bool(await self._redis.set(key, value, px=px, nx=only_if_absent))

    @_guarded
    async def get_many(self, *keys: str) -> list[bytes | None]:
        return cast("list[bytes | None]", await self._redis.mget(keys)) if keys else []

    @_guarded
    async def set_many(self, items: dict[str, bytes], *, only_if_absent: bool = False) -> int:
        if not items:
            return 0
        async with self._redis.pipeline(transaction=False) as pipe:
            for key, value in items.items():
                pipe.set(key, value, nx=only_if_absent)
            stored = await pipe.execute()
        return sum(bool(s) for s in stored)

    @_guarded
    async def getdel(self, key: str) -> bytes | None:
        return cast("bytes | None", await self._redis.getdel(key))

    @_guarded
    async def delete(self, *keys: str) -> int:
        return await self._redis.delete(*keys) if keys else 0

    @_guarded
    async def incr(self, key: str, ttl: float) -> int:
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.incr(key)
            pipe.pexpire(key, int(ttl * 1000), nx=True)
            count, _ = await pipe.execute()
        return int(count)

    @functools.cached_property
    def _scripts(self) -> tuple[AsyncScript, AsyncScript, AsyncScript]:
        """`take`, `give_back` and `pace` as Lua scripts: Redis runs each one whole, nothing in between (`pace` on
        Redis's own clock, the same for every server instance)."""
        return (self._redis.register_script(_TAKE), self._redis.register_script(_GIVE_BACK),
                self._redis.register_script(_PACE))

    @_guarded
    async def take(self, *budgets: Budget) -> Taken:
        if not budgets:
            return Taken(True, (), ())
        args = [part for budget in budgets for part in (budget.limit, max(1, int(budget.window * 1000)))]
        admitted, counts, pttls = await self._scripts[0](keys=[budget.key for budget in budgets], args=args)
        return Taken(bool(admitted), tuple(int(c) for c in counts), tuple(max(0, int(ms)) / 1000 for ms in pttls))

    @_guarded
    async def pace(self, pace: Pace) -> Paced:
        in_ms = Pace(pace.key, pace.interval * 1000, pace.burst)
        admitted, tat, now = await self._scripts[2](keys=[pace.key], args=[in_ms.interval, pace.burst])
        paced, _ = gcra(in_ms, float(tat), float(now), bool(admitted))  # the script's decision, in numbers
        return Paced(paced.admitted, paced.remaining, paced.next_in / 1000, paced.full_in / 1000)

    @_guarded
    async def give_back(self, *keys: str) -> None:
        if keys:
            await self._scripts[1](keys=list(keys))

    @_guarded
    async def ttl(self, key: str) -> float | None:
        ms = await self._redis.pttl(key)
        return ms / 1000 if ms >= 0 else None

    @_guarded
    async def eviction_policy(self) -> str | None:
        """Redis's `maxmemory-policy`, or None where CONFIG is not allowed (some managed services)."""
        try:
            return (await self._redis.config_get("maxmemory-policy")).get("maxmemory-policy")
        except ResponseError:
            return None

    @_guarded
    async def ping(self) -> None:
        await self._redis.ping()

    async def close(self) -> None:
        await self._redis.aclose()
