"""A market goes quiet: the account is valued at its last quote everywhere, and nothing trades on it."""

from __future__ import annotations

import asyncio
import json
from decimal import Decimal

import httpx
import pytest
import websockets
from helpers import REAL, Mailbox, set_price, signed_in

from cfd_cli.platform import Platform

pytestmark = pytest.mark.skipif(REAL, reason="its own embedded platform, with a short staleness limit")


async def test_a_stale_market_keeps_its_last_valuation_in_rest_and_on_the_feed(make_settings, tmp_path):
    settings = make_settings(data_dir=tmp_path, database={"url": f"sqlite:///{tmp_path / 'cfd.sqlite3'}"},
                             prices={"stale_after_seconds": 0.5})
    platform = Platform(settings, ("dbproc", "server"), migrate_db=True)
    await platform.start()
    try:
        async with httpx.AsyncClient(base_url=platform.base_url + "/api/v1") as api:
            auth = await signed_in(api, Mailbox(outbox=tmp_path / "outbox"), "quiet@example.com")
            await set_price(platform, "SOL_USDC", "100.00", "100.00")  # broker 99.97 / 100.03
            opened = await api.post("/positions", headers=auth, json={"symbol": "SOL_USDC", "side": "long",
                                                                      "qty": "10"})
            assert opened.status_code == 201, opened.text
            await set_price(platform, "SOL_USDC", "90.00", "90.00")  # bid 89.97: 10 × (89.97 − 100.03)
            await asyncio.sleep(0.8)  # no more ticks: SOL_USDC is stale now

            account = (await api.get("/account", headers=auth)).json()
            assert Decimal(account["unrealized_pnl"]) == Decimal("-100.60")
            async with websockets.connect(platform.ws_url) as ws:
                await ws.send(json.dumps({"op": "auth", "token": auth["Authorization"].removeprefix("Bearer ")}))
                await ws.send(json.dumps({"op": "subscribe", "channels": ["account"]}))
                async with asyncio.timeout(5):
                    while (frame := json.loads(await ws.recv())).get("event") != "mark":
                        pass
            assert frame["account"] == account

            refused = await api.post("/positions", headers=auth, json={"symbol": "SOL_USDC", "side": "long",
                                                                       "qty": "1"})
            assert refused.status_code == 503 and refused.json()["error"]["code"] == "market_unavailable"
    finally:
        await platform.stop()
