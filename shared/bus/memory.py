"""The in-process bus: Kafka's contract (partitions by key, per-key order, groups, commits) in memory."""

from __future__ import annotations

import asyncio
import itertools
import logging
import zlib
from collections.abc import Sequence

from shared.bus import Bus, Handler, Message, Subscription, handler_failed
from shared.errors import BackendDown
from shared.outage import Outage

log = logging.getLogger(__name__)


class _Partition:
    """An append-only log with a bounded retention; readers wait on `changed` for new messages."""

    def __init__(self, topic: str, index: int, retention: int) -> None:
        self.topic = topic
        self.index = index
        self.retention = retention
        self.base = 0  # offset of log[0]
        self.log: list[Message] = []
        self.changed = asyncio.Event()

    @property
    def end(self) -> int:
        return self.base + len(self.log)

    def append(self, key: bytes | None, value: bytes) -> None:
        self.log.append(Message(self.topic, self.index, self.end, key, value))
        if len(self.log) > 2 * self.retention:
            drop = len(self.log) - self.retention
            del self.log[:drop]
            self.base += drop
        self.changed.set()
        self.changed = asyncio.Event()

    async def read(self, position: int) -> list[Message]:
        """Messages from `position` on, waiting for at least one."""
        while position >= self.end:
            await self.changed.wait()
        start = max(position, self.base) - self.base
        return self.log[start:]


class _Group:
    def __init__(self) -> None:
        self.members: list[_MemorySubscription] = []
        self.committed: dict[tuple[str, int], int] = {}
        self.consumers: dict[tuple[str, int], asyncio.Task[None]] = {}  # who consumes each partition now


class MemoryBus(Bus):
    """Everything in one process; survives nothing, which is fine because everything dies together."""

    name = "in-process"

    def __init__(self, partitions: int = 6, retention: int = 100_000) -> None:
        self.partitions = partitions
        self.retention = retention
        self._topics: dict[str, list[_Partition]] = {}
        self._groups: dict[str, _Group] = {}
        self._round_robin = itertools.count()
        self._failing: tuple[str, frozenset[str] | None] | None = None
        self._publishing: dict[str, Outage] = {}

    async def start(self) -> None:
        pass

    async def stop(self) -> None:
        for group in self._groups.values():
            for member in list(group.members):
                await member.stop()

    async def ping(self) -> None:
        pass

    async def ensure_topics(self, topics: Sequence[str]) -> None:
        for topic in topics:
            self._partitions(topic)

    def _partitions(self, topic: str) -> list[_Partition]:
        if topic not in self._topics:
            self._topics[topic] = [_Partition(topic, i, self.retention) for i in range(self.partitions)]
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
        index = zlib.crc32(key) if key is not None else next(self._round_robin)
        partitions[index % len(partitions)].append(key, value)

    async def subscribe(self, topics: Sequence[str], handler: Handler, *, group: str | None) -> Subscription:
        subscription = _MemorySubscription(self, list(topics), handler, group)
        if group is None:
            subscription.follow({(p.topic, p.index): p.end for t in topics for p in self._partitions(t)})
        else:
            self._groups.setdefault(group, _Group()).members.append(subscription)
            self._rebalance(group)
        return subscription

    def _rebalance(self, group_name: str) -> None:
        """Share the group's partitions among its members. A partition that changes hands is handed over as
        Kafka does with a rebalance listener: the old owner finishes the message in hand and commits it, then
        the new owner starts from that commit; never two members on one partition at once."""
        group = self._groups[group_name]
        wanted = sorted({(p.topic, p.index) for m in group.members for t in m.topics for p in self._partitions(t)})
        shares: dict[int, set[tuple[str, int]]] = {i: set() for i in range(len(group.members))}
        for i, tp in enumerate(wanted):
            shares[i % len(group.members)].add(tp)
        for i, member in enumerate(group.members):
            member.release(shares[i])
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
    def __init__(self, bus: MemoryBus, topics: list[str], handler: Handler, group: str | None) -> None:
        self.bus = bus
        self.topics = topics
        self.handler = handler
        self.group = group
        self._consumers: dict[tuple[str, int], asyncio.Task[None]] = {}
        self._busy: set[asyncio.Task[None]] = set()  # consumers inside the handler
        self._released: set[asyncio.Task[None]] = set()  # consumers to leave after the message in hand
        self._stopped = False

    def follow(self, positions: dict[tuple[str, int], int]) -> None:
        """A broadcast subscriber: every partition, from the given positions."""
        for (topic, index), position in positions.items():
            self._consumers[(topic, index)] = asyncio.get_running_loop().create_task(
                self._consume(self.bus._topics[topic][index], position))

    def release(self, keep: set[tuple[str, int]]) -> None:
        """Stop consuming every partition not in `keep`, each after the message in hand."""
        for tp in [tp for tp in self._consumers if tp not in keep]:
            self._let_go(self._consumers.pop(tp))

    def own(self, partitions: set[tuple[str, int]], group: _Group) -> None:
        """Consume `partitions` (those not consumed yet), each from where its previous owner committed."""
        for tp in sorted(partitions - self._consumers.keys()):
            previous = group.consumers.get(tp)
            task = asyncio.get_running_loop().create_task(
                self._consume(self.bus._topics[tp[0]][tp[1]], None, after=previous))
            self._consumers[tp] = group.consumers[tp] = task

    def _let_go(self, task: asyncio.Task[None]) -> None:
        self._released.add(task)
        task.add_done_callback(self._released.discard)
        if task not in self._busy:  # a consumer in the handler finishes that message, commits and returns
            task.cancel()

    async def _consume(self, partition: _Partition, position: int | None,
                       after: asyncio.Task[None] | None = None) -> None:
        task = asyncio.current_task()
        assert task is not None
        if after is not None and not after.done():
            await asyncio.wait({after})  # the previous owner's message in hand (never cancels it)
        if position is None:
            assert self.group is not None
            position = self.bus._groups[self.group].committed.get((partition.topic, partition.index), 0)
        while True:
            for message in await partition.read(position):
                if self._stopped or task in self._released:
                    return
                self._busy.add(task)
                try:
                    await self.handler(message)
                except asyncio.CancelledError:
                    raise
                except Exception as exc:
                    handler_failed(message.topic, message.partition, message.offset, exc)
                finally:
                    self._busy.discard(task)
                position = message.offset + 1
                if self.group is not None:
                    self.bus._commit(self.group, partition.topic, partition.index, position)
                if self._stopped or task in self._released:  # stop() or a rebalance waited for this message
                    return

    async def stop(self) -> None:
        if self._stopped:
            return
        self._stopped = True
        tasks = list(self._consumers.values())
        self._consumers.clear()
        for task in tasks:
            self._let_go(task)
        await asyncio.gather(*tasks, return_exceptions=True)
        self.bus._leave(self)
