"""Overnight financing and market settings across rollovers and restarts: a position pays each rollover it was
open at exactly once, whether the platform was up at that moment or down (then it pays at the next start),
and never again after another restart; an operator's change to a market outlives restarts too.

The platform here has a clock of its own (the dbproc's, `Platform(clock=...)`), moved across rollovers by the
test, and a database of its own, so no other test's positions are financed by it.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import AsyncIterator
from decimal import Decimal

import httpx
import pytest
from helpers import REAL, Mailbox, postgres_database, set_price, signed_in

from cfd_cli.platform import Platform
from shared.costs import last_rollover, next_rollover
from shared.settings import Settings

D = Decimal


class Clock:
    def __init__(self) -> None:
        self.now = time.time_ns() // 1_000_000

    def __call__(self) -> int:
        return self.now


@pytest.fixture
async def own(make_settings, tmp_path, mailbox) -> AsyncIterator[tuple[Settings, Mailbox]]:
    """Settings for a platform with a database and topics of its own, and where its mail arrives."""
    if not REAL:
        yield make_settings(data_dir=tmp_path), Mailbox(outbox=tmp_path / "outbox")
        return
    base = make_settings()
    name = f"cfd_fin_{uuid.uuid4().hex[:10]}"
    url = await postgres_database(base.database.url, name)
    try:
        yield make_settings(data_dir=tmp_path, database={"url": url},
                            bus={"topic_prefix": f"fin{uuid.uuid4().hex[:6]}."}), mailbox
    finally:
        await postgres_database(base.database.url, name, drop=True)


@contextlib.asynccontextmanager
async def running(settings: Settings, clock: Clock) -> AsyncIterator[tuple[Platform, httpx.AsyncClient]]:
    platform = Platform(settings, ("dbproc", "server"), migrate_db=True, clock=clock)
    await platform.start()
    try:
        async with httpx.AsyncClient(base_url=platform.base_url + "/api/v1", timeout=15) as api:
            yield platform, api
    finally:
        await platform.stop()


async def sign_in(api: httpx.AsyncClient, email: str) -> dict[str, str]:
    """Sign in again on a restarted platform (the in-process cache held the sessions)."""
    response = await api.post("/auth/signin", json={"email": email, "password": "correct horse battery"})
    assert response.status_code == 200, response.text
    return {"Authorization": f"Bearer {response.json()['access_token']}"}


async def financing(api: httpx.AsyncClient, auth: dict, count: int) -> dict[str, list[str]]:
    """The financing entries of the trader by position, once there are `count` of them (within 10 s)."""
    async with asyncio.timeout(10):
        while True:
            ledger = (await api.get("/ledger", headers=auth)).json()
            entries = [e for e in ledger if e["kind"] == "financing"]
            if len(entries) >= count:
                found: dict[str, list[str]] = {}
                for e in entries:
                    found.setdefault(e["reference"], []).append(e["amount"])
                return found
            await asyncio.sleep(0.05)


async def test_each_rollover_is_paid_once_whether_the_platform_was_up_or_down(own):
    settings, mailbox = own
    clock = Clock()
    async with running(settings, clock) as (platform, api):
        email = f"carry-{uuid.uuid4().hex[:8]}@example.com"
        auth = await signed_in(api, mailbox, email)
        await set_price(platform, "ETH_USDC", "3000.00", "3000.00")  # broker 2999.25 / 3000.75, mid 3000.00
        long = (await api.post("/positions", headers=auth, json={"symbol": "ETH_USDC", "side": "long", "qty": "2",
                                                                 "leverage": 10})).json()
        short = (await api.post("/positions", headers=auth, json={"symbol": "ETH_USDC", "side": "short", "qty": "1",
                                                                  "leverage": 10})).json()
        assert (long["commission"], short["commission"]) == ("3.00", "1.50")
        admin = {"Authorization": f"Bearer {platform.app.state.operator_token}"}
        assert (await api.patch("/admin/markets/DOGE_USDC", headers=admin,
                                json={"status": "close_only", "financing_long_rate": "0.3"})).status_code == 200
        assert await financing(api, auth, 0) == {}  # no rollover yet: nothing

        clock.now = next_rollover(clock.now, 0) + 60_000  # a minute after midnight UTC
        platform.dbproc.financing.wake()  # the job's timer, which would fire at the rollover
        paid = await financing(api, auth, 2)
        assert paid == {long["id"]: ["-3.62"], short["id"]: ["0.41"]}  # 6000 × 22 % / 365; 3000 × −5 % / 365
        positions = {p["id"]: p for p in (await api.get("/positions", headers=auth)).json()}
        assert (positions[long["id"]]["financing"], positions[short["id"]]["financing"]) == ("3.62", "-0.41")

    # Down over two rollovers: the next start charges both, once each (at the entry price: the restarted
    # dbproc has heard no price yet).
    clock.now += 2 * 86_400_000
    async with running(settings, clock) as (platform, api):
        auth = await sign_in(api, email)
        paid = await financing(api, auth, 6)
        assert len(paid[long["id"]]) == len(paid[short["id"]]) == 3
        positions = {p["id"]: p for p in (await api.get("/positions", headers=auth)).json()}
        # 3.616 on the mid, then 2 × 3.617 on the entry price 3000.75: 10.851 → 10.85 (what rounding left is carried)
        assert positions[long["id"]]["financing"] == "10.85"
        assert positions[short["id"]]["financing"] == "-1.23"  # 0.411 + 2 × 0.411 credited
        await asyncio.wait_for(platform.app.state.market.terms.loaded.wait(), 10)
        doge = next(m for m in (await api.get("/markets")).json() if m["symbol"] == "DOGE_USDC")
        assert (doge["status"], doge["financing_long_rate"]) == ("close_only", "0.3")  # the change outlived it

    # Restarted again with no rollover since: nothing is charged twice.
    async with running(settings, clock) as (platform, api):
        auth = await sign_in(api, email)
        async with asyncio.timeout(10):
            while platform.dbproc.financing.done_through < last_rollover(clock.now, 0):  # noqa: ASYNC110
                await asyncio.sleep(0.05)  # the job ran for the partitions it was given
        await asyncio.sleep(0.3)
        assert sum(len(v) for v in (await financing(api, auth, 6)).values()) == 6
        await set_price(platform, "ETH_USDC", "3000.00", "3000.00")
        closed = (await api.post(f"/positions/{long['id']}/close", headers=auth)).json()
        assert closed["financing"] == "10.85"  # the close settled nothing more: no rollover was owed
        ledger = (await api.get("/ledger", headers=auth)).json()
        account = (await api.get("/account", headers=auth)).json()
        assert sum(D(e["amount"]) for e in ledger) == D(account["balance"])
