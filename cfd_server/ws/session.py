"""A connection's conversation: the welcome, then each client op answered, errors counted.

A bad frame gets an `error` frame and the connection stays; the `max_errors`-th error closes it (1008).
An `auth` attaches the connection to the token's session until that session ends (see `Hub.end_sessions`).
A subscribe is checked whole before anything changes: an unknown channel, `account` before `auth`, or one
channel over the limit refuses the whole request. New subscribers get the latest state at once: the last
price of each market, the live candle of each bucket. A subscribe to `account` with `since` first sends the
account events after that `seq` (`cfd_server.ws.replay`); the connection's next frame is read after that.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Protocol

from websockets.asyncio.server import ServerConnection
from websockets.exceptions import ConnectionClosed

import shared
from cfd_server.ws.client import Client
from cfd_server.ws.hub import Hub
from cfd_server.ws.limits import Limits
from cfd_server.ws.protocol import ACCOUNT, CLOSE_POLICY, Channel, ProtocolError, parse_channel, parse_op
from cfd_server.ws.replay import Replays
from shared.clock import now_ms
from shared.contracts import encode
from shared.contracts.ws import (
    AuthenticatedFrame,
    AuthOp,
    PingOp,
    PongFrame,
    SubscribedFrame,
    SubscribeOp,
    UnsubscribedFrame,
    UnsubscribeOp,
    WelcomeFrame,
)
from shared.errors import CfdError
from shared.markets import MARKETS

if TYPE_CHECKING:
    from cfd_server.auth import session as signed_in

log = logging.getLogger(__name__)

Authenticator = Callable[[str], Awaitable["signed_in.Session"]]
"""Resolves an access token to its live session, or raises a `CfdError` (e.g. `Unauthorized`)."""
Throttle = Callable[["signed_in.Session"], Awaitable[object]]
"""Counts one subscribe of a signed-in user or key; raises `Throttled` over their limit."""


class Snapshots(Protocol):
    """The latest state a new subscriber gets first (encoded frames, or None when there is none yet)."""

    def price(self, symbol: str) -> bytes | None: ...

    def candle(self, symbol: str, interval: str) -> bytes | None: ...


class Session:
    """Runs one connection from welcome to close."""

    def __init__(self, hub: Hub, client: Client, limits: Limits, snapshots: Snapshots,
                 authenticate: Authenticator | None, replays: Replays | None = None,
                 throttle: Throttle | None = None) -> None:
        self.hub = hub
        self.client = client
        self.limits = limits
        self.snapshots = snapshots
        self.authenticate = authenticate
        self.replays = replays
        self.throttle = throttle

    async def run(self, conn: ServerConnection) -> None:
        self.send(encode(WelcomeFrame(version=shared.__version__, server_time=now_ms(),
                                      max_frame_bytes=self.limits.max_frame_bytes,
                                      max_subscriptions=self.limits.max_subscriptions)))
        try:
            async for message in conn:
                try:
                    await self.handle(message)
                except ProtocolError as exc:
                    if not await self.error(conn, exc):
                        return
        except ConnectionClosed:
            pass

    def send(self, payload: bytes) -> None:
        self.hub.send(self.client, payload)

    async def error(self, conn: ServerConnection, exc: ProtocolError) -> bool:
        """Send an error frame; close with 1008 on the last allowed error. True if the connection stays."""
        self.client.errors += 1
        self.send(exc.frame())
        if self.client.errors >= self.limits.max_errors:
            log.info("closing %r after %d errors", self.client, self.client.errors)
            self.hub.flush()  # the last error frame goes out before the close frame
            self.hub.remove(self.client)  # and no data frame after it
            await conn.close(CLOSE_POLICY, "too many errors")
            return False
        return True

    async def handle(self, message: str | bytes) -> None:
        if isinstance(message, bytes):
            raise ProtocolError("invalid_frame", "Send JSON in text frames; binary frames are not read.")
        op = parse_op(message)
        if isinstance(op, SubscribeOp):
            if self.throttle is not None and self.client.session is not None:
                try:
                    await self.throttle(self.client.session)
                except CfdError as exc:  # over the user's subscribe limit: this op is refused, the connection stays
                    raise ProtocolError(exc.code, exc.message) from None
            await self.subscribe(op.channels, op.since)
        elif isinstance(op, UnsubscribeOp):
            channels = _unique(parse_channel(name) for name in op.channels)
            self.hub.unsubscribe(self.client, channels)
            self.send(encode(UnsubscribedFrame(channels=[c.name for c in channels])))
        elif isinstance(op, AuthOp):
            await self.auth(op.token)
        elif isinstance(op, PingOp):
            self.send(encode(PongFrame(id=op.id, server_time=now_ms())))

    async def subscribe(self, names: list[str], since: int | None = None) -> None:
        channels = _unique(parse_channel(name) for name in names)
        client = self.client
        account = any(c.kind == ACCOUNT for c in channels)
        if since is not None and not account:
            raise ProtocolError("invalid_frame", "since is the last account event you have: subscribe to account "
                                                 "with it.")
        if since is not None and self.replays is None:
            raise ProtocolError("resume_unavailable", "This server cannot resume the account channel.")
        if account and client.user_id is None:
            raise ProtocolError("auth_required", 'Send {"op":"auth","token":"..."} before subscribing to account.')
        new = [c for c in channels if c.name not in client.channels]
        if len(client.channels) + len(new) > self.limits.max_subscriptions:
            raise ProtocolError("too_many_subscriptions",
                                f"At most {self.limits.max_subscriptions} channels per connection; "
                                f"this one has {len(client.channels)}.")
        if since is not None:
            self.hub.hold(client)  # before the channel is joined, so no live event slips past the resume
        self.hub.subscribe(client, new)
        self.send(encode(SubscribedFrame(channels=[c.name for c in channels])))
        for channel in new:
            for frame in self._snapshot(channel):
                self.send(frame)
        if since is not None and self.replays is not None:
            await asyncio.wait([self.replays.start(client, since)])

    def _snapshot(self, channel: Channel) -> list[bytes]:
        if channel.kind == "prices":
            symbols = MARKETS if channel.symbol == "*" else (channel.symbol,)
            return [f for s in symbols if (f := self.snapshots.price(s)) is not None]  # type: ignore[arg-type]
        if channel.kind == "candles":
            frame = self.snapshots.candle(channel.symbol, channel.interval)  # type: ignore[arg-type]
            return [frame] if frame is not None else []
        return []

    async def auth(self, token: str) -> None:
        if self.authenticate is None:
            raise ProtocolError("auth_unavailable", "This server does not accept sign-ins on the feed.")
        try:
            session = await self.authenticate(token)
        except CfdError as exc:
            raise ProtocolError(exc.code, exc.message) from None
        self.hub.authenticate(self.client, session)
        self.send(encode(AuthenticatedFrame(user_id=session.user.id)))


def _unique(channels) -> list[Channel]:
    seen: dict[str, Channel] = {}
    for channel in channels:
        seen.setdefault(channel.name, channel)
    return list(seen.values())
