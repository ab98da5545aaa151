"""One user's commands are never applied by two dbprocs at once, even while the consumer group rebalances.

Two defences, each tested on its own (DESIGN.md, "Money rules"):
- the bus hands a partition over cleanly: the old owner stops before the next record, commits the one in hand,
  and the new owner starts right after it (a Kafka rebalance listener; the in-process bus does the same);
- the engine locks the user's account row for each command, so two engines that do run one user's commands
  at once take turns and no balance update is lost.
"""

from __future__ import annotations

import asyncio
import itertools
import time
import uuid
from decimal import Decimal

from helpers import set_price, signed_in

from cfd_dbproc.trading.engine import TradingEngine
from cfd_dbproc.trading.store import TradingStore
from shared.bus import Message, create_bus
from shared.contracts.bus import CloseCommand


async def _eventually(check, timeout: float, what: str) -> None:
    end = asyncio.get_running_loop().time() + timeout
    while not check():
        if asyncio.get_running_loop().time() > end:
            raise AssertionError(f"not reached in {timeout} s: {what}")
        await asyncio.sleep(0.02)


async def test_a_partition_taken_away_by_a_rebalance_is_not_handled_by_its_old_owner(make_settings):
    settings = make_settings()
    bus = create_bus(settings.bus, settings.instance_id)
    await bus.start()
    topic = settings.bus.topic(f"fence-{uuid.uuid4().hex[:8]}")
    group = settings.bus.topic(f"fence-{uuid.uuid4().hex[:8]}")
    await bus.ensure_topics([topic])
    sent = 120
    for n in range(sent):
        await bus.publish(topic, str(n).encode(), key=f"user-{n % 12}".encode())
    handled: list[tuple[str, int, int, float, float | None]] = []  # member, partition, offset, start, end

    def handler(member: str):
        async def handle(message: Message) -> None:
            handled.append((member, message.partition, message.offset, time.monotonic(), None))
            index = len(handled) - 1
            await asyncio.sleep(0.05)
            handled[index] = (*handled[index][:4], time.monotonic())

        return handle

    first = await bus.subscribe([topic], handler("first"), group=group)
    second = None
    try:
        await _eventually(lambda: len(handled) >= 6, 30, "the first member handles some messages")
        second = await bus.subscribe([topic], handler("second"), group=group)  # the group rebalances
        await _eventually(lambda: len({(p, o) for _, p, o, _, end in handled if end is not None}) >= sent, 60,
                          "every message handled")
        await asyncio.sleep(0.5)  # room for a duplicate to show up
    finally:
        for subscription in (second, first):
            if subscription is not None:
                await subscription.stop()
        await bus.stop()

    assert all(end is not None for *_, end in handled), "a handler was interrupted mid-message"
    seen = [(p, o) for _, p, o, _, _ in handled]
    assert len(seen) == len(set(seen)) == sent, "a message was handled twice, or lost"
    assert {member for member, *_ in handled} == {"first", "second"}, "the rebalance moved no partition"
    by_partition: dict[int, list[tuple[float, float, str]]] = {}
    for member, partition, _, start, end in handled:
        by_partition.setdefault(partition, []).append((start, end, member))
    for partition, spans in by_partition.items():
        spans.sort()
        for (_, end, before), (start, _, after) in itertools.pairwise(spans):
            assert start >= end, f"partition {partition}: {after} started before {before} had finished"


async def test_two_engines_closing_one_users_positions_at_once_lose_no_balance_update(platform, api, mailbox,
                                                                                    email):
    """What a rebalance can cause if a partition is briefly held twice: each engine reads and writes the balance
    in its own transaction, and without the account lock one close overwrites the other's update."""
    auth = await signed_in(api, mailbox, email)
    user_id = (await api.get("/auth/me", headers=auth)).json()["user"]["id"]
    await set_price(platform, "SOL_USDC", "200.00", "200.02")
    ids = []
    for _ in range(24):
        opened = await api.post("/positions", headers=auth, json={"symbol": "SOL_USDC", "side": "long", "qty": "1",
                                                                  "leverage": 10})
        assert opened.status_code == 201, opened.text
        ids.append(opened.json()["id"])
    await set_price(platform, "SOL_USDC", "210.00", "210.02")
    first = platform.dbproc.trading
    second = TradingEngine(TradingStore(platform.db), platform.bus, platform.dbproc.topics.events,
                           platform.dbproc.quotes)

    async def consume(engine: TradingEngine, position_ids: list[str]) -> list[Decimal]:
        realized = []
        for position_id in position_ids:  # one record after the other, as a consumer of the partition does
            closed = await engine.close(CloseCommand(user_id=user_id, position_id=position_id), uuid.uuid4().hex)
            assert closed.realized_pnl is not None
            realized.append(closed.realized_pnl - closed.commission)  # its PnL, less its opening and closing fees
        return realized

    results = await asyncio.gather(consume(first, ids[::2]), consume(second, ids[1::2]))
    booked = sum((r for rs in results for r in rs), Decimal(0))
    assert booked > 0
    account = (await api.get("/account", headers=auth)).json()
    ledger = (await api.get("/ledger", headers=auth)).json()
    assert sum(Decimal(e["amount"]) for e in ledger) == Decimal(account["balance"])
    assert Decimal(account["balance"]) == Decimal(10_000) + booked, "a close's balance update was lost"
