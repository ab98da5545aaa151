"""More concurrent requests than the server has Redis connections: they wait for one, none fails.

Before, the pool refused a connection beyond its cap at once ("Too many connections"), and with ~300 concurrent
requests 40 were answered 503 while Redis was healthy. Real Redis only: the in-process cache has no pool.
"""

from __future__ import annotations

import asyncio

import httpx
from helpers import real_only, signed_in

from cfd_cli.platform import Platform


@real_only
async def test_a_burst_bigger_than_the_redis_pool_waits_for_connections_and_all_succeed(make_settings, platform, api,
                                                                                        mailbox, email):
    auth = await signed_in(api, mailbox, email)
    # A second server sharing the platform's Redis and token secret, with a pool of 4 connections.
    settings = make_settings(cache={"max_connections": 4, "pool_timeout": 20},
                             auth={"jwt_secret": platform.settings.auth.jwt_secret})
    server = Platform(settings, ("server",))
    await server.start()
    try:
        limits = httpx.Limits(max_connections=300, max_keepalive_connections=300)
        async with httpx.AsyncClient(base_url=server.base_url + "/api/v1", timeout=60, limits=limits) as client:
            # GET /auth/me reads the session and the user's gate from Redis, nothing else
            responses = await asyncio.gather(*(client.get("/auth/me", headers=auth) for _ in range(300)))
    finally:
        await server.stop()
    statuses = [r.status_code for r in responses]
    assert statuses.count(200) == 300, {s: statuses.count(s) for s in set(statuses)}
