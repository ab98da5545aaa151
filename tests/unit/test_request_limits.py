"""The request limits as a steady pace, and a client that asks again before its `Retry-After`: held a second
before it is even looked at, then counted as usual."""

from __future__ import annotations

import asyncio

import pytest
from litestar import Request

from cfd_server.auth.session import Session
from cfd_server.limits import HEADERS_STATE, RequestLimits
from shared.cache.memory import MemoryCache
from shared.contracts.rest import User
from shared.errors import Throttled
from shared.settings import AuthSettings, RateLimit


class CountingCache(MemoryCache):
    """The in-process cache, counting the rate limit's round trips (what each would cost on Redis)."""

    takes = 0

    async def pace(self, pace):  # type: ignore[override]
        self.takes += 1
        return await super().pace(pace)


class Handler:
    opt: dict[str, str] = {}  # no class of its own: reads and writes


def request(method: str = "GET") -> Request:
    return Request(scope={"type": "http", "method": method, "path": "/api/v1/account", "headers": [], "state": {},
                          "query_string": b"", "route_handler": Handler()})  # type: ignore[typeddict-item]


@pytest.fixture
def clock():
    return [100.0]


@pytest.fixture
def limits(clock):
    auth = AuthSettings(rate_limit_reads=RateLimit(2, 10), rate_limit_trading=RateLimit(1, 10))
    cache = CountingCache(clock=lambda: clock[0])
    return RequestLimits(cache, auth, "test.", clock=lambda: clock[0])


SESSION = Session(jti="j", user=User(id="u1", email="ada@example.com", name="Ada", created_at=0), expires_at=10**10)


async def test_a_limit_is_a_burst_then_a_steady_pace(limits, clock):
    for _ in range(2):  # reads: 2 per 10 s, both at once, then one every 5 s
        await limits.check(request(), SESSION, "token-a")
    with pytest.raises(Throttled) as refused:
        await limits.check(request(), SESSION, "token-a")
    assert refused.value.code == "rate_limited" and refused.value.retry_after == 5
    assert "try again in 5 s" in refused.value.message
    clock[0] += 5  # the next one is due: one, not a new burst
    await limits.check(request(), SESSION, "token-a")
    answered = request()
    with pytest.raises(Throttled):
        await limits.check(answered, SESSION, "token-a")
    assert (b"ratelimit", b'"reads";r=0;t=5') in answered.scope["state"][HEADERS_STATE]
    clock[0] += 10  # the whole burst is back
    await limits.check(request(), SESSION, "token-a")
    ok = request()
    await limits.check(ok, SESSION, "token-a")
    assert (b"ratelimit", b'"reads";r=0;t=10') in ok.scope["state"][HEADERS_STATE]


async def test_a_request_before_its_retry_after_is_held_then_counted(clock):
    auth = AuthSettings(rate_limit_reads=RateLimit(1, 10), rate_limit_trading=RateLimit(1, 10))
    limits = RequestLimits(CountingCache(clock=lambda: clock[0]), auth, "test.", clock=lambda: clock[0],
                           repeat_pause=0.2)
    await limits.check(request(), SESSION, "token-a")
    with pytest.raises(Throttled):
        await limits.check(request(), SESSION, "token-a")
    held = asyncio.ensure_future(limits.hold_early(request(), "token-a"))
    await asyncio.sleep(0.1)
    assert not held.done()  # held, and nothing counted meanwhile
    await held
    await asyncio.wait_for(limits.hold_early(request("POST"), "token-a"), 0.05)  # another class: not held
    await asyncio.wait_for(limits.hold_early(request(), "token-b"), 0.05)  # another credential: not held
    clock[0] += 10  # its Retry-After has passed: not held
    await asyncio.wait_for(limits.hold_early(request(), "token-a"), 0.05)
    assert limits.cache.takes == 2
