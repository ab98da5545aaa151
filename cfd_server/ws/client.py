"""One WebSocket connection as the hub sees it: its channels, its sign-in, its error count and its outbox."""

from __future__ import annotations

import asyncio
import itertools
from typing import TYPE_CHECKING

from websockets.asyncio.server import ServerConnection

from cfd_server.ws.outbox import Outbox

if TYPE_CHECKING:
    from cfd_server.auth.session import Session

_ids = itertools.count(1)


class Client:
    """The per-connection state; the hub's indexes point at these.

    `session` is the session the connection authenticated with (its user, `jti`, issue time and expiry) and
    `expiry` the timer that ends it at the token's expiry. Neither is touched on the price path.

    On `account`: `account_seq` is the `seq` of the last account event sent (None before the first), `held` the
    live account frames kept back while missed events are read from the database, and `replay` that reading.
    """

    __slots__ = ("account_seq", "channels", "conn", "errors", "expiry", "held", "id", "outbox", "peer", "replay",
                 "session", "user_id")

    def __init__(self, conn: ServerConnection | None, outbox: Outbox, peer: str = "") -> None:
        self.id = next(_ids)
        self.conn = conn
        self.outbox = outbox
        self.peer = peer
        self.channels: set[str] = set()
        self.user_id: str | None = None
        self.session: Session | None = None
        self.expiry: asyncio.TimerHandle | None = None
        self.errors = 0
        self.account_seq: int | None = None
        self.held: list[tuple[int | None, bytes]] | None = None
        self.replay: asyncio.Task[None] | None = None

    def __repr__(self) -> str:
        return f"<Client {self.id} {self.peer} user={self.user_id} channels={len(self.channels)}>"
