"""The message bus: topics split into partitions by key, consumer groups, at-least-once delivery.

Two implementations keep one contract: `MemoryBus` (in-process, the default) and `KafkaBus` (aiokafka).
- A message's key picks its partition; messages with one key are delivered in the order published.
- `subscribe(..., group="name")` shares the partitions among the group's subscribers; an offset is
  committed only after the handler returns, so a subscriber that dies has its messages redelivered.
  When the group rebalances, a subscriber losing a partition hands no further message of it to its
  handler, finishes the one in hand and commits it, and only then does the new owner start: one
  partition is never handled by two subscribers at once.
- A group subscriber can be told which partitions it owns: `on_assigned(partitions)` is awaited before the
  first message of newly assigned partitions is handed to the handler; `on_revoked(partitions)` after the
  subscriber has finished and committed the message in hand of partitions taken away (a rebalance, or
  `stop()`, before it leaves the group). Both get a set of `(topic, partition)`, only ever the partitions
  that change hands; a partition is revoked only after it was assigned, and callbacks of one subscriber run
  one at a time, in order. A callback that raises is logged; the subscription goes on. In memory a new
  owner's `on_assigned` starts after the old owner's `on_revoked` returned; on Kafka, in a rebalance, the
  two may overlap (two processes hear of it at once), while the messages are still handed over strictly.
- `partition_for(topic, key)` is the partition a message published with `key` goes to.
- `subscribe(..., batched=True)` hands the handler a list of consecutive messages of one partition (those at
  hand, at most `MAX_BATCH`) instead of one, and commits them together once it returns; a stop or a rebalance
  waits for the batch in hand.
- `subscribe(..., group=None)` is a broadcast: the subscriber sees every message published after it
  subscribed, from all partitions (every server instance uses this for prices, replies and events).
"""

from __future__ import annotations

import logging
from abc import ABC, abstractmethod
from collections.abc import Awaitable, Callable, Iterator, Sequence

from msgspec import Struct

from shared import outage
from shared.operations import Route
from shared.settings import BusSettings

log = logging.getLogger(__name__)


class Message(Struct, frozen=True):
    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes


Handler = Callable[[Message], Awaitable[None]]
BatchHandler = Callable[[list[Message]], Awaitable[None]]
"""A batched subscriber's handler: consecutive messages of one partition, in order."""

MAX_BATCH = 64
"""The most messages a batched subscriber is handed at once."""


def batches(messages: Sequence[Message], size: int) -> Iterator[list[Message]]:
    """`messages` in consecutive lists of at most `size`."""
    for start in range(0, len(messages), size):
        yield list(messages[start:start + size])

Partition = tuple[str, int]  # (topic, index)
Rebalanced = Callable[[set[Partition]], Awaitable[None]]
"""A group subscriber's `on_assigned` / `on_revoked`: the `(topic, partition)`s that changed hands."""


def handler_failed(topic: str, partition: int, offset: int, exc: Exception) -> None:
    """A handler raised on a message, which is skipped. A backend outage (the database restarting under the
    candle recorder, say) is logged once and summarised while it lasts; anything else is a bug and is logged
    with its traceback."""
    reason = outage.backend_outage(exc)
    if reason is not None:
        outage.failed(log, f"messages of {topic} skipped", reason)
    else:
        log.error("handler failed on %s[%d]@%d; skipped", topic, partition, offset, exc_info=exc)


async def rebalanced(callback: Rebalanced | None, partitions: set[Partition], what: str) -> None:
    """Run a subscriber's `on_assigned` / `on_revoked` (`what`) with `partitions`, if there is one and there
    are any; an exception is logged, never raised into the bus."""
    if callback is None or not partitions:
        return
    try:
        await callback(set(partitions))
    except Exception:
        log.exception("%s failed for %s", what, ", ".join(f"{t}[{p}]" for t, p in sorted(partitions)))


class Subscription(ABC):
    """A running subscription; `stop()` finishes the message in hand, commits and stops."""

    @abstractmethod
    async def stop(self) -> None: ...

    def lag(self) -> dict[Partition, int]:
        """Per partition it consumes now: the messages published and not handled yet (what it knows of them)."""
        return {}


class Bus(ABC):
    """A partitioned log with consumer groups (see the module docstring for the contract)."""

    name: str

    @abstractmethod
    async def start(self) -> None: ...

    @abstractmethod
    async def stop(self) -> None: ...

    @abstractmethod
    async def ensure_topics(self, topics: Sequence[str]) -> None:
        """Create the topics if they do not exist (with the configured partition count)."""

    @abstractmethod
    async def publish(self, topic: str, value: bytes, *, key: bytes | None = None, wait: bool = True) -> None:
        """Append a message; with `wait`, return once it is durably accepted."""

    @abstractmethod
    async def subscribe(self, topics: Sequence[str], handler: Handler | BatchHandler, *, group: str | None,
                        on_assigned: Rebalanced | None = None, on_revoked: Rebalanced | None = None,
                        batched: bool = False) -> Subscription:
        """Start delivering messages to `handler` (lists of them if `batched`); returns once the subscription is
        live.

        In a group, `on_assigned` is awaited before the first message of newly assigned partitions is handed
        to `handler`, and `on_revoked` once the message in hand of partitions taken away is finished and
        committed (also at `stop()`, for every partition still held). Ignored without a group."""

    @abstractmethod
    def partition_for(self, topic: str, key: bytes) -> int:
        """The partition of `topic` a message published with `key` goes to, as the producer computes it.
        On Kafka the topic must be known to the bus (`ensure_topics` makes it so)."""

    @abstractmethod
    async def ping(self) -> None:
        """Raise `BackendDown` if the bus cannot be reached."""


def create_bus(settings: BusSettings, instance_id: str) -> Bus:
    """The bus the settings name: Kafka when `CFD_KAFKA_BOOTSTRAP` is set, else in-process. `instance_id`
    names this process to Kafka (its client id)."""
    if settings.bootstrap:
        from shared.bus.kafka import KafkaBus

        return KafkaBus(settings, instance_id)
    from shared.bus.memory import MemoryBus, Retention

    return MemoryBus(partitions=settings.partitions,
                     retention=Retention(messages=settings.retention_messages,
                                         seconds=settings.retention_seconds, bytes=settings.retention_bytes))


class Topics:
    """The platform's topic names, with the deployment's prefix applied."""

    def __init__(self, settings: BusSettings) -> None:
        self.settings = settings
        self.prices = settings.topic("price-updates")
        self.user_requests = settings.topic("requests.users")
        self.trading_requests = settings.topic("requests.trading")
        self.replies = settings.topic("replies")
        self.events = settings.topic("account-events")
        self.marks = settings.topic("account-marks")  # dbproc → servers: watched accounts marked to market
        self.candle_history = settings.topic("candle-history")  # poller → dbproc, keyed by symbol
        self.candle_requests = settings.topic("requests.candles")  # candle history and coverage, by symbol
        self.health_requests = settings.topic("requests.health")  # is a dbproc answering, with its database
        self.replay_requests = settings.topic("requests.replay")  # server → the poller of a lockstep replay
        self.sessions = settings.topic("sessions-ended")  # server → every server: sessions that ended
        self.markets = settings.topic("market-settings")  # dbproc → every service: a market's terms changed
        self.status = settings.topic("service-status")  # every process → every server: who runs, owning what

    def retention(self, topic: str) -> int:
        """Seconds Kafka keeps the messages of `topic`: prices and marks only while they are news, requests and
        replies while a client may still be waiting or retrying, account and session events, market settings
        (and the candle history a dbproc may have to catch up on) for a day."""
        s = self.settings
        if topic in (self.prices, self.marks, self.status):
            return s.kafka_retention_prices_seconds
        if topic in (self.user_requests, self.trading_requests, self.candle_requests, self.health_requests,
                     self.replay_requests, self.replies):
            return s.kafka_retention_requests_seconds
        return s.kafka_retention_events_seconds

    def all(self) -> list[str]:
        return [self.prices, self.user_requests, self.trading_requests, self.replies, self.events, self.marks,
                self.candle_history, self.candle_requests, self.health_requests, self.sessions, self.markets,
                self.replay_requests, self.status]

    def routes(self) -> dict[Route, str]:
        """The request topic of each operation route (`shared.operations`)."""
        return {Route.USERS: self.user_requests, Route.TRADING: self.trading_requests,
                Route.CANDLES: self.candle_requests, Route.HEALTH: self.health_requests,
                Route.REPLAY: self.replay_requests}
