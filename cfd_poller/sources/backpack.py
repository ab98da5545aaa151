"""The Backpack exchange feed: `bookTicker.<SYMBOL>` streams over one WebSocket.

On connect it subscribes every market; on a Close frame or any drop it reconnects with capped exponential
backoff and jitter, resubscribes, and logs how long prices were missing ("feed gap of N s on backpack").
The websockets library answers the server's pings and pings the server itself, so a dead connection is
noticed within `ping_interval + ping_timeout`. Invalid frames are counted per reason and skipped; the
exchange's error answers are logged and never fatal.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import time
from collections.abc import AsyncGenerator, Iterable

from websockets.asyncio.client import connect
from websockets.exceptions import WebSocketException

from cfd_poller.frames import FrameDecoder, subscribe_message
from cfd_poller.metrics import PollerMetrics
from shared import clock
from shared.backoff import Backoff
from shared.contracts.bus import PriceTick
from shared.markets import SYMBOLS

log = logging.getLogger(__name__)

PING_INTERVAL = 20.0
PING_TIMEOUT = 20.0
OPEN_TIMEOUT = 10.0
CLOSE_TIMEOUT = 2.0
MAX_FRAME_BYTES = 1 << 20


class BackpackSource:
    """Yields ticks from the exchange at `url` for `symbols`, reconnecting for as long as it is iterated."""

    name = "backpack"

    def __init__(self, url: str, symbols: Iterable[str] = SYMBOLS, metrics: PollerMetrics | None = None, *,
                 backoff: Backoff | None = None, ping_interval: float = PING_INTERVAL,
                 ping_timeout: float = PING_TIMEOUT, open_timeout: float = OPEN_TIMEOUT) -> None:
        self.url = url
        self.symbols = tuple(symbols)
        self.metrics = metrics or PollerMetrics()
        self.backoff = backoff or Backoff(initial=0.5, cap=30.0)
        self.ping_interval = ping_interval
        self.ping_timeout = ping_timeout
        self.open_timeout = open_timeout
        self.connected = False
        self._decoder = FrameDecoder(self.symbols)
        self._request_ids = itertools.count(1)

    async def ticks(self) -> AsyncGenerator[PriceTick, None]:
        last_tick_at: float | None = None  # monotonic time of the last tick delivered
        gap_since: float | None = None  # when prices stopped, while they are missing after a drop
        while True:
            try:
                async with connect(self.url, ping_interval=self.ping_interval, ping_timeout=self.ping_timeout,
                                   open_timeout=self.open_timeout, close_timeout=CLOSE_TIMEOUT,
                                   max_size=MAX_FRAME_BYTES) as ws:
                    self.connected = True
                    self.metrics.connects += 1
                    if self.metrics.connects > 1:
                        self.metrics.reconnects += 1
                    first = True
                    await ws.send(subscribe_message(self.symbols, next(self._request_ids)))
                    log.info("connected to %s; subscribed %d markets", self.url, len(self.symbols))
                    async for raw in ws:
                        received_us = clock.now_us()
                        update = self._decoder.update(raw, self.metrics, source="backpack")
                        if update is None:
                            continue
                        now = time.monotonic()
                        if first:  # this connection works: the next drop starts from a short delay again
                            first = False
                            self.backoff.reset()
                            if gap_since is not None:
                                self._log_gap(now - gap_since)
                                gap_since = None
                        last_tick_at = now
                        yield update.to_tick(received_us)
                    reason = _close_reason(ws.close_code, ws.close_reason)
            except (OSError, TimeoutError, WebSocketException) as exc:
                reason = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
            except Exception as exc:  # a bug must not stop prices for good; it is logged in full
                log.exception("backpack feed failed unexpectedly")
                reason = type(exc).__name__
            was_connected, self.connected = self.connected, False
            if gap_since is None and last_tick_at is not None:
                gap_since = last_tick_at
            if not was_connected:
                self.metrics.connect_failures += 1
            delay = self.backoff.next()
            if was_connected:
                log.warning("backpack feed lost (%s); reconnecting in %.1f s", reason, delay)
            else:
                log.warning("cannot connect to %s (%s); retrying in %.1f s", self.url, reason, delay)
            await asyncio.sleep(delay)

    def _log_gap(self, seconds: float) -> None:
        self.metrics.feed_gaps += 1
        self.metrics.last_gap_seconds = seconds
        log.warning("feed gap of %.1f s on backpack", seconds)


def _close_reason(code: int | None, reason: str | None) -> str:
    if code is None:
        return "connection closed"
    return f"close frame {code}" + (f" {reason}" if reason else "")
