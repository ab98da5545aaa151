"""The financing job: after a rollover, one `account.financing` command per user of this dbproc's partitions
who owes it, with an id that makes a second sending (a restart, another dbproc around a handover) a no-op."""

from __future__ import annotations

import asyncio

import msgspec

from cfd_dbproc.trading.financing import FinancingJob
from shared.bus import Message
from shared.bus.memory import MemoryBus
from shared.contracts.bus import BusRequest, FinancingCommand
from shared.costs import DAY_MS
from shared.operations import Route

JAN_1 = 1_767_225_600_000  # 2026-01-01 00:00:00 UTC


class Owing:
    """The store's part the job reads: who has an open position not financed up to a rollover."""

    def __init__(self, users: list[str]) -> None:
        self.users = users
        self.asked: list[int] = []

    async def owing_financing(self, due: int) -> list[str]:
        self.asked.append(due)
        return list(self.users)


async def test_the_job_sends_each_owned_user_one_command_per_rollover():
    bus = MemoryBus(partitions=2)
    await bus.start()
    sent: list[tuple[str, str, FinancingCommand]] = []

    async def collect(message: Message) -> None:
        request = msgspec.json.decode(message.value, type=BusRequest)
        sent.append((request.type, request.command_id, msgspec.json.decode(request.body, type=FinancingCommand)))

    await bus.subscribe(["trading"], collect, group=None)
    now = [JAN_1 + 5 * 60_000]  # 00:05, the rollover at 00:00 just passed
    store = Owing(["u-mine", "u-other", "u-mine-too"])
    job = FinancingJob(bus, {Route.TRADING: "trading"}, store, owns=lambda user: user.startswith("u-mine"),  # type: ignore[arg-type]
                       rollover_minute=0, clock=lambda: now[0])
    try:
        assert await job.run_once() == 2
        await asyncio.sleep(0.05)
        assert sorted((kind, command_id, command.user_id, command.through) for kind, command_id, command in sent) == [
            ("account.financing", f"financing:u-mine-too:{JAN_1}", "u-mine-too", JAN_1),
            ("account.financing", f"financing:u-mine:{JAN_1}", "u-mine", JAN_1),
        ]
        assert job.done_through == JAN_1

        job.start()  # its loop has nothing to do until the next rollover: this one is done
        await asyncio.sleep(0.05)
        assert store.asked == [JAN_1]
        job.wake()  # partitions assigned: their users may owe this rollover too
        await asyncio.sleep(0.05)
        assert store.asked == [JAN_1, JAN_1]
        assert len({command_id for _, command_id, _ in sent}) == 2  # sent again, under the same ids: applied once

        now[0] += 3 * DAY_MS  # three rollovers later: one command each, through the latest (it owes all three)
        job.wake()
        await asyncio.sleep(0.05)
        assert store.asked[-1] == JAN_1 + 3 * DAY_MS
        assert {command.through for _, _, command in sent[-2:]} == {JAN_1 + 3 * DAY_MS}
    finally:
        await job.stop()
        await bus.stop()
