"""The WebSocket feed (`/ws`): prices, candles and account events pushed to subscribers.

`WsServer` listens (the `websockets` library's server, in the app's event loop), a `Session` per
connection speaks the protocol (`protocol`), the `Hub` indexes subscriptions and fans frames out, and each
client's `Outbox` keeps a slow client bounded by conflation. The protocol is in `docs/websocket.md`.
"""

from cfd_server.ws.hub import Hub
from cfd_server.ws.limits import Limits
from cfd_server.ws.server import WsServer

__all__ = ["Hub", "Limits", "WsServer"]
