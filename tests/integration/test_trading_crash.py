"""The dbproc is SIGKILLed during a burst of 500 opens and restarted: every acknowledged position exists
exactly once, and none is half-applied (a position without its account's consistent state)."""

from __future__ import annotations

import asyncio
import signal
import subprocess
import sys
import time
import uuid
from decimal import Decimal

import httpx
from helpers import Mailbox, child_env, real_only, sign_up

from cfd_cli.platform import Platform
from cfd_dbproc.db.tables import Accounts, LedgerEntries, Positions, Users
from cfd_poller.simulation import SIMULATION
from shared.contracts import encode
from shared.contracts.bus import PriceTick
from shared.markets import MARKETS

USERS = 10
ORDERS_PER_USER = 50


async def _ticks(server: Platform, stop: asyncio.Event) -> None:
    """A price feed: every market, every 50 ms (a starting dbproc takes orders once it has them all)."""
    topic = server.settings.bus.topic("price-updates")
    while not stop.is_set():
        now = time.time_ns() // 1000
        for market in MARKETS.values():
            bid = Decimal("0.30000") if market.symbol == "DOGE_USDC" else SIMULATION[market.symbol].price
            tick = PriceTick(symbol=market.symbol, bid=bid, ask=bid + market.price_tick, exchange_time_us=now,
                             ingest_time_us=now)
            await server.bus.publish(topic, encode(tick), key=market.symbol.encode(), wait=False)
        await asyncio.sleep(0.05)


async def _open_until_acknowledged(api: httpx.AsyncClient, auth: dict, key: str) -> str:
    order = {"symbol": "DOGE_USDC", "side": "long", "qty": "10", "leverage": 1}
    for _ in range(200):
        response = await api.post("/positions", headers={**auth, "Idempotency-Key": key}, json=order)
        if response.status_code == 201:
            return response.json()["id"]
        assert response.status_code in (503, 504), response.text
        await asyncio.sleep(0.2)
    raise AssertionError(f"order {key} never acknowledged")


@real_only
async def test_sigkill_during_500_opens(make_settings, mailbox: Mailbox, platform):
    prefix = f"crash{uuid.uuid4().hex[:6]}."
    settings = make_settings(bus={"topic_prefix": prefix, "request_timeout": 3.0})
    env = child_env(settings)

    def spawn() -> subprocess.Popen:
        return subprocess.Popen([sys.executable, "-m", "cfd_cli.main", "dbproc"], env=env,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    server = Platform(settings, ("server",))
    await server.start()
    stop_ticks = asyncio.Event()
    ticker = asyncio.ensure_future(_ticks(server, stop_ticks))
    first, second = spawn(), None
    try:
        async with httpx.AsyncClient(base_url=server.base_url + "/api/v1", timeout=20) as api:
            for _ in range(150):  # wait until the dbproc answers
                if (await api.post("/auth/signup", json={"email": "probe@example.com"})).status_code in (202, 429):
                    break
                await asyncio.sleep(0.2)
            emails = [f"crash-{uuid.uuid4().hex[:8]}@example.com" for _ in range(USERS)]
            auths = []
            for email in emails:
                body = await sign_up(api, mailbox, email)
                auths.append({"Authorization": f"Bearer {body['access_token']}"})
            burst = [asyncio.ensure_future(_open_until_acknowledged(api, auth, f"o{n}"))
                     for auth in auths for n in range(ORDERS_PER_USER)]
            while sum(task.done() for task in burst) < 100:  # noqa: ASYNC110 - polling tasks, not an event
                await asyncio.sleep(0.01)
            assert not all(task.done() for task in burst)
            first.send_signal(signal.SIGKILL)
            first.wait()
            second = spawn()
            acknowledged = await asyncio.gather(*burst)
        assert len(set(acknowledged)) == USERS * ORDERS_PER_USER  # every acknowledgement names its own position
        for email in emails:
            user_id = (await Users.select(Users.id).where(Users.email == email).first().run())["id"]
            positions = await Positions.select(Positions.id, Positions.margin).where(Positions.user_id == user_id).run()
            assert len(positions) == ORDERS_PER_USER  # exactly once each: no duplicates, none lost
            balance = (await Accounts.select(Accounts.balance).where(Accounts.user_id == user_id).first().run())
            assert balance["balance"] == Decimal("10000")  # opening books no balance change
            assert await LedgerEntries.count().where(LedgerEntries.user_id == user_id).run() == 1
        assert {str(p) for p in acknowledged} <= {str(r["id"]) for r in await Positions.select(Positions.id).run()}
    finally:
        stop_ticks.set()
        await ticker
        for process in (first, second):
            if process is not None and process.poll() is None:
                process.terminate()
                process.wait(10)
        await server.stop()
