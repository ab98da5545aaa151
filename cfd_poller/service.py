"""The poller service: one source → `price-updates`, with staleness watching and counters, and at start-up
the candle history and the simulator's resume (`cfd_poller.history`).

A lockstep replay (`CFD_REPLAY_LOCKSTEP`) does not run on its own: the poller answers `replay.step` requests
(topic `requests.replay`, group `<prefix>cfd-replay`) by publishing the next ticks and saying which
(`Poller.step`). A step is applied once per command id (the last `REMEMBERED_STEPS` are remembered), and a
request its server gave up on before this replay started (sent longer than the request timeout before; still on
Kafka from when no poller ran) is dropped unplayed.

`start_poller(settings.prices, bus, topics, instance_id=...)` is what `cfd up` and `cfd poller` call.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import OrderedDict

import msgspec

from cfd_poller.history import HistoryKeeper
from cfd_poller.metrics import PollerMetrics
from cfd_poller.publisher import TickPublisher
from cfd_poller.sources import PriceSource, create_source
from cfd_poller.sources.replay import LockstepReplay
from cfd_poller.staleness import StalenessTracker
from shared import operations as ops
from shared.backoff import Backoff
from shared.bus import Bus, Message, Subscription, Topics
from shared.bus.rpc import Responder
from shared.clock import now_ms
from shared.contracts import encode
from shared.contracts.bus import BusRequest, ReplayStepCommand, ReplayStepped
from shared.contracts.rest import MAX_REPLAY_STEP
from shared.errors import BadRequest, Conflict
from shared.settings import PriceSettings

log = logging.getLogger(__name__)

STEP_GROUP = "cfd-replay"  # the consumer group of `requests.replay`, prefixed with the deployment's topic prefix
REMEMBERED_STEPS = 1000
_request_decoder = msgspec.json.Decoder(BusRequest)


class Poller:
    """Runs a price source in the background and publishes every tick it yields."""

    def __init__(self, settings: PriceSettings, bus: Bus, topics: Topics, *, instance_id: str,
                 source: PriceSource | None = None) -> None:
        self.settings = settings
        self.bus = bus
        self.source = source or create_source(settings, PollerMetrics())
        self.metrics = self.source.metrics  # the source counts frames and reconnects, the publisher ticks
        self.topics = topics
        self.topic = topics.prices
        self.publisher = TickPublisher(bus, self.topic, self.metrics)
        self.staleness = StalenessTracker(self.source.symbols, settings.quotes_stale_after,
                                          source=self.source.name)
        self.history = HistoryKeeper(settings, bus, topics, self.source, self.metrics, instance_id=instance_id)
        self._run_task: asyncio.Task[None] | None = None
        self._watch_task: asyncio.Task[None] | None = None
        self._history_task: asyncio.Task[int] | None = None
        self.lockstep = self.source if isinstance(self.source, LockstepReplay) else None
        self._steps: Subscription | None = None
        self._stepping = asyncio.Lock()
        self._answers: OrderedDict[str, ReplayStepped] = OrderedDict()  # the latest steps, by command id
        self._ended = asyncio.Event()
        self._started_ms = 0

    @property
    def source_name(self) -> str:
        return self.source.name

    @property
    def running(self) -> bool:
        """Whether the source is still producing (a replay stops at the end of its file)."""
        if self.lockstep is not None:
            return self._steps is not None and not self._ended.is_set()
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
        if self.lockstep is not None:
            await self._serve_steps()
        else:
            self._run_task = loop.create_task(self._run(), name=f"poller-{self.source.name}")
        self._watch_task = loop.create_task(self._watch(), name="poller-staleness")
        if history:
            self._history_task = loop.create_task(self._backfill(), name="poller-history")
        log.info("poller started: %s prices for %s → %s%s", self.source.name, ", ".join(self.source.symbols),
                 self.topic, ", a step at a time (lockstep)" if self.lockstep is not None else "")

    async def stop(self) -> None:
        """Stop reading, watching and sending history; a stopped poller publishes nothing more."""
        if self._steps is not None:
            await self._steps.stop()
            self._steps = None
        tasks = [t for t in (self._run_task, self._watch_task, self._history_task) if t is not None]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._run_task = self._watch_task = self._history_task = None
        if self.lockstep is not None:
            self.lockstep.close()
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
        if self.lockstep is not None:
            await self._ended.wait()
        elif self._run_task is not None:
            await asyncio.shield(self._run_task)

    # --- a lockstep replay ----------------------------------------------------------------------------------

    async def _serve_steps(self) -> None:
        topics = self.topics
        await self.bus.ensure_topics([topics.replay_requests, topics.replies])
        responder = Responder(self.bus, topics.replies)
        responder.handle(ops.REPLAY_STEP, self.step)

        given_up = int(topics.settings.request_timeout * 1000)

        async def on_request(message: Message) -> None:
            try:
                sent_at = _request_decoder.decode(message.value).sent_at_ms
            except msgspec.DecodeError:
                sent_at = 0  # the responder logs it
            if 0 < sent_at < self._started_ms - given_up:  # its server gave up on it while no poller ran
                log.warning("dropping a replay step sent %d ms before this replay started: nobody waits for it",
                            self._started_ms - sent_at)
                return
            await responder(message)

        self._started_ms = now_ms()
        self._steps = await self.bus.subscribe([topics.replay_requests], on_request,
                                               group=topics.settings.topic(STEP_GROUP))

    async def step(self, command: ReplayStepCommand, command_id: str) -> ReplayStepped:
        """`replay.step`: publish the next `command.count` ticks of the lockstep replay, in order, and say which.
        A tick the bus refuses fails the step (503) and is the first of the next one."""
        assert self.lockstep is not None
        if not 1 <= command.count <= MAX_REPLAY_STEP:
            raise BadRequest(f"A step plays 1 to {MAX_REPLAY_STEP:,} ticks.", code="validation_error",
                             details={"count": command.count})
        async with self._stepping:
            answered = self._answers.get(command_id)
            if answered is not None:
                return answered
            source = self.lockstep
            ticks = await source.next_ticks(command.count)
            if not ticks:
                raise Conflict(f"The replay of {source.path.name} has ended: all {source.played:,} ticks are played.",
                               code="replay_ended", details={"played": source.played})
            for tick in ticks:
                await self.bus.publish(self.topic, encode(tick), key=tick.symbol.encode())
                source.published()
                self.staleness.seen(tick.symbol)
                self.metrics.ticks_published += 1
            answer = ReplayStepped(ticks=ticks, played=source.played, ended=await source.ended())
            self._answers[command_id] = answer
            if len(self._answers) > REMEMBERED_STEPS:
                self._answers.popitem(last=False)
            if answer.ended and not self._ended.is_set():
                self._ended.set()
                log.info("the lockstep replay of %s has ended: %d ticks played", source.path.name, source.played)
            return answer

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
