"""`FeedClient`: the WebSocket feed (`/ws`) with automatic reconnect, as a stream of typed events.

    feed = FeedClient(ws_url, channels=["prices.*", "candles.1m.SOL_USDC"], token=token)
    async with feed:
        async for event in feed:
            match event:
                case PriceFrame(): ...
                case StateChanged(state=FeedState.RECONNECTING): ...

On a dropped connection it reconnects with capped exponential backoff and jitter, signs in again and
subscribes to the same channels; every change of `state` (connecting / live / reconnecting / stale /
closed) is also an event (`StateChanged`). `stale` means connected but no price for `stale_after` seconds.

Account events are yielded once each, in order, across reconnects: the client remembers the `seq` of the last
one (`account_seq`) and subscribes to `account` again with `since`, so the server sends what it missed first.
A repeated event is dropped; one that skips a number makes it ask for the missing ones the same way. When the
missed events are no longer kept, the server answers with an `ErrorFrame` `resume_gap` and an
`AccountStateFrame` to rebuild from, both yielded.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Iterable
from typing import Any

import msgspec
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import InvalidURI, WebSocketException

from cfd_client.models import (
    AccountFrame,
    AccountStateFrame,
    AlertFrame,
    FeedState,
    OrderFrame,
    PositionFrame,
    StateChanged,
)
from shared.backoff import Backoff
from shared.contracts.ws import (
    AuthenticatedFrame,
    CandleFrame,
    ErrorFrame,
    PongFrame,
    PriceFrame,
    SubscribedFrame,
    UnsubscribedFrame,
    WelcomeFrame,
)

log = logging.getLogger(__name__)

ACCOUNT_CHANNEL = "account"
FEED_BUFFER = 10_000  # events held for a reader that fell behind (200 s at 50 ticks/s, a few MB); then the oldest go
AUTH_ERRORS = frozenset({"invalid_token", "session_expired", "session_ended", "account_disabled", "auth_required"})

FeedEvent = (PriceFrame | CandleFrame | PositionFrame | OrderFrame | AlertFrame | AccountFrame | AccountStateFrame
             | ErrorFrame
             | AuthenticatedFrame | SubscribedFrame | UnsubscribedFrame | WelcomeFrame | PongFrame | StateChanged)
"""Everything a `FeedClient` yields: the server's frames, decoded, and its own state changes."""


def reconnect_backoff() -> Backoff:
    """The client's reconnect delays: 0.25 s doubling to 8 s, each up to 30 % shorter (a person is waiting,
    so it retries sooner and gives up less than the poller's 30 s)."""
    return Backoff(initial=0.25, cap=8.0, jitter=0.3)


_decoder = msgspec.json.Decoder(PriceFrame | CandleFrame | PositionFrame | OrderFrame | AlertFrame | AccountFrame
                                | AccountStateFrame | ErrorFrame | AuthenticatedFrame | SubscribedFrame
                                | UnsubscribedFrame | WelcomeFrame | PongFrame, strict=False)
_encoder = msgspec.json.Encoder()


class FeedClient:
    """A self-healing subscription to the WebSocket feed; iterate it for events."""

    def __init__(self, url: str, *, channels: Iterable[str] = ("prices.*",), token: str | None = None,
                 stale_after: float = 10.0, backoff: Backoff | None = None, open_timeout: float = 5.0,
                 ping_interval: float | None = 10.0, max_buffer: int = FEED_BUFFER) -> None:
        self.url = url
        self.token = token
        self.stale_after = stale_after
        self.backoff = backoff or reconnect_backoff()
        self.open_timeout = open_timeout
        self.ping_interval = ping_interval
        self.channels: list[str] = list(dict.fromkeys(channels))
        self.state = FeedState.CLOSED
        self.connections = 0  # successful connections so far (a reconnect makes it 2, 3, …)
        self.last_price_at: float | None = None  # time.monotonic() of the latest price frame
        self.skipped = 0  # frames that could not be decoded
        self.account_seq: int | None = None  # the `seq` of the last account event yielded
        self._account_user: str | None = None  # whose events those are
        self._resume = False  # an account event went missing: ask for it again
        self._events: asyncio.Queue[FeedEvent | None] = asyncio.Queue(maxsize=max_buffer)
        self._ws: ClientConnection | None = None
        self._task: asyncio.Task[None] | None = None
        self._watchdog: asyncio.Task[None] | None = None
        self._closing = False

    # --- lifecycle ----------------------------------------------------------------------------------------

    async def __aenter__(self) -> FeedClient:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    async def start(self) -> None:
        """Connect in the background (and keep reconnecting until `stop()`)."""
        if self._task is not None:
            return
        self._closing = False
        loop = asyncio.get_running_loop()
        self._task = loop.create_task(self._run(), name="cfd-feed")
        self._watchdog = loop.create_task(self._watch(), name="cfd-feed-watchdog")

    async def stop(self) -> None:
        """Close the connection and end the event stream."""
        self._closing = True
        tasks = [t for t in (self._task, self._watchdog) if t is not None]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._task = self._watchdog = None
        if self._ws is not None:
            with contextlib.suppress(Exception):
                await self._ws.close()
            self._ws = None
        self._set_state(FeedState.CLOSED)
        self._put(None)

    def __aiter__(self) -> AsyncIterator[FeedEvent]:
        return self.events()

    async def events(self) -> AsyncIterator[FeedEvent]:
        """The events, in order, until the client is stopped."""
        while True:
            event = await self._events.get()
            if event is None:
                return
            yield event

    # --- commands -----------------------------------------------------------------------------------------

    async def subscribe(self, channels: Iterable[str]) -> None:
        """Add channels (kept across reconnects)."""
        new = [c for c in channels if c not in self.channels]
        self.channels.extend(new)
        if new and self._ws is not None:
            await self._send_subscriptions(self._ws, new)

    async def unsubscribe(self, channels: Iterable[str]) -> None:
        """Drop channels."""
        gone = [c for c in channels if c in self.channels]
        self.channels = [c for c in self.channels if c not in gone]
        if gone and self._ws is not None:
            await self._send({"op": "unsubscribe", "channels": gone})

    async def authenticate(self, token: str | None) -> None:
        """Use another token from now on (None: stop sending one; the `account` channel then stays off)."""
        self.token = token
        if token and self._ws is not None:
            await self._send({"op": "auth", "token": token})
            if ACCOUNT_CHANNEL in self.channels:
                await self._send(self._account_subscription())

    async def ping(self, ping_id: int | str | None = None) -> None:
        """Ask the server for a `pong` (answered as a `PongFrame` event)."""
        await self._send({"op": "ping", "id": ping_id})

    # --- the connection loop ------------------------------------------------------------------------------

    async def _run(self) -> None:
        self._set_state(FeedState.CONNECTING)
        while not self._closing:
            reason = "the server closed the feed"
            try:
                async with connect(self.url, open_timeout=self.open_timeout, close_timeout=1,
                                   ping_interval=self.ping_interval, ping_timeout=self.ping_interval,
                                   max_size=2**20, compression=None) as ws:
                    self._ws = ws
                    await self._hello(ws)
                    self.connections += 1
                    self.backoff.reset()
                    self.last_price_at = time.monotonic()
                    self._set_state(FeedState.LIVE)
                    async for raw in ws:
                        self._on_frame(raw)
                        if self._resume:
                            self._resume = False
                            await self._send(self._account_subscription())
                    if ws.close_code is not None:
                        reason = f"the server closed the feed ({ws.close_code} {ws.close_reason})".strip()
            except asyncio.CancelledError:
                raise
            except (OSError, TimeoutError, WebSocketException, InvalidURI) as exc:
                reason = str(exc) or type(exc).__name__
            finally:
                self._ws = None
            if self._closing:
                return
            delay = self.backoff.next()
            log.info("feed %s lost (%s); reconnecting in %.1f s", self.url, reason, delay)
            self._set_state(FeedState.RECONNECTING, detail=reason, attempt=self.backoff.attempts, retry_in=delay)
            await asyncio.sleep(delay)

    async def _hello(self, ws: ClientConnection) -> None:
        public = [c for c in self.channels if c != ACCOUNT_CHANNEL]
        if public:
            await ws.send(_encoder.encode({"op": "subscribe", "channels": public}).decode())
        if self.token:
            await ws.send(_encoder.encode({"op": "auth", "token": self.token}).decode())
            if ACCOUNT_CHANNEL in self.channels:
                await ws.send(_encoder.encode(self._account_subscription()).decode())

    async def _send_subscriptions(self, ws: ClientConnection, channels: list[str]) -> None:
        public = [c for c in channels if c != ACCOUNT_CHANNEL]
        if public:
            await self._send({"op": "subscribe", "channels": public})
        if ACCOUNT_CHANNEL in channels and self.token:
            await self._send(self._account_subscription())

    def _account_subscription(self) -> dict[str, Any]:
        """Subscribe to `account`, after the last event yielded when there is one (the server sends the missed
        ones first)."""
        op: dict[str, Any] = {"op": "subscribe", "channels": [ACCOUNT_CHANNEL]}
        if self.account_seq is not None:
            op["since"] = self.account_seq
        return op

    async def _send(self, op: dict[str, Any]) -> None:
        ws = self._ws
        if ws is None:
            return  # sent on the next connection by `_hello`
        with contextlib.suppress(WebSocketException, OSError):
            await ws.send(_encoder.encode(op).decode())

    def _on_frame(self, raw: str | bytes) -> None:
        try:
            event = _decoder.decode(raw)
        except (msgspec.DecodeError, msgspec.ValidationError) as exc:
            self.skipped += 1
            log.debug("skipped a feed frame: %s", exc)
            return
        if isinstance(event, PriceFrame):
            self.last_price_at = time.monotonic()
            if self.state is FeedState.STALE:
                self._set_state(FeedState.LIVE)
        elif isinstance(event, PositionFrame | OrderFrame | AlertFrame | AccountFrame) and event.seq is not None:
            last = self.account_seq
            if last is not None and event.seq <= last:
                return  # yielded already
            if last is not None and event.seq > last + 1:
                self._resume = True  # the missing ones first: this one comes again after them
                return
            self.account_seq = event.seq
        elif isinstance(event, AccountStateFrame):
            self.account_seq = event.seq
        elif isinstance(event, AuthenticatedFrame):
            if event.user_id != self._account_user:  # another user's events are numbered apart
                self._account_user = event.user_id
                self.account_seq = None
        self._put(event)

    async def _watch(self) -> None:
        """Mark the feed stale when a connection with price channels has had no price for `stale_after`."""
        while True:
            await asyncio.sleep(min(1.0, self.stale_after / 4))
            if self.state is not FeedState.LIVE or self.last_price_at is None:
                continue
            if not any(c.startswith("prices.") for c in self.channels):
                continue
            quiet = time.monotonic() - self.last_price_at
            if quiet > self.stale_after:
                self._set_state(FeedState.STALE, detail=f"no price for {quiet:.0f} s")

    # --- events -------------------------------------------------------------------------------------------

    def _set_state(self, state: FeedState, *, detail: str = "", attempt: int = 0,
                   retry_in: float | None = None) -> None:
        if state is self.state and state is not FeedState.RECONNECTING:
            return
        self.state = state
        self._put(StateChanged(state=state, detail=detail, attempt=attempt, retry_in=retry_in))

    def _put(self, event: FeedEvent | None) -> None:
        if self._events.full():  # a consumer that stopped reading loses the oldest events, not memory
            with contextlib.suppress(asyncio.QueueEmpty):
                self._events.get_nowait()
        self._events.put_nowait(event)
