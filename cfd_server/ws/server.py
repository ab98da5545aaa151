"""The WebSocket feed's listener: the `websockets` library's own server, in the app's event loop.

Compression is off: permessage-deflate would compress every frame once per connection, while without it
a frame's bytes are the same for every client and are built once (`protocol.text_frame`).

The hub writes those frames straight to each connection's transport, past the library; `fast_send` holds
`FeedConnection`, which keeps that safe (and what it relies on in the library).
"""

from __future__ import annotations

import logging
import socket
from http import HTTPStatus
from typing import cast
from urllib.parse import urlsplit

from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.http11 import Request, Response
from websockets.protocol import State

from cfd_server.ws.client import Client
from cfd_server.ws.fast_send import FeedConnection
from cfd_server.ws.hub import Hub
from cfd_server.ws.limits import Limits
from cfd_server.ws.outbox import Outbox
from cfd_server.ws.protocol import PATH
from cfd_server.ws.replay import EventHistory, Replays
from cfd_server.ws.session import Authenticator, Session, Snapshots, Throttle

log = logging.getLogger(__name__)

_OPEN = State.OPEN


class WsServer:
    """Listens on `host:port` at `/ws` and runs a `Session` per connection; `port` is the bound port."""

    def __init__(self, hub: Hub, snapshots: Snapshots, *, host: str, port: int, reuse_port: bool = False,
                 limits: Limits | None = None, authenticate: Authenticator | None = None,
                 throttle: Throttle | None = None, history: EventHistory | None = None) -> None:
        """`history`: where the account events a connection missed are read (without it, no resumes).
        `reuse_port`: bind with SO_REUSEPORT, beside the other workers of a `cfd server --workers` group."""
        self.hub = hub
        self.snapshots = snapshots
        self.host = host
        self.requested_port = port
        self.reuse_port = reuse_port
        self.limits = limits or Limits()
        self.authenticate = authenticate
        self.throttle = throttle
        self.replays = Replays(hub, history) if history is not None else None
        self._server: Server | None = None

    @property
    def port(self) -> int:
        if self._server is None:
            raise RuntimeError("the WebSocket server is not started")
        return self._server.sockets[0].getsockname()[1]

    async def start(self) -> None:
        limits = self.limits
        try:
            self._server = await serve(
                self._handle, self.host, self.requested_port,
                compression=None,
                max_size=limits.max_frame_bytes,
                max_queue=16,
                write_limit=limits.write_buffer_high,
                ping_interval=limits.ping_interval,
                ping_timeout=limits.ping_timeout,
                close_timeout=limits.close_timeout,
                process_request=self._check_request,
                backlog=4096,
                reuse_port=self.reuse_port,
                create_connection=FeedConnection,
                server_header=None,  # no `Server: Python/x websockets/y` on the handshake
            )
        except OSError as exc:
            raise RuntimeError(f"the WebSocket feed cannot listen on {self.host}:{self.requested_port}: {exc} "
                               "(is the port in use? set CFD_WS_PORT)") from exc
        log.info("WebSocket feed on ws://%s:%d%s", self.host, self.port, PATH)

    async def stop(self) -> None:
        """Close every connection (1001 going away) and stop listening."""
        if self._server is not None:
            self._server.close(close_connections=True)
            await self._server.wait_closed()
            self._server = None

    def _check_request(self, connection: ServerConnection, request: Request) -> Response | None:
        if urlsplit(request.path).path != PATH:
            return connection.respond(HTTPStatus.NOT_FOUND, f"Not found: the price feed is at {PATH}\n")
        if len(self.hub.clients) >= self.limits.max_connections:
            return connection.respond(HTTPStatus.SERVICE_UNAVAILABLE, "Too many connections; retry shortly.\n")
        return None

    async def _handle(self, connection: ServerConnection) -> None:
        conn = cast(FeedConnection, connection)  # serve() makes every connection with create_connection=FeedConnection
        if self.limits.socket_send_buffer:
            sock = conn.transport.get_extra_info("socket")
            if sock is not None:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, self.limits.socket_send_buffer)
        client: Client

        def stuck(reason: str) -> None:
            self.hub.stuck(client, reason)

        outbox = Outbox(conn.transport, self.limits, schedule=self.hub.schedule, on_stuck=stuck)
        conn.outbox = outbox
        if conn.protocol.state is not _OPEN:  # closed between the handshake and now
            outbox.close()
        peer = conn.remote_address
        client = Client(conn, outbox, peer=f"{peer[0]}:{peer[1]}" if peer else "")
        self.hub.add(client)
        try:
            await Session(self.hub, client, self.limits, self.snapshots, self.authenticate, self.replays,
                          self.throttle).run(conn)
        finally:
            self.hub.remove(client)
