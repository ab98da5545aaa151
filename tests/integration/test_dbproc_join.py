"""A starting dbproc takes requests only once it has a live quote of every market, or after a bounded wait.

Before, a dbproc joining the group answered its first orders `503 market_unavailable`: it had not heard a tick
yet. Each test runs a dbproc of its own, on a bus of its own (the in-process bus, or Kafka topics with a prefix
of their own), against the session's database.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import AsyncIterator
from decimal import Decimal

import pytest
from helpers import signed_in

from cfd_dbproc.service import DbProc
from cfd_poller.simulation import SIMULATION
from shared import operations as ops
from shared.bus import Bus, Topics, create_bus
from shared.bus.rpc import RequestClient
from shared.contracts import encode
from shared.contracts.bus import OpenCommand, PriceTick
from shared.contracts.rest import Position, PositionCreate
from shared.markets import MARKETS


class Rig:
    def __init__(self, bus: Bus, dbproc: DbProc, rpc: RequestClient) -> None:
        self.bus, self.dbproc, self.rpc = bus, dbproc, rpc

    async def prices(self, symbols: list[str]) -> None:
        now = time.time_ns() // 1000
        for symbol in symbols:
            price = SIMULATION[symbol].price
            tick = PriceTick(symbol=symbol, bid=price, ask=price, exchange_time_us=now, ingest_time_us=now)
            await self.bus.publish(self.dbproc.topics.prices, encode(tick), key=symbol.encode())

    async def open(self, user_id: str, symbol: str, qty: str) -> Position:
        order = PositionCreate(symbol=symbol, side="long", qty=Decimal(qty), leverage=1)
        return await self.rpc.call(ops.OPEN, OpenCommand(user_id=user_id, order=order), key=user_id)


@pytest.fixture
async def start_dbproc(make_settings, platform) -> AsyncIterator:
    started: list[tuple[Bus, DbProc, RequestClient]] = []

    async def start(wait: float) -> Rig:
        settings = make_settings(bus={"topic_prefix": f"join{uuid.uuid4().hex[:8]}."},
                                 trading={"quote_wait_seconds": wait})
        bus = create_bus(settings.bus, settings.instance_id)
        await bus.start()
        dbproc = DbProc(settings, bus, platform.db, platform.cache)
        await dbproc.start()
        topics = Topics(settings.bus)
        rpc = RequestClient(bus, topics.routes(), topics.replies, f"join-{uuid.uuid4().hex[:6]}", timeout=wait + 15)
        await rpc.start()
        started.append((bus, dbproc, rpc))
        return Rig(bus, dbproc, rpc)

    yield start
    for bus, dbproc, rpc in started:
        await rpc.stop()
        await dbproc.stop()
        await bus.stop()


async def _user(api, mailbox, email) -> str:
    auth = await signed_in(api, mailbox, email)
    return (await api.get("/auth/me", headers=auth)).json()["user"]["id"]


async def test_an_order_sent_as_a_dbproc_starts_waits_for_the_prices_instead_of_failing(start_dbproc, api, mailbox,
                                                                                       email, caplog):
    user_id = await _user(api, mailbox, email)
    caplog.set_level(logging.INFO, logger="cfd_dbproc.service")
    rig = await start_dbproc(wait=20)
    order = asyncio.ensure_future(rig.open(user_id, "SOL_USDC", "0.5"))  # sent before any price is heard
    await asyncio.sleep(0.5)
    await rig.prices(list(MARKETS))
    position = await order  # before, 503 market_unavailable: the dbproc took it before it had heard a price
    assert position.symbol == "SOL_USDC" and position.status == "open"
    assert rig.dbproc.joined.is_set()
    logged = [r.getMessage() for r in caplog.records if r.name == "cfd_dbproc.service"]
    assert any("waits up to 20 s for a live quote of every market" in m for m in logged), logged
    assert any("every market has a live quote after" in m for m in logged), logged


async def test_with_the_feed_down_a_dbproc_takes_requests_after_the_bound_and_says_so(start_dbproc, api, mailbox,
                                                                                    email, caplog):
    user_id = await _user(api, mailbox, email)
    caplog.set_level(logging.INFO, logger="cfd_dbproc.service")
    rig = await start_dbproc(wait=1.5)
    await rig.prices(["SOL_USDC"])  # one market only: the others have no feed
    started = time.monotonic()
    await asyncio.wait_for(rig.dbproc.joined.wait(), timeout=15)
    assert time.monotonic() - started >= 1.0
    warnings = [r.getMessage() for r in caplog.records
                if r.name == "cfd_dbproc.service" and r.levelno == logging.WARNING]
    assert len(warnings) == 1, warnings
    assert "no live quote of BTC_USDC, ETH_USDC, BNB_USDC, DOGE_USDC after 1.5 s" in warnings[0]
    assert "taking requests anyway" in warnings[0]
    position = await rig.open(user_id, "SOL_USDC", "0.5")  # a market with a price trades
    assert position.status == "open"
