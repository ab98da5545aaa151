"""Request limits per user or API key and per class, counted alike on every server instance: the
`RateLimit-Policy` / `RateLimit` headers on each answer, 429 `rate_limited` with `Retry-After` over the limit,
nothing done by a refused request, and another user (or key) untouched."""

from __future__ import annotations

import asyncio
import contextlib
import json

import httpx
import pytest
import websockets
from helpers import another_server, set_price, sign_up

from cfd_client.errors import Throttled
from shared.settings import RateLimit

TIGHT = {"rate_limit_reads": RateLimit(6, 30), "rate_limit_trading": RateLimit(3, 30),
         "rate_limit_subscribe": RateLimit(2, 30)}


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


@contextlib.asynccontextmanager
async def two_tight_servers(platform):
    async with another_server(platform, auth=TIGHT) as one, another_server(platform, auth=TIGHT) as two:
        async with httpx.AsyncClient(base_url=one.base_url + "/api/v1", timeout=15) as a, \
                httpx.AsyncClient(base_url=two.base_url + "/api/v1", timeout=15) as b:
            yield a, b


async def test_reads_are_counted_across_instances_and_answered_with_the_headers(platform, api, mailbox, email):
    mine = (await sign_up(api, mailbox, email))["access_token"]
    theirs = (await sign_up(api, mailbox, "other-" + email))["access_token"]
    async with two_tight_servers(platform) as (a, b):
        answers = [await (a if n % 2 else b).get("/account", headers=bearer(mine)) for n in range(6)]
        assert [r.status_code for r in answers] == [200] * 6
        assert answers[0].headers["ratelimit-policy"] == '"reads";q=6;w=30'
        assert [r.headers["ratelimit"].split(";")[1] for r in answers] == [f"r={n}" for n in (5, 4, 3, 2, 1, 0)]
        refused = await a.get("/positions", headers=bearer(mine))  # the seventh, on either instance
        assert refused.status_code == 429 and refused.json()["error"]["code"] == "rate_limited"
        assert 1 <= int(refused.headers["retry-after"]) <= 30
        assert refused.headers["ratelimit"].startswith('"reads";r=0;t=')
        assert (await b.get("/account", headers=bearer(theirs))).status_code == 200  # another user: untouched
        key = (await api.post("/api-keys", headers=bearer(mine), json={"name": "bot", "scopes": ["read"]})).json()
        assert (await b.get("/account", headers=bearer(key["key"]))).status_code == 200  # a key has its own


async def test_a_refused_write_does_nothing(platform, api, mailbox, email):
    token = (await sign_up(api, mailbox, email))["access_token"]
    await set_price(platform, "DOGE_USDC", "0.20000", "0.20000")
    order = {"symbol": "DOGE_USDC", "side": "long", "qty": "10", "leverage": 1}
    async with two_tight_servers(platform) as (a, b):
        opened = [await (a if n % 2 else b).post("/positions", headers=bearer(token), json=order) for n in range(4)]
        assert [r.status_code for r in opened] == [201, 201, 201, 429]
        assert opened[3].headers["ratelimit-policy"] == '"trading";q=3;w=30'
    positions = (await api.get("/positions?status=open", headers=bearer(token))).json()
    assert len(positions) == 3


async def test_websocket_subscribes_are_limited_per_user_and_the_connection_stays(platform, api, mailbox, email):
    token = (await sign_up(api, mailbox, email))["access_token"]
    async with two_tight_servers(platform) as (a, _):
        ws_url = (await a.get("/info")).json()["ws_url"]
        async with websockets.connect(ws_url) as ws:
            await ws.send(json.dumps({"op": "auth", "token": token}))
            for channel in ("prices.SOL_USDC", "prices.BTC_USDC", "prices.ETH_USDC"):
                await ws.send(json.dumps({"op": "subscribe", "channels": [channel]}))
            frames = []
            while len([f for f in frames if f["type"] in ("subscribed", "error")]) < 3:
                frames.append(json.loads(await asyncio.wait_for(ws.recv(), 10)))
            answers = [f for f in frames if f["type"] in ("subscribed", "error")]
            assert [f["type"] for f in answers] == ["subscribed", "subscribed", "error"]
            assert answers[2]["code"] == "rate_limited"
            await ws.send(json.dumps({"op": "ping", "id": 7}))
            while (frame := json.loads(await asyncio.wait_for(ws.recv(), 10)))["type"] != "pong":
                pass
            assert frame["id"] == 7  # still connected


async def test_the_client_library_paces_itself_by_the_headers(platform, api, mailbox, email):
    """A bot on `cfd_client` keeps to the limit: instead of errors, its requests wait for the window."""
    import time

    from cfd_client.api import ApiClient

    token = (await sign_up(api, mailbox, email))["access_token"]
    async with another_server(platform, auth={"rate_limit_reads": RateLimit(3, 2)}) as server:
        async with ApiClient(server.base_url, token=token) as client:
            started = time.monotonic()
            for _ in range(7):  # three windows' worth
                await client.account()
            assert time.monotonic() - started >= 2.0  # it waited for the windows to reset, and nothing failed
        async with ApiClient(server.base_url, token=token, pace=False) as impatient:
            with pytest.raises(Throttled) as refused:
                for _ in range(7):
                    await impatient.account()
            assert refused.value.code == "rate_limited"
