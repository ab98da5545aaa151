"""The bus contract, on the bus of the selected backend set (in-process or Kafka)."""

from __future__ import annotations

import asyncio
import uuid
from collections import defaultdict

import pytest

from shared.bus import Message, create_bus
from shared.bus.rpc import RequestClient, Responder
from shared.contracts import UserExists, UserExistsQuery
from shared.errors import Conflict, TimedOut
from shared.operations import Operation, Route


@pytest.fixture
async def bus(make_settings):
    the_bus = create_bus(make_settings(topic_prefix=f"bus{uuid.uuid4().hex[:8]}."))
    await the_bus.start()
    yield the_bus
    await the_bus.stop()


async def eventually(predicate, timeout: float = 15.0) -> None:
    loop = asyncio.get_running_loop()
    end = loop.time() + timeout
    while not predicate():
        if loop.time() > end:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.01)


def topic(bus, name: str) -> str:
    return bus.settings.topic(name) if hasattr(bus, "settings") else f"{uuid.uuid4().hex[:6]}.{name}"


async def test_messages_with_one_key_arrive_in_order_across_partitions(bus):
    name = topic(bus, "ordered")
    await bus.ensure_topics([name])
    seen: dict[bytes, list[int]] = defaultdict(list)

    async def handler(message: Message) -> None:
        seen[message.key].append(int(message.value))

    subscription = await bus.subscribe([name], handler, group=f"g-{uuid.uuid4().hex[:6]}")
    keys = [f"user-{i}".encode() for i in range(8)]
    for n in range(40):
        for key in keys:
            await bus.publish(name, str(n).encode(), key=key, wait=False)
    await eventually(lambda: sum(len(v) for v in seen.values()) == 320)
    assert all(seen[key] == list(range(40)) for key in keys)
    await subscription.stop()


async def test_a_group_shares_the_work_and_each_message_is_handled_once(bus):
    name = topic(bus, "shared")
    await bus.ensure_topics([name])
    group = f"g-{uuid.uuid4().hex[:6]}"
    handled: list[tuple[int, bytes]] = []

    def member(index: int):
        async def handler(message: Message) -> None:
            handled.append((index, message.value))
        return handler

    first = await bus.subscribe([name], member(1), group=group)
    second = await bus.subscribe([name], member(2), group=group)
    await asyncio.sleep(0.5 if bus.name == "in-process" else 4)  # let the group settle
    for n in range(60):
        await bus.publish(name, str(n).encode(), key=f"k{n}".encode())
    await eventually(lambda: len(handled) >= 60)
    await asyncio.sleep(0.2)
    assert sorted(int(v) for _, v in handled) == list(range(60))
    assert {i for i, _ in handled} == {1, 2}
    await first.stop()
    await second.stop()


async def test_uncommitted_messages_go_to_the_next_member(bus):
    """A member that stops takes nothing with it: what it did not finish is redelivered."""
    name = topic(bus, "handover")
    await bus.ensure_topics([name])
    group = f"g-{uuid.uuid4().hex[:6]}"
    handled: list[int] = []

    async def handler(message: Message) -> None:
        handled.append(int(message.value))

    first = await bus.subscribe([name], handler, group=group)
    for n in range(10):
        await bus.publish(name, str(n).encode(), key=b"one-key")
    await eventually(lambda: len(handled) == 10)
    await first.stop()
    for n in range(10, 20):
        await bus.publish(name, str(n).encode(), key=b"one-key")
    second = await bus.subscribe([name], handler, group=group)
    await eventually(lambda: len(handled) >= 20)
    assert handled == list(range(20))  # committed work is not repeated, new work is not lost
    await second.stop()


async def test_broadcast_subscribers_each_see_everything_published_after_they_joined(bus):
    name = topic(bus, "fanout")
    await bus.ensure_topics([name])
    await bus.publish(name, b"before")
    a: list[bytes] = []
    b: list[bytes] = []

    async def to_a(m: Message) -> None:
        a.append(m.value)

    async def to_b(m: Message) -> None:
        b.append(m.value)

    sa = await bus.subscribe([name], to_a, group=None)
    sb = await bus.subscribe([name], to_b, group=None)
    for n in range(5):
        await bus.publish(name, str(n).encode(), key=f"k{n}".encode())
    await eventually(lambda: len(a) == 5 and len(b) == 5)
    assert sorted(a) == sorted(b) == [str(n).encode() for n in range(5)]
    await sa.stop()
    await sb.stop()


async def test_request_reply_returns_results_errors_and_times_out(bus):
    requests, replies = topic(bus, "requests"), topic(bus, "replies")
    await bus.ensure_topics([requests, replies])
    responder = Responder(bus, replies)
    exists, refuse, slow = (Operation(name, Route.USERS, UserExistsQuery, UserExists)
                            for name in ("exists", "refuse", "slow"))

    async def say_yes(query: UserExistsQuery) -> UserExists:
        return UserExists(exists=query.email == "a@b.co")

    async def say_no(query: UserExistsQuery) -> UserExists:
        raise Conflict("Already there.", code="already_there")

    async def take_long(query: UserExistsQuery) -> UserExists:
        await asyncio.sleep(2)
        return UserExists(exists=False)

    responder.handle(exists, say_yes)
    responder.handle(refuse, say_no)
    responder.handle(slow, take_long)
    serving = await bus.subscribe([requests], responder, group=f"g-{uuid.uuid4().hex[:6]}")
    client = RequestClient(bus, {Route.USERS: requests}, replies, instance_id=uuid.uuid4().hex, timeout=10)
    await client.start()

    body = UserExistsQuery(email="a@b.co")
    assert (await client.call(exists, body, key="a")).exists is True
    with pytest.raises(Conflict) as raised:
        await client.call(refuse, body, key="a")
    assert raised.value.code == "already_there" and raised.value.status == 409
    with pytest.raises(TimedOut):
        await client.call(slow, body, key="b", timeout=0.3)
    await client.stop()
    await serving.stop()
