"""The feed's frames go straight to each connection's transport, past the `websockets` library; this
module is what keeps that safe, and the one place that leans on the library's internals.

The hub builds each frame once (`protocol.text_frame`) and the connection's `Outbox` writes those bytes to
`conn.transport` itself, so a tick costs one `transport.write` per client and nothing per frame in the
library. The library does not know about these writes, so something must stop them the moment the
connection stops being open: no data frame may follow a close frame. `FeedConnection` does it by closing
the outbox when the library writes its close frame or loses the connection; the hot path then checks one
flag (`Outbox.done`) instead of asking the library for its state on every write.

What this relies on in `websockets` (the asyncio implementation; `pyproject.toml` pins the minor version
it was checked against, and `tests/unit/test_websockets_contract.py` fails if any of it changes):

- `websockets.asyncio.server.serve(create_connection=...)` builds every connection from the class given
  (a subclass of `ServerConnection`), and `ServerConnection` has the `transport` and `protocol` attributes.
- `Connection.send_data()`, an undocumented method taking no arguments, is the one place the library
  writes to the transport: every byte of its own (pongs, pings, the close frame) goes out through it, right
  after its sans-I/O protocol queued them. When it writes a close frame, `protocol.state` is no longer
  `State.OPEN`.
- The library keeps no write buffer of its own: `send_data()` hands whole frames to `transport.write`, so
  the outbox's frames and the library's interleave only at frame boundaries.
- `connection_lost()` (the `asyncio.Protocol` callback, overridden by the library's `Connection`) runs once
  when the connection is lost.
- Compression is off (`compression=None` in `server.WsServer`) and server frames are not masked, so a
  frame's bytes are the same for every connection.
"""

from __future__ import annotations

from websockets.asyncio.server import ServerConnection
from websockets.protocol import State

from cfd_server.ws.outbox import Outbox

_OPEN = State.OPEN


class FeedConnection(ServerConnection):
    """A `ServerConnection` that closes its outbox when it stops being open."""

    outbox: Outbox | None = None

    def send_data(self) -> None:
        # Every byte of the library's own (close frame included) goes out here.
        super().send_data()
        if self.protocol.state is not _OPEN and self.outbox is not None:
            self.outbox.close()

    def connection_lost(self, exc: Exception | None) -> None:
        if self.outbox is not None:
            self.outbox.close()
        super().connection_lost(exc)
