"""A connection's outbox: lossless while the client keeps up, conflated when it does not, never unbounded.

Frames are complete WebSocket frames (built once per tick for every client, see `protocol.text_frame`).
The first frame of an event-loop iteration is written at once (`put_now`); later ones are queued (`put`)
and the hub flushes every outbox it touched at the end of the iteration, so a burst of ticks reaches a
client in two writes (system calls) instead of one per tick.

A client is slow when its transport's write buffer, which only grows when the kernel's socket buffer is
already full, holds more than `write_buffer_high` bytes. From then on frames go to a backlog keyed by what
they describe: the price of a symbol, the candle of a bucket. A newer frame replaces the older one under
the same key (conflation), so the backlog holds at most one frame per key, plus frames that must all arrive
(key None: replies, account events), up to `max_backlog`. When the write buffer drains below half the
limit the backlog is written in one go and the client is fast again. A client whose buffer does not drain
for `stuck_after` seconds, or whose backlog overflows, is reported stuck; the hub then closes it (4008).

The outbox does not ask the connection whether it is still open on every write: the connection calls
`close()` the moment it writes its close frame or is lost (`fast_send.FeedConnection`), and nothing is written
after that.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Callable, Hashable

from cfd_server.ws.limits import Limits

_unique = itertools.count()


class Outbox:
    """The frames owed to one client. Not thread-safe; lives in the server's event loop."""

    __slots__ = ("_drainer", "_on_stuck", "_schedule", "backlog", "conflated", "done", "high",
                 "limits", "pending", "scheduled", "sent", "slow_episodes", "transport")

    def __init__(
        self,
        transport: asyncio.WriteTransport,
        limits: Limits,
        *,
        schedule: Callable[[Outbox], None],
        on_stuck: Callable[[str], None],
    ) -> None:
        self.transport = transport
        self.limits = limits
        self.high = limits.write_buffer_high
        self._schedule = schedule
        self._on_stuck = on_stuck
        self.pending: list[tuple[Hashable, bytes]] = []
        self.backlog: dict[Hashable, bytes] | None = None  # not None while the client is slow
        self.scheduled = False
        self.done = False
        self.sent = 0
        self.conflated = 0
        self.slow_episodes = 0
        self._drainer: asyncio.Task[None] | None = None

    @property
    def slow(self) -> bool:
        return self.backlog is not None

    def put(self, key: Hashable | None, frame: bytes) -> None:
        """Queue `frame`; a later frame with the same `key` may replace it. Key None: always delivered."""
        backlog = self.backlog
        if backlog is not None:
            self._conflate(backlog, next(_unique) if key is None else key, frame)
            return
        self.pending.append((next(_unique) if key is None else key, frame))
        if not self.scheduled:
            self.scheduled = True
            self._schedule(self)

    def put_now(self, key: Hashable, frame: bytes) -> None:
        """Write `frame` at once when nothing is queued (the first frame of a loop iteration), else `put` it."""
        if self.pending or self.backlog is not None:
            self.put(key, frame)
            return
        if self.done:
            return
        transport = self.transport
        if transport.get_write_buffer_size() > self.high:
            self._become_slow([(key, frame)])
            return
        transport.write(frame)
        self.sent += 1

    def flush(self) -> None:
        """Write what is pending (called once per loop iteration by the hub), or start conflating."""
        self.scheduled = False
        pending = self.pending
        if not pending or self.done:
            return
        self.pending = []
        backlog = self.backlog
        if backlog is not None:
            for key, frame in pending:
                self._conflate(backlog, key, frame)
            return
        transport = self.transport
        if transport.get_write_buffer_size() > self.high:
            self._become_slow(pending)
            return
        transport.write(pending[0][1] if len(pending) == 1 else b"".join([frame for _, frame in pending]))
        self.sent += len(pending)

    def close(self) -> None:
        """Stop writing for good (the connection is closing: no data frame may follow its close frame)."""
        self.done = True
        self.pending = []
        self.backlog = None
        if self._drainer is not None:
            self._drainer.cancel()
            self._drainer = None

    def _conflate(self, backlog: dict[Hashable, bytes], key: Hashable, frame: bytes) -> None:
        if key in backlog:
            self.conflated += 1
            del backlog[key]  # re-insert: the newest frame goes last, keeping frames in time order
        backlog[key] = frame
        if len(backlog) > self.limits.max_backlog and not self.done:
            self._stuck(f"more than {self.limits.max_backlog} frames owed")

    def _become_slow(self, pending: list[tuple[Hashable, bytes]]) -> None:
        self.slow_episodes += 1
        self.backlog = {}
        for key, frame in pending:
            self._conflate(self.backlog, key, frame)
        if not self.done:
            self._drainer = asyncio.get_running_loop().create_task(self._drain())

    async def _drain(self) -> None:
        """Wait for the write buffer to drain, then write the backlog; give up after `stuck_after`."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.limits.stuck_after
        transport = self.transport
        while not self.done:
            await asyncio.sleep(self.limits.drain_poll)
            if self.done or transport.is_closing():
                return
            if transport.get_write_buffer_size() <= self.high // 2:
                backlog, self.backlog, self._drainer = self.backlog or {}, None, None
                if backlog:
                    transport.write(b"".join(backlog.values()))
                    self.sent += len(backlog)
                return
            if loop.time() >= deadline:
                self._stuck(f"write buffer full for {self.limits.stuck_after:g} s")
                return

    def _stuck(self, reason: str) -> None:
        drainer = self._drainer
        self._drainer = None  # the callback closes us; do not cancel the task we may be running in
        self.close()
        if drainer is not None and drainer is not asyncio.current_task():
            drainer.cancel()
        self._on_stuck(reason)
