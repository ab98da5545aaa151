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
    """

    __slots__ = ("channels", "conn", "errors", "expiry", "id", "outbox", "peer", "session", "user_id")

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

    def __repr__(self) -> str:
        return f"<Client {self.id} {self.peer} user={self.user_id} channels={len(self.channels)}>"
