"""The limits the WebSocket hub enforces on each connection (documented in `docs/websocket.md`)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, kw_only=True)
class Limits:
    max_frame_bytes: int = 4096
    """A bigger client frame closes the connection with 1009 (enforced by the websockets library)."""
    max_subscriptions: int = 50
    """Channels one connection may hold at once; a subscribe over the limit is refused whole."""
    max_errors: int = 20
    """Error frames one connection may earn before it is closed with 1008."""
    max_connections: int = 20_000
    """Open connections per server; the next handshake is refused with HTTP 503."""
    write_buffer_high: int = 64 * 1024
    """Bytes waiting in a connection's write buffer above which it counts as slow and gets conflated."""
    stuck_after: float = 10.0
    """Seconds a slow connection may go without its write buffer draining before it is closed with 4008."""
    max_backlog: int = 1_000
    """Frames a slow connection may owe after conflation (account events are never conflated)."""
    drain_poll: float = 0.05
    """How often a slow connection's write buffer is checked (its conflated feed runs at most this fast)."""
    socket_send_buffer: int | None = None
    """SO_SNDBUF for each connection's socket; None keeps the kernel's (auto-tuned) size."""
    ping_interval: float | None = 20.0
    ping_timeout: float | None = 20.0
    close_timeout: float = 5.0
