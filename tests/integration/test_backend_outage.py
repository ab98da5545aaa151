"""A backend goes down: clients get 503 with Retry-After, /ready names it, and everything recovers."""

from __future__ import annotations

import asyncio

import httpx
from helpers import Services, real_only


@real_only
async def test_redis_down_gives_503_and_recovers(platform, api, email):
    root = httpx.AsyncClient(base_url=platform.base_url, timeout=15)
    redis = Services(redis_url=platform.settings.cache.url)  # the Redis this platform uses, wherever it listens
    redis.check_owned("redis")
    await asyncio.to_thread(redis.down, "redis")
    try:
        signup = await api.post("/auth/signup", json={"email": email})
        assert signup.status_code == 503, signup.text
        assert signup.headers["retry-after"].isdigit()
        assert signup.json()["error"]["code"] == "backend_unavailable"
        assert signup.json()["error"]["details"]["backend"] == "cache"

        signin = await api.post("/auth/signin", json={"email": email, "password": "whatever123"})
        assert signin.status_code == 503

        ready = await root.get("/ready")
        assert ready.status_code == 503 and ready.headers["retry-after"]
        backends = ready.json()["backends"]
        assert backends["cache"]["ok"] is False and backends["bus"]["ok"] and backends["database"]["ok"]
    finally:
        await asyncio.to_thread(redis.up, "redis")
    for _ in range(50):
        if (await root.get("/ready")).status_code == 200:
            break
        await asyncio.sleep(0.1)
    assert (await root.get("/ready")).status_code == 200
    assert (await api.post("/auth/signup", json={"email": email})).status_code == 202
    await root.aclose()
