"""The poller service: one source → `price-updates`, with staleness watching and counters, and at start-up
the candle history and the simulator's resume (`cfd_poller.history`).

`start_poller(settings.prices, bus, topics, instance_id=...)` is what `cfd up` and `cfd poller` call.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from cfd_poller.history import HistoryKeeper
from cfd_poller.metrics import PollerMetrics
from cfd_poller.publisher import TickPublisher
from cfd_poller.sources import PriceSource, create_source
from cfd_poller.staleness import StalenessTracker
from shared.backoff import Backoff
from shared.bus import Bus, Topics
from shared.settings import PriceSettings

log = logging.getLogger(__name__)


class Poller:
    """Runs a price source in the background and publishes every tick it yields."""

    def __init__(self, settings: PriceSettings, bus: Bus, topics: Topics, *, instance_id: str,
                 source: PriceSource | None = None) -> None:
        self.settings = settings
        self.bus = bus
        self.source = source or create_source(settings, PollerMetrics())
        self.metrics = self.source.metrics  # the source counts frames and reconnects, the publisher ticks
        self.topic = topics.prices
        self.publisher = TickPublisher(bus, self.topic, self.metrics)
        self.staleness = StalenessTracker(self.source.symbols, settings.stale_after_seconds,
                                          source=self.source.name)
        self.history = HistoryKeeper(settings, bus, topics, self.source, self.metrics, instance_id=instance_id)
        self._run_task: asyncio.Task[None] | None = None
        self._watch_task: asyncio.Task[None] | None = None
        self._history_task: asyncio.Task[int] | None = None

    @property
    def source_name(self) -> str:
        return self.source.name

    @property
    def running(self) -> bool:
        """Whether the source is still producing (a replay stops at the end of its file)."""
        return self._run_task is not None and not self._run_task.done()

    def stale_symbols(self) -> list[str]:
        """Markets with no tick for longer than `stale_after_seconds`."""
        return self.staleness.stale_symbols()

    async def start(self) -> None:
        """Make sure the topics exist; for the simulator, learn where the stored prices end (a bounded wait);
        then read the source and hand over the missing history in the background."""
        history = self.history.wanted
        await self.bus.ensure_topics([self.topic, *self.history.bus_topics] if history else [self.topic])
        if history and self.history.resumes:
            await self.history.ask()
            self.history.resume()
        loop = asyncio.get_running_loop()
        self._run_task = loop.create_task(self._run(), name=f"poller-{self.source.name}")
        self._watch_task = loop.create_task(self._watch(), name="poller-staleness")
        if history:
            self._history_task = loop.create_task(self._backfill(), name="poller-history")
        log.info("poller started: %s prices for %s → %s", self.source.name, ", ".join(self.source.symbols),
                 self.topic)

    async def stop(self) -> None:
        """Stop reading, watching and sending history; a stopped poller publishes nothing more."""
        tasks = [t for t in (self._run_task, self._watch_task, self._history_task) if t is not None]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._run_task = self._watch_task = self._history_task = None
        log.info("poller stopped: %s", self.metrics.summary())

    async def wait_history(self) -> int:
        """Wait until the start-up history is handed over; returns how many minutes were sent."""
        if self._history_task is None:
            return 0
        return await asyncio.shield(self._history_task)

    async def _backfill(self) -> int:
        try:
            return await self.history.run()
        except Exception:  # history is a nicety: a bug here must not disturb the prices
            log.exception("history: sending the candle history failed")
            return 0

    async def wait_finished(self) -> None:
        """Wait until the source has no more prices (only a replay ever ends)."""
        if self._run_task is not None:
            await asyncio.shield(self._run_task)

    async def _run(self) -> None:
        backoff = Backoff(initial=1.0, cap=30.0)
        while True:
            try:
                async with contextlib.aclosing(self.source.ticks()) as ticks:
                    async for tick in ticks:
                        self.staleness.seen(tick.symbol)
                        await self.publisher.publish(tick)
                log.info("the %s source has no more prices", self.source.name)
                return
            except Exception:
                delay = backoff.next()
                log.exception("the %s source failed; restarting it in %.1f s", self.source.name, delay)
                await asyncio.sleep(delay)

    async def _watch(self) -> None:
        interval = min(1.0, self.settings.stale_after_seconds / 4)
        while True:
            await asyncio.sleep(interval)
            self.staleness.check()


async def start_poller(settings: PriceSettings, bus: Bus, topics: Topics, *, instance_id: str,
                       source: PriceSource | None = None) -> Poller:
    """Start the poller for `settings.source` (or the given source) on `bus`; stop it with `stop()`.
    `instance_id` names this process on the bus (its key for the dbproc's replies)."""
    poller = Poller(settings, bus, topics, instance_id=instance_id, source=source)
    await poller.start()
    return poller
