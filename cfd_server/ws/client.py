"""One WebSocket connection as the hub sees it: its channels, its user, its error count and its outbox."""

from __future__ import annotations

import itertools

from websockets.asyncio.server import ServerConnection

from cfd_server.ws.outbox import Outbox

_ids = itertools.count(1)


class Client:
    """The per-connection state; the hub's indexes point at these."""

    __slots__ = ("channels", "conn", "errors", "id", "outbox", "peer", "user_id")

    def __init__(self, conn: ServerConnection | None, outbox: Outbox, peer: str = "") -> None:
        self.id = next(_ids)
        self.conn = conn
        self.outbox = outbox
        self.peer = peer
        self.channels: set[str] = set()
        self.user_id: str | None = None
        self.errors = 0

    def __repr__(self) -> str:
        return f"<Client {self.id} {self.peer} user={self.user_id} channels={len(self.channels)}>"
