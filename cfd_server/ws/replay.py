"""Resuming the `account` channel: the events a connection missed, read from the database, then live again.

A resume starts when a client subscribes with `since` (it has every event up to that `seq`), and when the hub
sees a live event skip a number (`Hub.refill`). Meanwhile the hub holds the connection's live account frames
back (`Hub.hold`); the resume sends the stored events after `since`, a page at a time, then the hub sends the
held frames but those the resume sent already (`Hub.release`): no gap, no duplicate, in order.

When the events after `since` are no longer kept (older than `CFD_ACCOUNT_EVENT_RETENTION_HOURS`), or `since` is
beyond the user's latest event, the connection gets an `error` frame `resume_gap` and then an `account_state`
frame (the account, its open positions and working orders, as of a `seq`); the events after that `seq` follow.
When the database cannot be read, the connection gets an `error` frame `backend_unavailable` and is closed with
1013 (try again later): a client reconnects and resumes from its last `seq`, as after any dropped connection.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Protocol

import msgspec

from cfd_server.ws.client import Client
from cfd_server.ws.hub import Hub
from cfd_server.ws.protocol import ACCOUNT, CLOSE_TRY_AGAIN
from shared.contracts import encode
from shared.contracts.bus import AccountEventsPage
from shared.contracts.events import AccountState
from shared.contracts.ws import ErrorFrame

log = logging.getLogger(__name__)

PAGE = 500
"""Stored events read per request to the dbproc."""

RESUME_GAP = ("resume_gap", "The events after your since are no longer kept (or since is beyond the latest); an "
                            "account_state frame follows: rebuild from it, then follow the events after its seq.")


class EventHistory(Protocol):
    """The account events stored by the dbproc, and the state to start again from."""

    async def events(self, user_id: str, since: int, limit: int) -> AccountEventsPage: ...

    async def state(self, user_id: str) -> AccountState: ...


class _Seq(msgspec.Struct):
    seq: int


_seq_decoder = msgspec.json.Decoder(_Seq)


class Replays:
    """Runs the resumes of one server's connections (`Hub.refill` points here)."""

    def __init__(self, hub: Hub, history: EventHistory) -> None:
        self.hub = hub
        self.history = history
        hub.refill = self.refill

    def refill(self, client: Client, since: int) -> None:
        self.start(client, since)

    def start(self, client: Client, since: int) -> asyncio.Task[None]:
        """Send `client` the account events after `since` (its live account frames are held meanwhile), then
        release the held ones. A resume already running for it gives way to this one."""
        assert client.user_id is not None  # only a signed-in connection is on `account`
        if client.replay is not None:
            client.replay.cancel()
        self.hub.hold(client)
        client.account_seq = since
        task = asyncio.get_running_loop().create_task(self._run(client, client.user_id, since),
                                                      name=f"account-resume-{client.id}")
        client.replay = task
        return task

    def _still_on(self, client: Client, user_id: str) -> bool:
        return client.user_id == user_id and ACCOUNT in client.channels and not client.outbox.done

    async def _run(self, client: Client, user_id: str, since: int) -> None:
        hub = self.hub
        try:
            while True:
                page = await self.history.events(user_id, since, PAGE)
                if not self._still_on(client, user_id):
                    return
                if page.gap:
                    state = await self.history.state(user_id)
                    if not self._still_on(client, user_id):
                        return
                    hub.send(client, encode(ErrorFrame(code=RESUME_GAP[0], message=RESUME_GAP[1])))
                    hub.send(client, encode(state))
                    client.account_seq = state.seq
                    break
                for raw in page.events:
                    payload = bytes(raw)
                    seq = _seq_decoder.decode(payload).seq
                    hub.send_replayed(client, seq, payload)
                    since = max(since, seq)
                if len(page.events) < PAGE:
                    break
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # the dbproc cannot answer: the client comes back and resumes
            if self._still_on(client, user_id):
                await self._give_up(client, exc)
            return
        if client.replay is asyncio.current_task():
            client.replay = None
            hub.release(client)

    async def _give_up(self, client: Client, exc: Exception) -> None:
        log.warning("closing %r: its missed account events cannot be read (%s)", client, exc)
        self.hub.send(client, encode(ErrorFrame(
            code="backend_unavailable",
            message="The missed account events cannot be read right now; reconnect and subscribe again with since.")))
        self.hub.flush()
        client.replay = None
        self.hub.remove(client)
        if client.conn is not None:
            await client.conn.close(CLOSE_TRY_AGAIN, "account events unavailable")
