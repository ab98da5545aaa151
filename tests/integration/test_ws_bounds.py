"""The WebSocket hub forgets a connection entirely when it closes, however many come and go."""

from __future__ import annotations

import asyncio
import json
import time
import uuid

from websockets.asyncio.client import connect

from cfd_server.auth.session import Session
from cfd_server.ws.hub import Hub
from cfd_server.ws.server import WsServer
from shared.contracts.rest import User


class NoSnapshots:
    def price(self, symbol: str) -> bytes | None:
        return None

    def candle(self, symbol: str, interval: str) -> bytes | None:
        return None


async def authenticate(token: str) -> Session:
    return Session(jti=uuid.uuid4().hex, user=User(id=token, email=f"{token}@example.com", name=token, created_at=0),
                   expires_at=int(time.time() + 3600), issued_ms=time.time_ns() // 1_000_000)


async def test_a_thousand_connections_come_and_go_and_the_hub_holds_nothing_of_them():
    hub = Hub()
    server = WsServer(hub, NoSnapshots(), host="127.0.0.1", port=0, authenticate=authenticate)
    await server.start()
    url = f"ws://127.0.0.1:{server.port}/ws"

    async def visit(i: int) -> None:
        async with connect(url) as ws:
            await ws.recv()  # welcome
            await ws.send(json.dumps({"op": "auth", "token": f"user-{i % 50}"}))
            await ws.send(json.dumps({"op": "subscribe",
                                      "channels": ["prices.*", "candles.1m.BTC_USDC", "account"]}))
            for _ in range(2):
                await ws.recv()  # authenticated, subscribed
            if i % 2:  # half of them end abruptly, without a close handshake
                ws.transport.abort()

    try:
        for batch in range(20):
            await asyncio.gather(*(visit(batch * 50 + i) for i in range(50)))
            hub.publish_price("BTC_USDC", b'{"type":"price"}')  # the hub keeps working under the churn
        for _ in range(200):
            if not hub.clients:
                break
            await asyncio.sleep(0.01)
        assert hub.stats.connections == 1000
        assert hub.footprint() == dict.fromkeys(hub.footprint(), 0)
    finally:
        await server.stop()
