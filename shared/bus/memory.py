"""The in-process bus: Kafka's contract (partitions by key, per-key order, groups, commits) in memory.

Like a broker with a short retention, a partition keeps only what its consumers have not read yet plus a
small window (`Retention`: by default the last 1,000 messages, at most 30 s old and 1 MiB of values), so a
process that runs for weeks holds a few megabytes of messages, not every message it ever saw. Consumers
that are behind (a group member busy on a slow handler, a broadcast subscriber) keep what they still have
to read. A group member that joins later starts at its group's commit; when that commit is older than what
is kept (the group had no member for a while), it starts at the oldest message kept, as Kafka does with
`auto.offset.reset=earliest`. A broadcast subscriber starts at the end.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import time
import zlib
from collections import deque
from collections.abc import Callable, Coroutine, Sequence
from dataclasses import dataclass
from typing import Any

from shared.bus import (
    MAX_BATCH,
    BatchHandler,
    Bus,
    Handler,
    Message,
    Partition,
    Rebalanced,
    Subscription,
    batches,
    handler_failed,
    rebalanced,
)
from shared.errors import BackendDown
from shared.outage import Outage

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Retention:
    """What a partition keeps beyond what its readers still need: a message every reader has passed stays
    while it is among the last `messages`, younger than `seconds`, and within the last `bytes` of values."""

    messages: int = 1000
    seconds: float = 30.0
    bytes: int = 1 << 20


class _Cursor:
    """Where one consumer of a partition is: the offset it reads next, None while it waits to start from its
    group's commit. What is at or after a cursor is never dropped."""

    __slots__ = ("group", "position")

    def __init__(self, position: int | None, group: _Group | None) -> None:
        self.position = position
        self.group = group


class _Partition:
    """A log that drops from its head what no reader needs and the retention window lets go; readers wait on
    `changed` for new messages."""

    def __init__(self, topic: str, index: int, retention: Retention, clock: Callable[[], float]) -> None:
        self.topic = topic
        self.index = index
        self.retention = retention
        self.clock = clock
        self.base = 0  # offset of log[0]
        self.log: deque[Message] = deque()
        self.times: deque[float] = deque()  # when each message of `log` was appended
        self.bytes = 0  # keys and values of `log`
        self.cursors: set[_Cursor] = set()
        self.changed = asyncio.Event()

    @property
    def end(self) -> int:
        return self.base + len(self.log)

    def append(self, key: bytes | None, value: bytes) -> None:
        now = self.clock()
        self.log.append(Message(self.topic, self.index, self.end, key, value))
        self.times.append(now)
        self.bytes += _size(key, value)
        self.trim(now)
        self.changed.set()
        self.changed = asyncio.Event()

    def _over(self, now: float) -> bool:
        r = self.retention
        if not self.log:
            return False
        return len(self.log) > r.messages or self.bytes > r.bytes or now - self.times[0] > r.seconds

    def trim(self, now: float | None = None) -> None:
        """Drop from the head every message that all readers have passed and the window no longer holds."""
        now = self.clock() if now is None else now
        if not self._over(now):
            return
        floor = self.end
        for cursor in self.cursors:
            position = cursor.position
            if position is None:
                assert cursor.group is not None
                position = cursor.group.committed.get((self.topic, self.index), 0)
            floor = min(floor, position)
        log, times = self.log, self.times
        while self.base < floor and self._over(now):
            dropped = log.popleft()
            times.popleft()
            self.bytes -= _size(dropped.key, dropped.value)
            self.base += 1

    async def read(self, position: int) -> list[Message]:
        """Messages from `position` on (from the oldest kept, if that is later), waiting for at least one."""
        while position >= self.end:
            await self.changed.wait()
        start = max(position, self.base) - self.base
        return list(itertools.islice(self.log, start, None))


def _size(key: bytes | None, value: bytes) -> int:
    return len(value) + (len(key) if key is not None else 0)


async def _after(previous: asyncio.Task[None] | None, then: Coroutine[Any, Any, None]) -> None:
    """Run `then` once `previous` is done (waiting never cancels it)."""
    if previous is not None and not previous.done():
        await asyncio.wait({previous})
    await then


class _Group:
    def __init__(self) -> None:
        self.members: list[_MemorySubscription] = []
        self.committed: dict[tuple[str, int], int] = {}
        # Per partition, what a new owner waits for: its previous owner's hand-over (the message in hand
        # finished and committed, then that owner's `on_revoked`).
        self.handovers: dict[tuple[str, int], asyncio.Task[None]] = {}


class MemoryBus(Bus):
    """Everything in one process; survives nothing, which is fine because everything dies together."""

    name = "in-process"

    SWEEP_SECONDS = 1.0
    """How often a started bus drops what has aged out of the window when nothing is published."""

    def __init__(self, partitions: int = 6, retention: Retention | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.partitions = partitions
        self.retention = retention or Retention()
        self.clock = clock
        self._sweeper: asyncio.Task[None] | None = None
        self._topics: dict[str, list[_Partition]] = {}
        self._groups: dict[str, _Group] = {}
        self._round_robin = itertools.count()
        self._failing: tuple[str, frozenset[str] | None] | None = None
        self._publishing: dict[str, Outage] = {}

    async def start(self) -> None:
        if self._sweeper is None:
            self._sweeper = asyncio.get_running_loop().create_task(self._sweep())

    async def stop(self) -> None:
        for group in self._groups.values():
            for member in list(group.members):
                await member.stop()
        if self._sweeper is not None:
            self._sweeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._sweeper
            self._sweeper = None

    async def _sweep(self) -> None:
        while True:
            await asyncio.sleep(self.SWEEP_SECONDS)
            self.trim()

    def trim(self) -> None:
        """Drop, in every partition, what the window no longer holds and every reader has passed (done on
        each publish, and every second by a started bus)."""
        now = self.clock()
        for partitions in self._topics.values():
            for partition in partitions:
                partition.trim(now)

    def retained(self, topic: str) -> int:
        """How many messages of `topic` the bus holds now, over all its partitions."""
        return sum(len(p.log) for p in self._topics.get(topic, ()))

    async def ping(self) -> None:
        pass

    async def ensure_topics(self, topics: Sequence[str]) -> None:
        for topic in topics:
            self._partitions(topic)

    def _partitions(self, topic: str) -> list[_Partition]:
        if topic not in self._topics:
            self._topics[topic] = [_Partition(topic, i, self.retention, self.clock) for i in range(self.partitions)]
        return self._topics[topic]

    def fail(self, reason: str | None, *, topics: Sequence[str] | None = None) -> None:
        """Play an outage (tests, drills): publishing to `topics` (default: every topic) raises
        `BackendDown("bus", reason)`, as Kafka's would, until `fail(None)`."""
        self._failing = None if reason is None else (reason, None if topics is None else frozenset(topics))

    async def publish(self, topic: str, value: bytes, *, key: bytes | None = None, wait: bool = True) -> None:
        outage = self._publishing.get(topic)
        if outage is None:
            outage = self._publishing[topic] = Outage(f"publishing to {topic} on the in-process bus fails", log)
        if self._failing is not None and (self._failing[1] is None or topic in self._failing[1]):
            outage.failed(self._failing[0])
            raise BackendDown("bus", f"publish to {topic} failed: {self._failing[0]}")
        outage.recovered()
        partitions = self._partitions(topic)
        index = self.partition_for(topic, key) if key is not None else next(self._round_robin) % len(partitions)
        partitions[index].append(key, value)

    def partition_for(self, topic: str, key: bytes) -> int:
        return zlib.crc32(key) % len(self._partitions(topic))

    async def subscribe(self, topics: Sequence[str], handler: Handler | BatchHandler, *, group: str | None,
                        on_assigned: Rebalanced | None = None, on_revoked: Rebalanced | None = None,
                        batched: bool = False) -> Subscription:
        subscription = _MemorySubscription(self, list(topics), handler, group, on_assigned, on_revoked, batched)
        if group is None:
            subscription.follow({(p.topic, p.index): p.end for t in topics for p in self._partitions(t)})
        else:
            self._groups.setdefault(group, _Group()).members.append(subscription)
            self._rebalance(group)
        return subscription

    def _rebalance(self, group_name: str) -> None:
        """Share the group's partitions among its members. A partition that changes hands is handed over as
        Kafka does with a rebalance listener: the old owner finishes the message in hand, commits it and runs
        its `on_revoked`, then the new owner runs its `on_assigned` and starts from that commit; never two
        members on one partition at once."""
        group = self._groups[group_name]
        wanted = sorted({(p.topic, p.index) for m in group.members for t in m.topics for p in self._partitions(t)})
        shares: dict[int, set[tuple[str, int]]] = {i: set() for i in range(len(group.members))}
        for i, tp in enumerate(wanted):
            shares[i % len(group.members)].add(tp)
        for i, member in enumerate(group.members):
            member.release(shares[i], group)
        for i, member in enumerate(group.members):
            member.own(shares[i], group)

    def _commit(self, group: str, topic: str, partition: int, offset: int) -> None:
        self._groups[group].committed[(topic, partition)] = offset

    def _leave(self, subscription: _MemorySubscription) -> None:
        if subscription.group is not None:
            group = self._groups[subscription.group]
            if subscription in group.members:
                group.members.remove(subscription)
                if group.members:
                    self._rebalance(subscription.group)


class _MemorySubscription(Subscription):
    def __init__(self, bus: MemoryBus, topics: list[str], handler: Handler | BatchHandler, group: str | None,
                 on_assigned: Rebalanced | None = None, on_revoked: Rebalanced | None = None,
                 batched: bool = False) -> None:
        self.bus = bus
        self.topics = topics
        self.handler = handler
        self.batched = batched
        self.group = group
        self.on_assigned = on_assigned
        self.on_revoked = on_revoked
        self.assigned: set[Partition] = set()  # what `on_assigned` was told and `on_revoked` was not yet
        self._callbacks: asyncio.Task[None] | None = None  # the latest assignment or revocation, run in order
        self._consumers: dict[tuple[str, int], asyncio.Task[None]] = {}
        self._cursors: dict[tuple[str, int], tuple[_Partition, _Cursor]] = {}
        self._busy: set[asyncio.Task[None]] = set()  # consumers inside the handler
        self._released: set[asyncio.Task[None]] = set()  # consumers to leave after the message in hand
        self._stopped = False

    def follow(self, positions: dict[tuple[str, int], int]) -> None:
        """A broadcast subscriber: every partition, from the given positions."""
        for (topic, index), position in positions.items():
            self._consumers[(topic, index)] = self._start(self.bus._topics[topic][index], _Cursor(position, None))

    def release(self, keep: set[tuple[str, int]], group: _Group) -> None:
        """Stop consuming every partition not in `keep`, each after the message in hand; then `on_revoked`."""
        gone = {tp for tp in self._consumers if tp not in keep}
        if not gone:
            return
        consumers = [self._consumers.pop(tp) for tp in sorted(gone)]
        for task in consumers:
            self._let_go(task)
        handover = self._in_turn(self._revoke(consumers, gone))
        for tp in gone:
            group.handovers[tp] = handover

    def own(self, partitions: set[tuple[str, int]], group: _Group) -> None:
        """Consume `partitions` (those not consumed yet), each from where its previous owner committed, once
        every previous owner has handed over and `on_assigned` has returned."""
        new = partitions - self._consumers.keys()
        if not new:
            return
        previous = {group.handovers[tp] for tp in new if tp in group.handovers}
        assigned = self._in_turn(self._assign(previous, new))
        for tp in sorted(new):
            self._consumers[tp] = self._start(self.bus._topics[tp[0]][tp[1]], _Cursor(None, group), after=assigned)

    def _in_turn(self, callback: Coroutine[Any, Any, None]) -> asyncio.Task[None]:
        """Run `callback` once this subscriber's earlier assignments and revocations have run."""
        task = asyncio.get_running_loop().create_task(_after(self._callbacks, callback))
        self._callbacks = task
        return task

    async def _assign(self, previous: set[asyncio.Task[None]], partitions: set[Partition]) -> None:
        if previous:
            await asyncio.wait(previous)  # the previous owners' hand-overs (never cancels them)
        self.assigned |= partitions
        await rebalanced(self.on_assigned, partitions, "on_assigned")

    async def _revoke(self, consumers: list[asyncio.Task[None]], partitions: set[Partition] | None) -> None:
        """Once `consumers` have finished the message in hand (and committed it), tell `on_revoked` about
        `partitions` (None: every partition still assigned)."""
        if consumers:
            await asyncio.wait(consumers)
        gone = set(self.assigned) if partitions is None else partitions & self.assigned
        self.assigned -= gone
        await rebalanced(self.on_revoked, gone, "on_revoked")

    def lag(self) -> dict[Partition, int]:
        lags = {}
        for tp, (partition, cursor) in list(self._cursors.items()):
            if tp in self._consumers and cursor.position is not None:
                lags[tp] = max(0, partition.end - cursor.position)
        return lags

    def _start(self, partition: _Partition, cursor: _Cursor,
               after: asyncio.Task[None] | None = None) -> asyncio.Task[None]:
        """A consumer task for `partition`; its cursor holds what it has not read until the task ends."""
        self._cursors[(partition.topic, partition.index)] = (partition, cursor)
        partition.cursors.add(cursor)
        task = asyncio.get_running_loop().create_task(self._consume(partition, cursor, after))
        task.add_done_callback(lambda _: partition.cursors.discard(cursor))
        return task

    def _let_go(self, task: asyncio.Task[None]) -> None:
        self._released.add(task)
        task.add_done_callback(self._released.discard)
        if task not in self._busy:  # a consumer in the handler finishes that message, commits and returns
            task.cancel()

    async def _consume(self, partition: _Partition, cursor: _Cursor, after: asyncio.Task[None] | None) -> None:
        task = asyncio.current_task()
        assert task is not None
        if after is not None and not after.done():
            await asyncio.wait({after})  # the hand-over and `on_assigned` (never cancels them)
        if cursor.position is None:
            assert self.group is not None
            committed = self.bus._groups[self.group].committed.get((partition.topic, partition.index), 0)
            cursor.position = max(committed, partition.base)  # older than what is kept: the oldest kept
        position = cursor.position
        while True:
            for batch in batches(await partition.read(position), MAX_BATCH if self.batched else 1):
                if self._stopped or task in self._released:
                    return
                self._busy.add(task)
                try:
                    await self.handler(batch if self.batched else batch[0])  # type: ignore[arg-type]
                except asyncio.CancelledError:
                    raise
                except Exception as exc:
                    handler_failed(batch[0].topic, batch[0].partition, batch[0].offset, exc)
                finally:
                    self._busy.discard(task)
                position = cursor.position = batch[-1].offset + 1
                if self.group is not None:
                    self.bus._commit(self.group, partition.topic, partition.index, position)
                if self._stopped or task in self._released:  # stop() or a rebalance waited for this message
                    return
            partition.trim()  # what this reader was the last to need

    async def stop(self) -> None:
        if self._stopped:
            return
        self._stopped = True
        tasks = list(self._consumers.values())
        self._consumers.clear()
        for task in tasks:
            self._let_go(task)
        await asyncio.gather(*tasks, return_exceptions=True)
        if self.group is not None:
            await asyncio.wait({self._in_turn(self._revoke([], None))})
        self.bus._leave(self)
