"""Resuming the `account` channel in the hub: the stored events after `since`, then the live ones, each once and
in order, whatever arrives while the database is read; a gap in the live events is filled from the database; a
resume from before what is kept gets `resume_gap` and a fresh state."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from decimal import Decimal

import msgspec
import pytest

from cfd_server.auth.session import Session
from cfd_server.ws.client import Client
from cfd_server.ws.hub import Hub
from cfd_server.ws.protocol import parse_channel
from cfd_server.ws.replay import Replays
from shared.contracts.bus import AccountEventsPage
from shared.contracts.events import AccountState
from shared.contracts.rest import Account, User

USER = "alice"


class Outbox:
    def __init__(self) -> None:
        self.frames: list[dict] = []
        self.done = False

    def put(self, key, frame: bytes) -> None:
        self.frames.append(json.loads(frame[frame.index(b"{"):]))

    put_now = put

    def flush(self) -> None:
        pass

    def close(self) -> None:
        self.done = True


def event(seq: int) -> bytes:
    return json.dumps({"type": "account", "event": "snapshot", "user_id": USER, "seq": seq}).encode()


class History:
    """Stored events `kept` (a range of seqs) of a user whose latest is `latest`; each read waits for `gate`."""

    def __init__(self, latest: int, kept: range | None = None) -> None:
        self.latest = latest
        self.kept = kept if kept is not None else range(1, latest + 1)
        self.gate = asyncio.Event()
        self.gate.set()
        self.reads: list[tuple[int, int]] = []
        self.fail = False

    async def events(self, user_id: str, since: int, limit: int) -> AccountEventsPage:
        await self.gate.wait()
        self.reads.append((since, limit))
        if self.fail:
            raise ConnectionError("the dbproc is away")
        seqs = [s for s in self.kept if s > since][:limit]
        gap = since > self.latest or (since < self.latest and (not seqs or seqs[0] != since + 1))
        return AccountEventsPage(events=[] if gap else [msgspec.Raw(event(s)) for s in seqs], latest=self.latest,
                                 gap=gap)

    async def state(self, user_id: str) -> AccountState:
        account = Account(currency="USD", balance=Decimal("10000"), equity=Decimal("10000"), used_margin=Decimal(0),
                          free_margin=Decimal("10000"), margin_level=None, unrealized_pnl=Decimal(0))
        return AccountState(seq=self.latest, account=account, positions=[], orders=[])


def on_account(hub: Hub) -> Client:
    client = Client(None, Outbox())  # type: ignore[arg-type]
    hub.add(client)
    user = User(id=USER, email="a@example.com", name="A", created_at=0)
    hub.authenticate(client, Session(jti=uuid.uuid4().hex, user=user, expires_at=int(time.time() + 3600),
                                     issued_ms=0))
    return client


def seqs(client: Client) -> list[int | None]:
    return [f.get("seq") for f in client.outbox.frames if f["type"] in ("account", "account_state")]  # type: ignore[attr-defined]


@pytest.fixture
async def hub() -> Hub:
    return Hub()


async def resume(hub: Hub, replays: Replays, client: Client, since: int) -> asyncio.Task[None]:
    hub.hold(client)  # as the session does: before the channel is joined
    hub.subscribe(client, [parse_channel("account")])
    return replays.start(client, since)


async def test_live_events_during_a_resume_wait_and_none_is_sent_twice(hub):
    history = History(latest=5)
    replays = Replays(hub, history)
    client = on_account(hub)
    history.gate.clear()  # the database read is slow
    task = await resume(hub, replays, client, since=2)
    for seq in (5, 6, 7):  # 5 is committed before the read and published during it: both have it
        hub.publish_account(USER, event(seq), seq)
    hub.publish_account(USER, b'{"type":"account","event":"mark","user_id":"alice","seq":null}')
    assert seqs(client) == []  # nothing live before the missed ones
    history.gate.set()
    await task
    assert seqs(client) == [3, 4, 5, 6, 7, None]
    hub.publish_account(USER, event(7), 7)  # a late duplicate of a live one
    hub.publish_account(USER, event(8), 8)
    assert seqs(client) == [3, 4, 5, 6, 7, None, 8]


async def test_a_resume_reads_page_after_page(hub, monkeypatch):
    monkeypatch.setattr("cfd_server.ws.replay.PAGE", 2)
    history = History(latest=7)
    client = on_account(hub)
    await (await resume(hub, Replays(hub, history), client, since=0))
    assert seqs(client) == [1, 2, 3, 4, 5, 6, 7]
    assert [since for since, _ in history.reads] == [0, 2, 4, 6]


async def test_a_live_event_that_skips_a_number_is_held_until_the_missing_one_is_read(hub):
    history = History(latest=4)
    Replays(hub, history)
    client = on_account(hub)
    hub.subscribe(client, [parse_channel("account")])
    hub.publish_account(USER, event(2), 2)  # the first it sees: where it starts
    history.gate.clear()
    hub.publish_account(USER, event(4), 4)  # 3 was lost between the commit and the bus
    hub.publish_account(USER, event(5), 5)
    assert seqs(client) == [2]
    assert client.replay is not None
    history.gate.set()
    await client.replay
    assert seqs(client) == [2, 3, 4, 5]


async def test_a_resume_from_before_what_is_kept_gets_resume_gap_then_a_fresh_state(hub):
    history = History(latest=9, kept=range(6, 10))  # 1 to 5 were purged
    client = on_account(hub)
    history.gate.clear()
    task = await resume(hub, Replays(hub, history), client, since=3)
    hub.publish_account(USER, event(9), 9)  # already in the state
    hub.publish_account(USER, event(10), 10)
    history.gate.set()
    await task
    frames = client.outbox.frames  # type: ignore[attr-defined]
    assert [f["type"] for f in frames] == ["error", "account_state", "account"]
    assert frames[0]["code"] == "resume_gap"
    assert frames[1]["seq"] == 9 and frames[1]["account"]["balance"] == "10000" and frames[1]["positions"] == []
    assert frames[2]["seq"] == 10


async def test_a_resume_from_beyond_the_latest_is_a_gap_too(hub):
    history = History(latest=4)
    client = on_account(hub)
    await (await resume(hub, Replays(hub, history), client, since=40))  # e.g. a database restored from a backup
    assert [f["type"] for f in client.outbox.frames] == ["error", "account_state"]  # type: ignore[attr-defined]
    hub.publish_account(USER, event(5), 5)
    assert seqs(client)[-1] == 5


async def test_leaving_the_channel_stops_a_resume_and_forgets_where_it_was(hub):
    history = History(latest=5)
    client = on_account(hub)
    history.gate.clear()
    task = await resume(hub, Replays(hub, history), client, since=1)
    hub.publish_account(USER, event(6), 6)
    hub.unsubscribe(client, ["account"])
    history.gate.set()
    await asyncio.gather(task, return_exceptions=True)
    assert task.cancelled() and seqs(client) == []
    assert client.account_seq is None and client.held is None


async def test_when_the_events_cannot_be_read_the_connection_is_told_and_let_go(hub):
    history = History(latest=5)
    history.fail = True
    client = on_account(hub)
    await (await resume(hub, Replays(hub, history), client, since=1))
    frames = client.outbox.frames  # type: ignore[attr-defined]
    assert [f["code"] for f in frames if f["type"] == "error"] == ["backend_unavailable"]
    assert client not in hub.clients and client.outbox.done  # type: ignore[attr-defined]


async def test_a_resync_looks_in_the_database_for_what_a_connection_was_not_sent(hub):
    history = History(latest=3)
    client = on_account(hub)
    Replays(hub, history)
    hub.subscribe(client, [parse_channel("account")])
    hub.publish_account(USER, event(1), 1)
    hub.recheck(USER)  # 2 and 3 were committed, their publish lost, and the command retried
    assert client.replay is not None
    await client.replay
    assert seqs(client) == [1, 2, 3]
