"""Replay: a JSONL file of Backpack frames (one `{"stream", "data"}` object per line) played back in time.

Frames go through the same validation as the live feed (bad lines are counted and skipped). The pace comes
from the frames' event time `E`, divided by `speed`; times are shifted so the file's first frame happens now,
which makes a replay look like a live feed to everything downstream (candles, staleness).
"""

from __future__ import annotations

import asyncio
import itertools
import logging
from collections.abc import AsyncGenerator, Generator, Iterable, Iterator
from pathlib import Path

from cfd_poller.frames import FrameDecoder
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


def _read_lines(path: Path) -> Generator[bytes, None, None]:
    with path.open("rb") as file:
        yield from file


def _take(lines: Iterator[bytes], count: int) -> list[bytes]:
    return list(itertools.islice(lines, count))
