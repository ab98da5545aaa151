"""What every request handler can reach: the settings and the backends opened in the app's lifespan."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass

from litestar.datastructures import State

from shared.bus import Bus, Topics
from shared.bus.rpc import RequestClient
from shared.cache import Cache
from shared.mail import Mailer
from shared.settings import Settings

log = logging.getLogger(__name__)


class MailQueue:
    """Sends mail off the request path, retrying a failed delivery a few times."""

    def __init__(self, mailer: Mailer, attempts: int = 3) -> None:
        self.mailer = mailer
        self.attempts = attempts
        self._queue: asyncio.Queue[tuple[str, str, str]] = asyncio.Queue(maxsize=10_000)
        self._worker: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._worker = asyncio.get_running_loop().create_task(self._run())

    def submit(self, to: str, subject: str, text: str) -> None:
        try:
            self._queue.put_nowait((to, subject, text))
        except asyncio.QueueFull:
            log.error("mail queue full; dropped a mail to %s", to)

    async def _run(self) -> None:
        while True:
            to, subject, text = await self._queue.get()
            for attempt in range(1, self.attempts + 1):
                try:
                    await self.mailer.send(to, subject, text)
                    break
                except Exception as exc:
                    log.warning("mail to %s failed (attempt %d/%d): %s", to, attempt, self.attempts, exc)
                    await asyncio.sleep(0.5 * attempt)
            self._queue.task_done()

    async def stop(self, drain_seconds: float = 5.0) -> None:
        """Deliver what is queued (for a few seconds at most), then stop."""
        if self._worker is None:
            return
        try:
            await asyncio.wait_for(self._queue.join(), drain_seconds)
        except TimeoutError:
            log.warning("stopped with %d mails undelivered", self._queue.qsize())
        self._worker.cancel()
        await asyncio.gather(self._worker, return_exceptions=True)


@dataclass
class ServerContext:
    settings: Settings
    bus: Bus
    cache: Cache
    mailer: Mailer
    rpc: RequestClient
    mail: MailQueue
    topics: Topics


def rpc(state: State) -> RequestClient:
    """The bus request client of the app whose `state` this is."""
    ctx: ServerContext = state.ctx
    return ctx.rpc
