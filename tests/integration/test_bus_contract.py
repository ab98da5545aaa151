"""The bus contract, on the bus of the selected backend set (in-process or Kafka)."""

from __future__ import annotations

import asyncio
import uuid
from collections import defaultdict

import pytest

from shared.bus import Message, create_bus
from shared.bus.rpc import RequestClient, Responder
from shared.contracts.bus import UserExists, UserExistsQuery
from shared.errors import Conflict, TimedOut
from shared.operations import Operation, Route


@pytest.fixture
async def bus(make_settings):
    settings = make_settings(bus={"topic_prefix": f"bus{uuid.uuid4().hex[:8]}."})
    the_bus = create_bus(settings.bus, settings.instance_id)
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


async def test_a_batched_member_gets_what_queued_up_in_order_and_commits_it_together(bus):
    """Messages that pile up while the handler is busy come as one list, of one partition, in order; what a batch
    held is committed with it, and the next member starts after it."""
    name = topic(bus, "batched")
    await bus.ensure_topics([name])
    group = f"g-{uuid.uuid4().hex[:6]}"
    batches: list[list[Message]] = []
    busy = asyncio.Event()

    async def handler(messages: list[Message]) -> None:
        batches.append(messages)
        await busy.wait()  # the first batch holds the partition while the rest queue up

    first = await bus.subscribe([name], handler, group=group, batched=True)
    await bus.publish(name, b"0", key=b"one-key")
    await eventually(lambda: len(batches) == 1)
    for n in range(1, 41):
        await bus.publish(name, str(n).encode(), key=b"one-key")
    busy.set()
    await eventually(lambda: sum(len(b) for b in batches) == 41)
    assert [int(m.value) for b in batches for m in b] == list(range(41))
    assert len(batches) < 41 and max(len(b) for b in batches) > 1  # what queued up came together
    assert all(len({m.partition for m in b}) == 1 for b in batches)
    await first.stop()

    for n in range(41, 45):
        await bus.publish(name, str(n).encode(), key=b"one-key")
    second = await bus.subscribe([name], handler, group=group, batched=True)
    await eventually(lambda: sum(len(b) for b in batches) >= 45)
    assert [int(m.value) for b in batches for m in b] == list(range(45))  # nothing handled twice, nothing lost
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


async def test_partition_for_names_the_partition_a_keyed_message_arrives_on(bus):
    name = topic(bus, "keyed")
    await bus.ensure_topics([name])
    arrived: dict[bytes, int] = {}

    async def handler(message: Message) -> None:
        assert message.key is not None
        arrived[message.key] = message.partition

    subscription = await bus.subscribe([name], handler, group=None)
    keys = [str(uuid.uuid4()).encode() for _ in range(150)] + [b"", b"a", b"operator", b"health", b"\xff" * 7]
    for key in keys:
        await bus.publish(name, b"x", key=key, wait=False)
    await eventually(lambda: len(arrived) == len(keys))
    await subscription.stop()
    assert {key: bus.partition_for(name, key) for key in keys} == arrived
    assert len(set(arrived.values())) > 1  # the keys spread: the test compares something


class Member:
    """A group member that records, in one log shared with the other members, each assignment, revocation and
    message, and what it owns at each moment."""

    def __init__(self, name: str, log: list[tuple[str, str, object]]) -> None:
        self.name = name
        self.log = log
        self.owned: set[tuple[str, int]] = set()
        self.assigned: list[set[tuple[str, int]]] = []
        self.revoked: list[set[tuple[str, int]]] = []
        self.foreign: list[tuple[str, int, int]] = []  # messages handed over while their partition was not owned

    async def on_assigned(self, partitions: set[tuple[str, int]]) -> None:
        await asyncio.sleep(0.05)  # a callback that takes a while (the risk engine loads accounts) is waited for
        assert not partitions & self.owned, "assigned twice"
        self.owned |= partitions
        self.assigned.append(partitions)
        self.log.append((self.name, "assigned", partitions))

    async def on_revoked(self, partitions: set[tuple[str, int]]) -> None:
        assert partitions <= self.owned, "revoked without having been assigned"
        self.owned -= partitions
        self.revoked.append(partitions)
        self.log.append((self.name, "revoked", partitions))

    async def handle(self, message: Message) -> None:
        if (message.topic, message.partition) not in self.owned:
            self.foreign.append((message.topic, message.partition, message.offset))
        self.log.append((self.name, "message", (message.topic, message.partition)))
        await asyncio.sleep(0.002)

    async def join(self, bus, topics: list[str], group: str):
        return await bus.subscribe(topics, self.handle, group=group, on_assigned=self.on_assigned,
                                   on_revoked=self.on_revoked)


def _every_partition(bus, topics: list[str]) -> set[tuple[str, int]]:
    count = bus.partitions if bus.name == "in-process" else bus.settings.partitions
    return {(t, p) for t in topics for p in range(count)}


async def _keep_publishing(bus, name: str, stop: asyncio.Event) -> None:
    n = 0
    while not stop.is_set():
        await bus.publish(name, str(n).encode(), key=f"k{n % 40}".encode(), wait=False)
        n += 1
        await asyncio.sleep(0.005)


async def test_a_member_is_told_what_it_owns_before_the_first_message_of_it(bus):
    name = topic(bus, "assigned")
    await bus.ensure_topics([name])
    for n in range(60):  # waiting before the member joins
        await bus.publish(name, str(n).encode(), key=f"k{n}".encode())
    log: list[tuple[str, str, object]] = []
    member = Member("one", log)
    subscription = await member.join(bus, [name], f"g-{uuid.uuid4().hex[:6]}")
    await eventually(lambda: sum(1 for _, kind, _ in log if kind == "message") >= 60, timeout=30)
    await subscription.stop()
    assert member.assigned == [_every_partition(bus, [name])]
    assert log[0][1] == "assigned" and member.foreign == []
    assert member.revoked == [_every_partition(bus, [name])] and log[-1][1] == "revoked"  # stop() revokes
    assert member.owned == set()


async def test_a_second_member_takes_over_what_the_first_is_told_it_lost_and_gets_it_back_when_it_stops(bus):
    name = topic(bus, "moving")
    await bus.ensure_topics([name])
    group = f"g-{uuid.uuid4().hex[:6]}"
    everything = _every_partition(bus, [name])
    log: list[tuple[str, str, object]] = []
    first, second = Member("first", log), Member("second", log)
    stop = asyncio.Event()
    publishing = asyncio.ensure_future(_keep_publishing(bus, name, stop))
    first_subscription = await first.join(bus, [name], group)
    second_subscription = None
    try:
        await eventually(lambda: first.owned == everything, timeout=30)
        second_subscription = await second.join(bus, [name], group)
        await eventually(lambda: bool(second.owned) and not (first.owned & second.owned)
                         and first.owned | second.owned == everything, timeout=30)
        await asyncio.sleep(0.3)  # messages flow to both
        moved = set(second.owned)
        assert moved != everything and first.revoked == [moved] and second.assigned == [moved]
        assert first.assigned == [everything]  # the partitions it keeps were not revoked and assigned again

        await second_subscription.stop()  # the first member gets back what the second had
        second_subscription = None
        await eventually(lambda: first.owned == everything, timeout=30)
        assert second.revoked == [moved] and second.owned == set()
        assert first.assigned == [everything, moved]
        announced = [(who, kind) for who, kind, _ in log if kind != "message"]
        assert announced[-2:] == [("second", "revoked"), ("first", "assigned")], announced  # it let go first
        await asyncio.sleep(0.3)
    finally:
        stop.set()
        await publishing
        if second_subscription is not None:
            await second_subscription.stop()
        await first_subscription.stop()
    assert first.foreign == [] and second.foreign == [], "a message reached a member that did not own its partition"
    for partition in moved:  # each moved partition went from the first member to the second and back, strictly
        owners = [who for who, kind, what in log if kind == "message" and what == partition]
        turns = [who for i, who in enumerate(owners) if i == 0 or owners[i - 1] != who]
        assert turns == ["first", "second", "first"][:len(turns)], turns
    if bus.name == "in-process":  # one process: the old owner's revocation also comes before the new assignment
        for partition in moved:
            owner = None
            for who, kind, what in log:
                if kind == "assigned" and partition in what:
                    assert owner is None, f"{partition}: assigned to {who} while {owner} held it"
                    owner = who
                elif kind == "revoked" and partition in what:
                    assert owner == who
                    owner = None


async def test_a_group_member_reports_what_waits_for_it_per_partition(bus):
    name = topic(bus, "lagging")
    await bus.ensure_topics([name])
    handled: list[int] = []
    release = asyncio.Event()

    async def handler(message: Message) -> None:
        if handled:  # the first goes through; the rest wait, as behind a slow command
            await release.wait()
        handled.append(int(message.value))

    subscription = await bus.subscribe([name], handler, group=f"g-{uuid.uuid4().hex[:6]}")
    await bus.publish(name, b"0", key=b"user-1")
    await eventually(lambda: handled == [0])
    for n in range(1, 6):
        await bus.publish(name, str(n).encode(), key=b"user-1")
    partition = (name, bus.partition_for(name, b"user-1"))
    await eventually(lambda: subscription.lag().get(partition) == 5)  # five published, none handled yet
    assert all(lag == 0 for tp, lag in subscription.lag().items() if tp != partition)
    release.set()
    await eventually(lambda: handled == list(range(6)) and subscription.lag().get(partition) == 0)
    await subscription.stop()
