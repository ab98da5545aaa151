"""The `account` WebSocket channel: a bot sees its own fills, marks and closes, and nobody else's, and
nothing more once its session ends (logout or a disable, on any server instance)."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator
from decimal import Decimal

import httpx
import pytest
import websockets
from helpers import another_server, set_price, sign_up, signed_in

from cfd_cli.platform import Platform


async def frames_until(ws, predicate, timeout: float = 10.0) -> dict:
    async with asyncio.timeout(timeout):
        while True:
            frame = json.loads(await ws.recv())
            if predicate(frame):
                return frame


async def test_account_channel_pushes_fills_marks_and_closes(platform, api, mailbox, email):
    auth = await signed_in(api, mailbox, email)
    token = auth["Authorization"].removeprefix("Bearer ")
    other = await signed_in(api, mailbox, f"other-{uuid.uuid4().hex[:8]}@example.com")
    await set_price(platform, "SOL_USDC", "100.00", "100.00")  # broker 99.97 / 100.03
    ws_url = (await api.get("/info")).json()["ws_url"]
    async with websockets.connect(ws_url) as ws:
        await frames_until(ws, lambda f: f["type"] == "welcome")
        await ws.send(json.dumps({"op": "subscribe", "channels": ["account"]}))
        refused = await frames_until(ws, lambda f: f["type"] == "error")
        assert refused["code"]  # account needs auth first
        await ws.send(json.dumps({"op": "auth", "token": token}))
        await frames_until(ws, lambda f: f["type"] == "authenticated")
        await ws.send(json.dumps({"op": "subscribe", "channels": ["account"]}))
        await frames_until(ws, lambda f: f["type"] == "subscribed")

        await api.post("/positions", headers=other, json={"symbol": "SOL_USDC", "side": "long", "qty": "1"})
        opened = (await api.post("/positions", headers=auth, json={"symbol": "SOL_USDC", "side": "long",
                                                                   "qty": "2", "leverage": 2})).json()
        event = await frames_until(ws, lambda f: f["type"] == "position")
        assert event["event"] == "opened" and event["position"]["id"] == opened["id"]  # its own, not the other's
        assert event["position"]["commission"] == "0.20" and event["position"]["financing"] == "0.00"

        await set_price(platform, "SOL_USDC", "110.00", "110.00")  # bid 109.96
        mark = await frames_until(ws, lambda f: f["type"] == "account" and f["event"] == "mark"
                                  and f["marks"] and f["marks"][0]["price"] == "109.96")
        assert Decimal(mark["marks"][0]["unrealized_pnl"]) == (Decimal("109.96") - Decimal("100.03")) * 2
        # the balance less the opening's commission (2 × 100.03 × 0.1 %), and the PnL
        assert Decimal(mark["account"]["equity"]) == Decimal("10000") - Decimal("0.20") + Decimal("19.86")

        await api.post(f"/positions/{opened['id']}/close", headers=auth)
        closed = await frames_until(ws, lambda f: f["type"] == "position" and f["event"] == "closed")
        assert closed["position"]["close_reason"] == "manual"
        assert Decimal(closed["position"]["realized_pnl"]) == Decimal("19.86")
        assert closed["position"]["commission"] == "0.42"  # and 2 × 109.96 × 0.1 % on closing


@pytest.fixture
async def second_server(platform) -> AsyncIterator[Platform]:
    async with another_server(platform) as server:
        yield server


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def on_account(ws_url: str, token: str) -> websockets.ClientConnection:
    ws = await websockets.connect(ws_url)
    await frames_until(ws, lambda f: f["type"] == "welcome")
    await ws.send(json.dumps({"op": "auth", "token": token}))
    await frames_until(ws, lambda f: f["type"] == "authenticated")
    await ws.send(json.dumps({"op": "subscribe", "channels": ["account"]}))
    await frames_until(ws, lambda f: f["type"] == "subscribed")
    return ws


async def nothing_of_the_account_before_pong(ws) -> None:
    await ws.send(json.dumps({"op": "ping", "id": "barrier"}))
    while (frame := await frames_until(ws, lambda f: True))["type"] != "pong":
        assert frame["type"] not in ("account", "position"), frame


async def test_logout_on_one_server_ends_the_account_feed_on_another(platform, second_server, api, mailbox,
                                                                     email):
    token = (await sign_up(api, mailbox, email))["access_token"]
    signin = await api.post("/auth/signin", json={"email": email, "password": "correct horse battery"})
    other_token = signin.json()["access_token"]  # the same user's second session
    await set_price(platform, "SOL_USDC", "100.00", "100.00")
    async with httpx.AsyncClient(base_url=second_server.base_url + "/api/v1", timeout=15) as elsewhere:
        ws_url = (await elsewhere.get("/info")).json()["ws_url"]
    assert ws_url != (await api.get("/info")).json()["ws_url"]  # really the other instance's feed
    ended, control = await on_account(ws_url, token), await on_account(ws_url, other_token)
    try:
        assert (await api.post("/auth/logout", headers=bearer(token))).status_code == 204
        frame = await frames_until(ended, lambda f: f["type"] == "error")
        assert frame["code"] == "session_ended"

        opened = (await api.post("/positions", headers=bearer(other_token),
                                 json={"symbol": "SOL_USDC", "side": "long", "qty": "1"})).json()
        event = await frames_until(control, lambda f: f["type"] == "position")
        assert event["event"] == "opened" and event["position"]["id"] == opened["id"]
        await nothing_of_the_account_before_pong(ended)  # the same fan-out reached `control` first
        await ended.send(json.dumps({"op": "auth", "token": token}))
        assert (await frames_until(ended, lambda f: f["type"] == "error"))["code"] == "session_expired"
    finally:
        await ended.close()
        await control.close()


async def test_disabling_a_user_ends_their_account_feed(platform, api, mailbox, email):
    token = (await sign_up(api, mailbox, email))["access_token"]
    user_id = (await api.get("/auth/me", headers=bearer(token))).json()["user"]["id"]
    ws_url = (await api.get("/info")).json()["ws_url"]
    operator = bearer(platform.app.state.operator_token)
    ws = await on_account(ws_url, token)
    try:
        deposit = await api.post(f"/admin/users/{user_id}/deposit", headers=operator, json={"amount": "5"})
        assert deposit.status_code == 200
        await frames_until(ws, lambda f: f["type"] == "account" and f["event"] == "snapshot")  # it was live

        assert (await api.post(f"/admin/users/{user_id}/disable", headers=operator)).status_code == 200
        frame = await frames_until(ws, lambda f: f["type"] == "error")
        assert frame["code"] == "account_disabled" and frame["message"]
        assert (await api.post(f"/admin/users/{user_id}/deposit", headers=operator,
                               json={"amount": "5"})).status_code == 200
        await nothing_of_the_account_before_pong(ws)
        await ws.send(json.dumps({"op": "subscribe", "channels": ["account"]}))
        assert (await frames_until(ws, lambda f: f["type"] == "error"))["code"] == "auth_required"
        await ws.send(json.dumps({"op": "auth", "token": token}))
        assert (await frames_until(ws, lambda f: f["type"] == "error"))["code"] == "account_disabled"
    finally:
        await ws.close()
