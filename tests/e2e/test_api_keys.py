"""API keys for bots: shown once, scoped (a read key writes nothing), accepted on REST and the WebSocket,
revoked at once on every server instance, unable to manage keys or the password."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator

import httpx
import pytest
import websockets
from helpers import another_server, set_price, sign_up

from cfd_cli.platform import Platform

PASSWORD = "correct horse battery"


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def new_key(api, token: str, scopes: list[str], name: str = "bot") -> dict:
    created = await api.post("/api-keys", headers=bearer(token), json={"name": name, "scopes": scopes})
    assert created.status_code == 201, created.text
    return created.json()


async def error_frame(ws) -> dict:
    while (frame := json.loads(await asyncio.wait_for(ws.recv(), 10)))["type"] != "error":
        pass
    return frame


@pytest.fixture
async def second_server(platform) -> AsyncIterator[Platform]:
    async with another_server(platform) as server:
        yield server


async def test_a_key_is_shown_once_and_a_read_key_reads_but_writes_nothing(platform, api, mailbox, email):
    token = (await sign_up(api, mailbox, email))["access_token"]
    read = await new_key(api, token, ["read"], "dashboard")
    assert read["key"].startswith("cfdk_") and read["scopes"] == ["read"]
    listed = (await api.get("/api-keys", headers=bearer(token))).json()
    assert [(k["id"], k["name"], k["scopes"]) for k in listed] == [(read["id"], "dashboard", ["read"])]
    assert all("key" not in k and read["key"] not in json.dumps(k) for k in listed)

    assert listed[0]["last_used_at"] is None  # not used yet

    as_key = bearer(read["key"])
    before = int(time.time() * 1000)
    assert (await api.get("/account", headers=as_key)).status_code == 200
    assert (await api.get("/auth/me", headers=as_key)).json()["user"]["email"] == email
    used = (await api.get("/api-keys", headers=bearer(token))).json()[0]["last_used_at"]
    assert before - 1000 <= used <= int(time.time() * 1000)

    schema = (await api.get(f"{platform.base_url}/schema/openapi.json")).json()
    writes = [(method.upper(), path) for path, item in schema["paths"].items() for method, op in item.items()
              if method in ("post", "patch", "put", "delete") and op.get("security")
              and not path.startswith("/api/v1/admin")]
    assert len(writes) >= 10, writes
    for method, path in writes:  # every writing endpoint that needs a session, with a read-only key
        url = path.removeprefix("/api/v1").replace("{position}", "0" * 8).replace("{order}", "0" * 8).replace(
            "{key}", "0" * 16)
        answer = await api.request(method, url, headers=as_key, json={})
        assert answer.status_code == 403, (method, path, answer.text)
        assert answer.json()["error"]["code"] in ("insufficient_scope", "key_not_allowed"), (method, path)
    assert (await api.get("/positions?status=open", headers=bearer(token))).json() == []  # nothing opened


async def test_a_trade_key_trades_follows_the_account_channel_and_cannot_manage_keys(platform, api, mailbox, email):
    token = (await sign_up(api, mailbox, email))["access_token"]
    trade = await new_key(api, token, ["read", "trade"])
    await set_price(platform, "SOL_USDC", "100.00", "100.00")
    async with websockets.connect(platform.ws_url) as ws:
        await ws.send(json.dumps({"op": "auth", "token": trade["key"]}))
        await ws.send(json.dumps({"op": "subscribe", "channels": ["account"]}))
        opened = await api.post("/positions", headers=bearer(trade["key"]),
                                json={"symbol": "SOL_USDC", "side": "long", "qty": "1"})
        assert opened.status_code == 201, opened.text
        while (frame := json.loads(await asyncio.wait_for(ws.recv(), 10)))["type"] != "position":
            pass
        assert frame["position"]["id"] == opened.json()["id"]
    for method, path, body in (("POST", "/api-keys", {"name": "x", "scopes": ["read"]}), ("GET", "/api-keys", None),
                               ("POST", "/auth/password/change", {"current_password": PASSWORD,
                                                                  "new_password": "violet tambourine quarry"}),
                               ("POST", "/auth/logout-all", None)):
        refused = await api.request(method, path, headers=bearer(trade["key"]), json=body)
        assert refused.status_code == 403 and refused.json()["error"]["code"] == "key_not_allowed", (path, refused.text)
    assert (await api.post("/auth/logout-all", headers=bearer(token))).status_code == 204
    assert (await api.get("/account", headers=bearer(trade["key"]))).status_code == 200  # keys outlive sessions
    wrong = trade["key"][:-4] + ("AAAA" if not trade["key"].endswith("AAAA") else "BBBB")
    refused = await api.get("/account", headers=bearer(wrong))
    assert refused.status_code == 401 and refused.json()["error"]["code"] == "invalid_key"


async def test_revoking_a_key_refuses_it_at_once_on_every_instance(platform, second_server, api, mailbox, email):
    token = (await sign_up(api, mailbox, email))["access_token"]
    key = await new_key(api, token, ["read", "trade"])
    async with httpx.AsyncClient(base_url=second_server.base_url + "/api/v1", timeout=15) as elsewhere:
        assert (await elsewhere.get("/account", headers=bearer(key["key"]))).status_code == 200  # cached there
        ws_url = (await elsewhere.get("/info")).json()["ws_url"]
        async with websockets.connect(ws_url) as ws:
            await ws.send(json.dumps({"op": "auth", "token": key["key"]}))
            await ws.send(json.dumps({"op": "subscribe", "channels": ["account"]}))
            while json.loads(await asyncio.wait_for(ws.recv(), 10))["type"] != "subscribed":
                pass
            assert (await api.delete(f"/api-keys/{key['id']}", headers=bearer(token))).status_code == 204
            refused = await elsewhere.get("/account", headers=bearer(key["key"]))  # the very next request
            assert refused.status_code == 401 and refused.json()["error"]["code"] == "key_revoked"
            assert (await error_frame(ws))["code"] == "key_revoked"
    assert (await api.get("/api-keys", headers=bearer(token))).json() == []
    again = await api.delete(f"/api-keys/{key['id']}", headers=bearer(token))
    assert again.status_code == 204  # revoking is idempotent
    assert (await api.get("/account", headers=bearer(key["key"]))).status_code == 401
    stranger = (await sign_up(api, mailbox, "stranger-" + email))["access_token"]
    other = await new_key(api, token, ["read"])
    theirs = await api.delete(f"/api-keys/{other['id']}", headers=bearer(stranger))
    assert theirs.status_code == 404 and theirs.json()["error"]["code"] == "key_not_found"


async def test_bad_key_requests_are_refused_and_change_nothing(api, mailbox, email):
    token = (await sign_up(api, mailbox, email))["access_token"]
    for body in ({"name": "", "scopes": ["read"]}, {"name": "x", "scopes": []}, {"name": "x", "scopes": ["admin"]},
                 {"name": "x" * 65, "scopes": ["read"]}, {"name": "x", "scopes": ["read"], "extra": 1}):
        refused = await api.post("/api-keys", headers=bearer(token), json=body)
        assert refused.status_code == 400, (body, refused.text)
    assert (await api.get("/api-keys", headers=bearer(token))).json() == []
