"""Mark-to-market for the traders who are looking: the dbproc that owns an account publishes its marks.

A server with a connection on a user's `account` channel sends `account.watch` for that user and renews it
while the connection lasts. It travels on the user's `requests.trading` partition, so it reaches the dbproc
that owns the account, and so holds it in its risk book. That dbproc marks each watched account it holds to
the latest broker quotes every `interval` and publishes the frame on the marks topic when it differs from
the last one; every server relays it to the user's connections. Accounts nobody watches cost nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable

from cfd_dbproc.trading.risk_runner import RiskRunner
from shared import operations as ops
from shared.bus import Bus
from shared.bus.rpc import handles
from shared.contracts import encode
from shared.contracts.bus import WatchAccount
from shared.contracts.events import AccountEvent
from shared.errors import BackendDown
from shared.outage import Outage

log = logging.getLogger(__name__)

MARK_INTERVAL = 0.5
"""Seconds between two marks of one account, at most."""
MAX_LEASE = 300.0
"""The longest watch a server may ask for at once."""


class MarkPublisher:
    """Marks the watched accounts this dbproc owns and publishes them on `marks_topic`."""

    def __init__(self, bus: Bus, marks_topic: str, risk: RiskRunner, interval: float = MARK_INTERVAL,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.bus = bus
        self.marks_topic = marks_topic
        self.risk = risk
        self.interval = interval
        self.clock = clock
        self._leases: dict[str, float] = {}  # user id → until (clock seconds)
        self._last: dict[str, bytes] = {}  # user id → the frame last published
        self._task: asyncio.Task[None] | None = None
        self.lost = Outage("account marks cannot be published; traders see them again once the bus is back", log)

    @handles(ops.WATCH_ACCOUNT)
    async def watch(self, body: WatchAccount) -> None:
        until = self.clock() + min(max(body.seconds, 0.0), MAX_LEASE)
        if until > self._leases.get(body.user_id, 0.0):
            self._leases[body.user_id] = until

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run(), name="account-marks")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    def frames(self) -> list[tuple[str, bytes]]:
        """The mark frames that changed since they were last published, of the watched accounts held here;
        forgets the watches that lapsed."""
        now = self.clock()
        book = self.risk.book
        changed = []
        for user_id, until in list(self._leases.items()):
            if until <= now:
                del self._leases[user_id]
                self._last.pop(user_id, None)
                continue
            marked = book.marked(user_id) if self.risk.owns(user_id) else None
            if marked is None:  # nothing open, or another dbproc's account
                self._last.pop(user_id, None)
                continue
            account, marks = marked
            frame = encode(AccountEvent(event="mark", user_id=user_id, account=account, marks=marks))
            if frame != self._last.get(user_id):
                self._last[user_id] = frame
                changed.append((user_id, frame))
        return changed

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self.interval)
            for user_id, frame in self.frames():
                try:
                    await self.bus.publish(self.marks_topic, frame, key=user_id.encode(), wait=False)
                except BackendDown as exc:
                    self.lost.failed(exc.details.get("reason", exc))
                    self._last.pop(user_id, None)  # sent again next time
                    break
            else:
                self.lost.recovered()
