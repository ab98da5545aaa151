"""A backend goes down: clients get 503 with Retry-After, /ready names it, and everything recovers."""

from __future__ import annotations

import asyncio
import subprocess
from pathlib import Path

import httpx
from helpers import real_only

SERVICES = Path(__file__).resolve().parents[2] / "scripts" / "services.sh"


def services(*args: str) -> None:
    subprocess.run(["bash", str(SERVICES), *args], check=True, capture_output=True, timeout=60)


@real_only
async def test_redis_down_gives_503_and_recovers(platform, api, email):
    root = httpx.AsyncClient(base_url=platform.base_url, timeout=15)
    services("down", "redis")
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
        services("up", "redis")
    for _ in range(50):
        if (await root.get("/ready")).status_code == 200:
            break
        await asyncio.sleep(0.1)
    assert (await root.get("/ready")).status_code == 200
    assert (await api.post("/auth/signup", json={"email": email})).status_code == 202
    await root.aclose()
