"""How far a consumer has got in an ordered stream, per key, and a way to wait until it gets somewhere.

Keys are markets (whose ticks arrive in order, each later than the last: `shared.quotes` refuses the others, so
"the tick with exchange time T has been handled here" is "the market's mark is at least T") or users (whose
account events carry increasing `seq`s). A lockstep replay's step waits on them (`cfd_dbproc.trading.replay`):
the dbproc's risk engine advances a market's mark once it has checked a tick and sent what the tick triggered,
and a user's once its book holds that account event; the server's quote book a market's once it holds the quote.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping


class Watermarks:
    """The latest value handled, per key; lives in one event loop."""

    def __init__(self) -> None:
        self._marks: dict[str, int] = {}
        self._changed: asyncio.Event | None = None  # made only while someone waits: the tick path stays cheap

    def advance(self, key: str, value: int) -> None:
        """`value` of `key` has been handled (a smaller one than before changes nothing)."""
        if value > self._marks.get(key, -1):
            self._marks[key] = value
            if self._changed is not None:
                self._changed.set()
                self._changed = None

    def get(self, key: str) -> int | None:
        return self._marks.get(key)

    def reached(self, marks: Mapping[str, int]) -> bool:
        """Whether every key in `marks` is at or past its mark."""
        return all(self._marks.get(key, -1) >= mark for key, mark in marks.items())

    async def wait(self, marks: Mapping[str, int], timeout: float) -> None:
        """Return once every key in `marks` is at or past its mark; `TimeoutError` after `timeout` seconds."""
        async with asyncio.timeout(timeout):
            while not self.reached(marks):
                if self._changed is None:
                    self._changed = asyncio.Event()
                await self._changed.wait()
