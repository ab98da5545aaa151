"""Replay: a JSONL file of Backpack frames (one `{"stream", "data"}` object per line) played back.

Frames go through the same validation as the live feed (bad lines are counted and skipped). Two ways to play:

- in time (`ReplaySource`): the pace comes from the frames' event time `E`, divided by `speed`; times are shifted
  so the file's first frame happens now, which makes a replay look like a live feed to everything downstream
  (candles, staleness);
- in lockstep (`LockstepReplay`): nothing plays until asked; each step publishes the next ticks (the poller
  answers `replay.step`, see `cfd_poller.service`). Times are shifted so the first tick happens when it is
  played, and the rest keep the recording's spacing (the market's clock is the recording's, however fast or
  slowly a bot steps), each market's strictly increasing.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
from collections import deque
from collections.abc import AsyncGenerator, Callable, Generator, Iterable, Iterator
from pathlib import Path

from cfd_poller.frames import BookTicker, FrameDecoder
from cfd_poller.metrics import PollerMetrics
from shared import clock
from shared.contracts.bus import PriceTick
from shared.markets import SYMBOLS

log = logging.getLogger(__name__)

READ_BATCH = 1000  # lines read from the file per trip to a worker thread


class ReplaySource:
    """Plays `path` once at `speed` times real time, then ends."""

    name = "replay"

    def __init__(self, path: Path, symbols: Iterable[str] = SYMBOLS, metrics: PollerMetrics | None = None, *,
                 speed: float = 1.0) -> None:
        if speed <= 0:
            raise ValueError("speed must be positive")
        self.path = Path(path)
        self.symbols = tuple(symbols)
        self.metrics = metrics or PollerMetrics()
        self.speed = speed
        self._decoder = FrameDecoder(self.symbols)

    async def ticks(self) -> AsyncGenerator[PriceTick, None]:
        loop = asyncio.get_running_loop()
        first_event_us: int | None = None
        started_at = 0.0  # loop time of the first frame
        started_us = 0  # wall time of the first frame
        played = 0
        lines = _read_lines(self.path)
        try:
            while batch := await asyncio.to_thread(_take, lines, READ_BATCH):
                for line in batch:
                    if not line.strip():
                        continue
                    update = self._decoder.update(line, self.metrics, source=self.path.name)
                    if update is None:
                        continue
                    if first_event_us is None:
                        first_event_us = update.event_time_us
                        started_at = loop.time()
                        started_us = clock.now_us()
                    offset = (update.event_time_us - first_event_us) / 1e6 / self.speed
                    wait = started_at + offset - loop.time()
                    if wait > 0:
                        await asyncio.sleep(wait)
                    shift = (update.exchange_time_us - first_event_us) / self.speed
                    yield update.to_tick(clock.now_us(), exchange_time_us=started_us + int(shift))
                    played += 1
        finally:
            lines.close()
        log.info("replay of %s finished: %d ticks, %d invalid lines", self.path.name, played,
                 self.metrics.invalid_total)


class LockstepReplay:
    """Plays `path` once, a step at a time. `next_ticks(count)` reads the next ticks and `published()` marks
    the first of them as sent, so a tick the bus refused is the first of the next step, not lost."""

    name = "replay"

    def __init__(self, path: Path, symbols: Iterable[str] = SYMBOLS, metrics: PollerMetrics | None = None, *,
                 clock_us: Callable[[], int] = clock.now_us) -> None:
        self.path = Path(path)
        self.symbols = tuple(symbols)
        self.metrics = metrics or PollerMetrics()
        self.clock_us = clock_us
        self.played = 0
        self._decoder = FrameDecoder(self.symbols)
        self._lines: Generator[bytes, None, None] | None = None
        self._read: deque[BookTicker] = deque()  # read from the file, not taken yet
        self._due: deque[PriceTick] = deque()  # taken, not published yet
        self._eof = False
        self._first_event_us: int | None = None
        self._started_us = 0
        self._last_us: dict[str, int] = {}

    async def next_ticks(self, count: int) -> list[PriceTick]:
        """The next `count` ticks to publish (fewer at the end of the file; none after it)."""
        missing = count - len(self._due)
        if missing > 0:
            await self._fill(missing)
            for _ in range(min(missing, len(self._read))):
                self._due.append(self._tick(self._read.popleft()))
        return list(itertools.islice(self._due, count))

    def published(self) -> None:
        """The first tick `next_ticks` gave is on the bus."""
        self._due.popleft()
        self.played += 1

    async def ended(self) -> bool:
        """Whether every tick of the file is published."""
        if self._due:
            return False
        await self._fill(1)
        return not self._read

    async def ticks(self) -> AsyncGenerator[PriceTick, None]:
        """Read as a stream (`cfd prices record`), a lockstep replay plays straight through, at once."""
        while batch := await self.next_ticks(READ_BATCH):
            for tick in batch:
                self.published()
                yield tick

    def close(self) -> None:
        if self._lines is not None:
            self._lines.close()

    async def _fill(self, count: int) -> None:
        """Read until `count` updates wait in `_read`, or the file ends."""
        while len(self._read) < count and not self._eof:
            if self._lines is None:
                self._lines = _read_lines(self.path)
            batch = await asyncio.to_thread(_take, self._lines, READ_BATCH)
            if not batch:
                self._eof = True
                self._lines.close()
                log.info("lockstep replay of %s read to its end: %d invalid lines", self.path.name,
                         self.metrics.invalid_total)
            for line in batch:
                if line.strip() and (update := self._decoder.update(line, self.metrics, source=self.path.name)):
                    self._read.append(update)

    def _tick(self, update: BookTicker) -> PriceTick:
        now_us = self.clock_us()
        if self._first_event_us is None:
            self._first_event_us, self._started_us = update.event_time_us, now_us
        shifted = self._started_us + update.exchange_time_us - self._first_event_us
        shifted = max(shifted, self._last_us.get(update.symbol, 0) + 1)  # a market's ticks only move forward
        self._last_us[update.symbol] = shifted
        return update.to_tick(now_us, exchange_time_us=shifted)


def _read_lines(path: Path) -> Generator[bytes, None, None]:
    with path.open("rb") as file:
        yield from file


def _take(lines: Iterator[bytes], count: int) -> list[bytes]:
    return list(itertools.islice(lines, count))
