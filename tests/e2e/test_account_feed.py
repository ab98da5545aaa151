"""The `account` WebSocket channel: a bot sees its own fills, marks and closes, and nobody else's."""

from __future__ import annotations

import asyncio
import json
import uuid
from decimal import Decimal

import websockets
from helpers import set_price, signed_in


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

        await set_price(platform, "SOL_USDC", "110.00", "110.00")  # bid 109.96
        mark = await frames_until(ws, lambda f: f["type"] == "account" and f["event"] == "mark"
                                  and f["marks"] and f["marks"][0]["price"] == "109.96")
        assert Decimal(mark["marks"][0]["unrealized_pnl"]) == (Decimal("109.96") - Decimal("100.03")) * 2
        assert Decimal(mark["account"]["equity"]) == Decimal("10000") + Decimal("19.86")

        await api.post(f"/positions/{opened['id']}/close", headers=auth)
        closed = await frames_until(ws, lambda f: f["type"] == "position" and f["event"] == "closed")
        assert closed["position"]["close_reason"] == "manual"
        assert Decimal(closed["position"]["realized_pnl"]) == Decimal("19.86")
