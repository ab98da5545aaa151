"""The in-process bus holds what its readers still need plus a small window, never every message it saw."""

from __future__ import annotations

import asyncio

from shared.bus import Message
from shared.bus.memory import MemoryBus, Retention

WINDOW = Retention(messages=100, seconds=30, bytes=64 * 1024)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


async def settle(bus: MemoryBus, topic: str, seen: list, count: int) -> None:
    for _ in range(2000):
        if len(seen) >= count:
            return
        await asyncio.sleep(0.001)
    raise AssertionError(f"{len(seen)} of {count} messages of {topic} arrived")


async def test_fifty_thousand_messages_consumed_leave_only_the_window():
    bus = MemoryBus(partitions=4, retention=WINDOW)
    grouped: list[Message] = []
    broadcast: list[Message] = []

    async def to_group(m: Message) -> None:
        grouped.append(m)

    async def to_all(m: Message) -> None:
        broadcast.append(m)

    member = await bus.subscribe(["t"], to_group, group="g")
    listener = await bus.subscribe(["t"], to_all, group=None)
    for i in range(50_000):
        await bus.publish("t", b"x" * 100, key=str(i % 97).encode())
        if i % 1000 == 999:
            await asyncio.sleep(0)  # let the consumers keep up, as they do in a running platform
    await settle(bus, "t", grouped, 50_000)
    await settle(bus, "t", broadcast, 50_000)
    assert bus.retained("t") <= 4 * WINDOW.messages
    await member.stop()
    await listener.stop()


async def test_the_byte_cap_bounds_a_partition_of_large_messages():
    bus = MemoryBus(partitions=1, retention=WINDOW)
    for _ in range(500):
        await bus.publish("big", b"y" * 10_000)
    assert bus.retained("big") * 10_000 <= WINDOW.bytes


async def test_messages_older_than_the_window_go_without_any_new_publish():
    clock = Clock()
    bus = MemoryBus(partitions=2, retention=WINDOW, clock=clock)
    for i in range(50):
        await bus.publish("t", b"m", key=str(i).encode())
    assert bus.retained("t") == 50
    clock.now += 31
    bus.trim()  # what a started bus does every second
    assert bus.retained("t") == 0


async def test_a_late_group_member_gets_what_its_group_has_not_consumed():
    bus = MemoryBus(partitions=3, retention=WINDOW)
    first: list[bytes] = []

    async def take(m: Message) -> None:
        first.append(m.value)

    member = await bus.subscribe(["req"], take, group="dbproc")
    for i in range(30):
        await bus.publish("req", f"a{i}".encode(), key=str(i).encode())
    await settle(bus, "req", first, 30)
    await member.stop()  # the group has no member now; its commits stay
    for i in range(40):
        await bus.publish("req", f"b{i}".encode(), key=str(i).encode())

    later: list[bytes] = []

    async def take_later(m: Message) -> None:
        later.append(m.value)

    joined = await bus.subscribe(["req"], take_later, group="dbproc")
    await settle(bus, "req", later, 40)
    await asyncio.sleep(0.01)
    assert sorted(later) == sorted(f"b{i}".encode() for i in range(40))  # none again, none missed
    await joined.stop()


async def test_a_commit_older_than_what_is_kept_starts_at_the_oldest_kept():
    bus = MemoryBus(partitions=1, retention=WINDOW)
    seen: list[int] = []

    async def take(m: Message) -> None:
        seen.append(m.offset)

    member = await bus.subscribe(["req"], take, group="g")
    await bus.publish("req", b"0")
    await settle(bus, "req", seen, 1)
    await member.stop()
    for i in range(1, 1001):  # far beyond the window while the group has no member
        await bus.publish("req", str(i).encode())
    late = await bus.subscribe(["req"], take, group="g")
    await settle(bus, "req", seen, 1 + WINDOW.messages)
    assert seen[1:] == list(range(1001 - WINDOW.messages, 1001))
    await late.stop()


async def test_a_consumer_that_is_behind_loses_nothing_it_has_not_read():
    bus = MemoryBus(partitions=1, retention=WINDOW)
    gate = asyncio.Event()
    seen: list[int] = []

    async def slow(m: Message) -> None:
        await gate.wait()
        seen.append(m.offset)

    member = await bus.subscribe(["req"], slow, group="g")
    for i in range(5000):
        await bus.publish("req", str(i).encode())
    assert bus.retained("req") == 5000  # far over the window: the group has read none of it
    gate.set()
    await settle(bus, "req", seen, 5000)
    assert seen == list(range(5000))
    await bus.publish("req", b"last")
    await settle(bus, "req", seen, 5001)
    assert bus.retained("req") <= WINDOW.messages
    await member.stop()
