"""Typed operations over the bus (`shared/operations.py`, `shared/bus/rpc.py`): each request declared once,
decoded and encoded in one place, and internal commands that nobody waits on answered by no reply."""

from __future__ import annotations

import asyncio
import logging
import uuid

import pytest

from cfd_dbproc.db import Database
from cfd_dbproc.service import DbProc
from shared import operations as ops
from shared.bus import Message, Topics
from shared.bus.memory import MemoryBus
from shared.bus.rpc import RequestClient, Responder, send
from shared.cache.memory import MemoryCache
from shared.contracts.bus import UserExists, UserExistsQuery
from shared.errors import Rejected
from shared.operations import Operation, Route
from shared.settings import load_settings

ASK = Operation("test.ask", Route.USERS, UserExistsQuery, UserExists)
TELL = Operation("test.tell", Route.USERS, UserExistsQuery, UserExists, command=True)
NOTE = Operation("test.note", Route.USERS, UserExistsQuery, None, command=True)


def test_every_operation_has_one_name_and_a_request_topic(tmp_path):
    names = [op.name for op in ops.ALL]
    assert len(names) == len(set(names))
    routes = Topics(load_settings(environ={}, env="test", data_dir=tmp_path).bus).routes()
    assert {op.route for op in ops.ALL} <= routes.keys()
    assert len(set(routes.values())) == len(routes)  # one topic per route


def test_the_dbproc_answers_every_operation_but_the_pollers_and_nothing_else(tmp_path):
    settings = load_settings(environ={}, env="test", data_dir=tmp_path)
    dbproc = DbProc(settings, MemoryBus(), Database(settings.database, settings.data_dir), MemoryCache())
    answered = dbproc.responder.operations + dbproc.candles._responder.operations
    pollers = {op.name for op in ops.ALL if op.route is Route.REPLAY}
    assert pollers == {"replay.step"}  # a lockstep replay's poller answers it (cfd_poller.service)
    assert sorted(op.name for op in answered) == sorted(op.name for op in ops.ALL if op.name not in pollers)
    by_topic = {op.route for op in dbproc.candles._responder.operations}
    assert by_topic == {Route.CANDLES}  # the candle consumer answers the candle topic, the dbproc the rest


@pytest.fixture
async def wired():
    bus = MemoryBus()
    await bus.start()
    requests, replies = "requests", "replies"
    await bus.ensure_topics([requests, replies])
    responder = Responder(bus, replies)
    seen: list[tuple[str, str | None]] = []
    published: list[Message] = []

    async def ask(query: UserExistsQuery) -> UserExists:
        seen.append((query.email, None))
        return UserExists(exists=True)

    async def tell(query: UserExistsQuery, command_id: str) -> UserExists:
        seen.append((query.email, command_id))
        return UserExists(exists=False)

    async def note(query: UserExistsQuery, command_id: str) -> None:
        seen.append((query.email, command_id))
        if query.email == "refuse@example.com":
            raise Rejected("Not now.", code="not_now")

    async def record(message: Message) -> None:
        published.append(message)

    responder.handle(ASK, ask)
    responder.handle(TELL, tell)
    responder.handle(NOTE, note)
    serving = await bus.subscribe([requests], responder, group="answerers")
    listening = await bus.subscribe([replies], record, group=None)
    client = RequestClient(bus, {Route.USERS: requests}, replies, uuid.uuid4().hex, timeout=5)
    await client.start()
    yield bus, client, seen, published
    await client.stop()
    await serving.stop()
    await listening.stop()
    await bus.stop()


async def test_a_query_and_a_command_come_back_typed_and_only_the_command_gets_its_id(wired):
    _, client, seen, _ = wired
    assert await client.call(ASK, UserExistsQuery(email="a@example.com"), key="a") == UserExists(exists=True)
    assert await client.call(TELL, UserExistsQuery(email="b@example.com"), key="b",
                             command_id="cmd-1") == UserExists(exists=False)
    assert seen == [("a@example.com", None), ("b@example.com", "cmd-1")]


async def test_the_wrong_body_is_refused_before_anything_is_sent(wired):
    _, client, seen, published = wired
    with pytest.raises(TypeError, match=r"test\.ask takes a UserExistsQuery"):
        await client.call(ASK, UserExists(exists=True), key="a")  # type: ignore[arg-type]  # the point
    with pytest.raises(TypeError, match="no reply"):
        await client.call(NOTE, UserExistsQuery(email="a@example.com"), key="a")
    await asyncio.sleep(0.05)
    assert seen == [] and published == []


async def test_an_internal_command_is_applied_and_answered_by_no_reply(wired, caplog):
    bus, client, seen, published = wired
    caplog.set_level(logging.WARNING)
    routes = {Route.USERS: "requests"}
    await send(bus, routes, NOTE, UserExistsQuery(email="a@example.com"), key="a", command_id="risk-1")
    await send(bus, routes, NOTE, UserExistsQuery(email="refuse@example.com"), key="a", command_id="risk-2")
    await client.call(ASK, UserExistsQuery(email="after@example.com"), key="a")  # same key: handled after both
    assert seen[:2] == [("a@example.com", "risk-1"), ("refuse@example.com", "risk-2")]
    assert len(published) == 1  # only the query's reply
    assert "test.note risk-2 refused: Not now. (not_now)" in caplog.text
    with pytest.raises(TypeError, match="has a reply"):
        await send(bus, routes, ASK, UserExistsQuery(email="a@example.com"), key="a", command_id="x")
