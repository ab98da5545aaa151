"""The financing job: after each daily rollover (`CFD_FINANCING_ROLLOVER`), every open position pays (or is
credited) its overnight financing.

Each dbproc runs the job for the users of the `requests.trading` partitions it owns: it finds the users with an
open position that has not paid up to the latest rollover, and sends each an internal `account.financing`
command on the user's partition (no reply), which the engine applies like any other command of the user, in
order and once (`financing:<user>:<rollover>`). The job runs at each rollover, and whenever the request group
gives this dbproc partitions: so after a start, a rollover missed while the platform was down is charged then,
once per missed rollover; never twice, since each position keeps the last rollover it paid for.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from cfd_dbproc.trading.store import TradingStore
from shared import operations as ops
from shared.bus import Bus
from shared.bus.rpc import send
from shared.clock import now_ms
from shared.contracts.bus import FinancingCommand
from shared.costs import last_rollover, next_rollover
from shared.operations import Route

log = logging.getLogger(__name__)

CHECK_SECONDS = 60.0
"""The longest the job sleeps between two looks at the clock (so a clock that jumps is noticed within it)."""
RETRY_SECONDS = 10.0
"""How soon a run that failed (the database or the bus is down) is tried again."""


class FinancingJob:
    def __init__(self, bus: Bus, routes: dict[Route, str], store: TradingStore, owns: Callable[[str], bool],
                 rollover_minute: int, clock: Callable[[], int] = now_ms) -> None:
        self.bus = bus
        self.routes = routes
        self.store = store
        self.owns = owns
        self.rollover_minute = rollover_minute
        self.clock = clock
        self.done_through = 0
        """The latest rollover every position of this dbproc's users was sent the financing of."""
        self.sent = 0
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run(), name="financing")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None

    def wake(self) -> None:
        """Run again now (the request group gave this dbproc partitions: their users may owe a rollover)."""
        self.done_through = 0
        self._wake.set()

    async def run_once(self) -> int:
        """Send the financing command of each user of this dbproc's partitions who owes the latest rollover;
        returns how many were sent."""
        due = last_rollover(self.clock(), self.rollover_minute)
        sent = 0
        for user_id in await self.store.owing_financing(due):
            if self.owns(user_id):
                await send(self.bus, self.routes, ops.FINANCING, FinancingCommand(user_id=user_id, through=due),
                           key=user_id, command_id=f"financing:{user_id}:{due}")
                sent += 1
        self.done_through = due
        self.sent += sent
        if sent:
            log.info("financing of the rollover at %d sent to %d users", due, sent)
        return sent

    async def _run(self) -> None:
        while True:
            self._wake.clear()  # a wake during the run below makes the wait return at once
            delay = CHECK_SECONDS
            if last_rollover(self.clock(), self.rollover_minute) > self.done_through:
                try:
                    await self.run_once()
                except Exception as exc:  # the database or the bus is down: try again soon
                    log.warning("the financing job could not run (%s); trying again in %g s", exc, RETRY_SECONDS)
                    delay = RETRY_SECONDS
            now = self.clock()
            delay = min(delay, max(0.0, (next_rollover(now, self.rollover_minute) - now) / 1000))
            try:
                await asyncio.wait_for(self._wake.wait(), delay)
            except TimeoutError:
                pass
