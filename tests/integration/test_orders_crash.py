"""The dbproc is SIGKILLed while a tick fills a burst of pending orders, and restarted: every order fills
exactly once (one position each, none twice, none lost), whether it was killed before its fill was
triggered, between the trigger and the commit, or after; the orders still working are loaded again and fill at
the next tick."""

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
from cfd_dbproc.db.tables import Accounts, Orders, Positions, Users
from cfd_poller.simulation import SIMULATION
from shared.contracts import encode
from shared.contracts.bus import PriceTick
from shared.markets import MARKETS

USERS = 8
ORDERS_PER_USER = 25
ABOVE = Decimal("0.31000")  # DOGE's exchange price before the burst: no buy limit at 0.30000 triggers
BELOW = Decimal("0.29000")  # and after: every one does


class _Ticks:
    """Every market every 50 ms; DOGE at `self.doge`."""

    def __init__(self, server: Platform) -> None:
        self.server = server
        self.doge = ABOVE
        self.stopping = asyncio.Event()

    async def run(self) -> None:
        topic = self.server.settings.bus.topic("price-updates")
        while not self.stopping.is_set():
            now = time.time_ns() // 1000
            for market in MARKETS.values():
                bid = self.doge if market.symbol == "DOGE_USDC" else SIMULATION[market.symbol].price
                tick = PriceTick(symbol=market.symbol, bid=bid, ask=bid + market.price_tick, exchange_time_us=now,
                                 ingest_time_us=now)
                await self.server.bus.publish(topic, encode(tick), key=market.symbol.encode(), wait=False)
            await asyncio.sleep(0.05)


async def _place(api: httpx.AsyncClient, auth: dict, key: str) -> str:
    order = {"symbol": "DOGE_USDC", "side": "long", "type": "limit", "qty": "10", "price": "0.30000",
             "leverage": 1}
    for _ in range(100):
        response = await api.post("/orders", headers={**auth, "Idempotency-Key": key}, json=order)
        if response.status_code == 201:
            return response.json()["id"]
        assert response.status_code in (503, 504), response.text
        await asyncio.sleep(0.2)
    raise AssertionError(f"order {key} never placed")


@real_only
async def test_sigkill_while_orders_fill_fills_each_exactly_once(make_settings, mailbox: Mailbox, platform):
    settings = make_settings(bus={"topic_prefix": f"ordercrash{uuid.uuid4().hex[:6]}.", "request_timeout": 3.0})
    env = child_env(settings)

    def spawn() -> subprocess.Popen:
        return subprocess.Popen([sys.executable, "-m", "cfd_cli.main", "dbproc"], env=env,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    server = Platform(settings, ("server",))
    await server.start()
    ticks = _Ticks(server)
    ticking = asyncio.ensure_future(ticks.run())
    first, second = spawn(), None
    try:
        async with httpx.AsyncClient(base_url=server.base_url + "/api/v1", timeout=20) as api:
            for _ in range(150):  # wait until the dbproc answers
                if (await api.post("/auth/signup", json={"email": "probe@example.com"})).status_code in (202, 429):
                    break
                await asyncio.sleep(0.2)
            emails = [f"ordercrash-{uuid.uuid4().hex[:8]}@example.com" for _ in range(USERS)]
            auths = [{"Authorization": f"Bearer {(await sign_up(api, mailbox, e))['access_token']}"} for e in emails]
            placed = await asyncio.gather(*(_place(api, auth, f"p{n}") for auth in auths
                                            for n in range(ORDERS_PER_USER)))
            users = [(await Users.select(Users.id).where(Users.email == e).first().run())["id"] for e in emails]

            ticks.doge = BELOW  # every order triggers
            while await Orders.count().where(Orders.status == "filled").run() < len(placed) // 5:  # noqa: ASYNC110
                await asyncio.sleep(0.005)
            first.send_signal(signal.SIGKILL)
            first.wait()
            filled_at_kill = await Orders.count().where(Orders.status == "filled").run()
            assert filled_at_kill < len(placed), "the burst was over before the kill; nothing was tested"
            second = spawn()  # loads the working orders, takes the fills sent before the kill, and the next tick

            deadline = time.monotonic() + 90
            while await Orders.count().where(Orders.user_id.is_in(users) & (Orders.status == "working")).run():
                assert time.monotonic() < deadline, "orders still working after the restart"
                await asyncio.sleep(0.2)
        rows = await Orders.select().where(Orders.user_id.is_in(users)).run()
        assert {str(r["id"]) for r in rows} == set(placed)
        assert {r["status"] for r in rows} == {"filled"}
        positions = await Positions.select(Positions.order_id, Positions.user_id).where(
            Positions.user_id.is_in(users)).run()
        assert len(positions) == len(placed)  # one position per order: none twice, none lost
        assert {str(p["order_id"]) for p in positions} == set(placed)
        assert {str(r["position_id"]) for r in rows} <= {str(r["id"]) for r in await Positions.select(
            Positions.id).where(Positions.user_id.is_in(users)).run()}
        for user_id in users:  # opening books nothing: the balance is the deposit
            balance = await Accounts.select(Accounts.balance).where(Accounts.user_id == user_id).first().run()
            assert balance["balance"] == Decimal("10000")
    finally:
        ticks.stopping.set()
        await ticking
        for process in (first, second):
            if process is not None and process.poll() is None:
                process.terminate()
                process.wait(10)
        await server.stop()
