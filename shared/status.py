"""Who is running: every platform process announces itself on the status topic every few seconds
(`StatusBeacon`), and every server keeps the latest announcement of each (`StatusBoard`) for
`GET /api/v1/admin/status` and `cfd status`.

An announcement says which services the process runs, since when, the partitions of `requests.trading` its
dbproc owns, its WebSocket clients, and how old each market's last tick is in its quote book. A process that
stops cleanly says so; one that dies goes quiet, and is shown as silent after `SILENT_AFTER` seconds.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import time
from collections.abc import Callable

import msgspec
from msgspec import Struct

from shared.bus import Bus, Message, Subscription
from shared.clock import now_ms
from shared.contracts import encode
from shared.errors import BackendDown
from shared.outage import Outage

log = logging.getLogger(__name__)

BEACON_SECONDS = 5.0
SILENT_AFTER = 3 * BEACON_SECONDS
FORGET_AFTER = 300.0
"""Seconds after which a silent process is no longer listed."""


class ProcessStatus(Struct, kw_only=True):
    """One platform process as it last announced itself (`GET /admin/status`)."""

    instance: str
    services: list[str]
    host: str
    pid: int
    started_at: int  # epoch ms
    at: int  # epoch ms: when it said this
    partitions: list[int] | None = None  # of requests.trading, for a dbproc: whose accounts it holds
    ws_clients: int | None = None  # for a server
    tick_ages: dict[str, float] = {}  # symbol → seconds since its last tick, in this process's quote book
    lag: dict[str, int] = {}  # request topic → requests waiting for its dbproc (over the partitions it owns)
    stopped: bool = False
    seen_ago: float | None = None  # seconds since the board heard it (set when listed)
    silent: bool = False  # not heard for SILENT_AFTER seconds (set when listed)


class StatusBeacon:
    """Announces this process on `topic` every `BEACON_SECONDS`; `describe` fills in what it runs now."""

    def __init__(self, bus: Bus, topic: str, instance: str, services: list[str],
                 describe: Callable[[ProcessStatus], None]) -> None:
        self.bus = bus
        self.topic = topic
        self.status = ProcessStatus(instance=instance, services=services, host=socket.gethostname(),
                                    pid=os.getpid(), started_at=now_ms(), at=now_ms())
        self.describe = describe
        self._task: asyncio.Task[None] | None = None
        self.lost = Outage("this process's status cannot be announced (cfd status shows it as silent)", log)

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run(), name="status-beacon")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        self.status.stopped = True
        with contextlib.suppress(Exception):
            await self._announce()

    async def _announce(self) -> None:
        self.status.at = now_ms()
        if not self.status.stopped:
            self.describe(self.status)
        await self.bus.publish(self.topic, encode(self.status), key=self.status.instance.encode(), wait=False)

    async def _run(self) -> None:
        while True:
            try:
                await self._announce()
                self.lost.recovered()
            except BackendDown as exc:
                self.lost.failed(exc.details.get("reason", exc))
            await asyncio.sleep(BEACON_SECONDS)


class StatusBoard:
    """The latest announcement of every process, as heard on `topic` (a server's)."""

    def __init__(self, bus: Bus, topic: str, clock: Callable[[], float] = time.monotonic) -> None:
        self.bus = bus
        self.topic = topic
        self.clock = clock
        self._latest: dict[str, tuple[float, ProcessStatus]] = {}
        self._decoder = msgspec.json.Decoder(ProcessStatus)
        self._subscription: Subscription | None = None

    async def start(self) -> None:
        self._subscription = await self.bus.subscribe([self.topic], self.on_message, group=None)

    async def stop(self) -> None:
        if self._subscription is not None:
            await self._subscription.stop()

    async def on_message(self, message: Message) -> None:
        try:
            status = self._decoder.decode(message.value)
        except msgspec.DecodeError:
            return
        if status.stopped:
            self._latest.pop(status.instance, None)
        else:
            self._latest[status.instance] = (self.clock(), status)

    def processes(self) -> list[ProcessStatus]:
        """Every process heard from in the last `FORGET_AFTER` seconds, by services then instance."""
        now = self.clock()
        listed = []
        for instance, (heard, status) in list(self._latest.items()):
            ago = now - heard
            if ago > FORGET_AFTER:
                del self._latest[instance]
                continue
            listed.append(msgspec.structs.replace(status, seen_ago=round(ago, 1), silent=ago > SILENT_AFTER))
        return sorted(listed, key=lambda s: (s.services, s.instance))
