"""Which markets have gone quiet: no tick for longer than the staleness limit."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable

log = logging.getLogger(__name__)


class StalenessTracker:
    """Tracks the last tick time per market; logs once when a market goes stale and once when it recovers.

    A market that has never ticked counts from the moment the tracker was created, so a feed that never
    delivers a market makes it stale after the limit too.
    """

    def __init__(self, symbols: Iterable[str], after_seconds: float, *, source: str = "",
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.after_seconds = after_seconds
        self.source = source
        self._clock = clock
        now = clock()
        self._last: dict[str, float] = dict.fromkeys(symbols, now)
        self._stale: set[str] = set()

    def seen(self, symbol: str) -> None:
        """A tick for `symbol` arrived now."""
        self._last[symbol] = self._clock()
        if symbol in self._stale:
            self._stale.discard(symbol)
            log.info("%s is live again on %s", symbol, self.source or "the feed")

    def check(self) -> list[str]:
        """Mark markets quiet for longer than the limit as stale; returns the markets that just went stale."""
        now = self._clock()
        newly = [s for s, last in self._last.items() if s not in self._stale and now - last > self.after_seconds]
        for symbol in newly:
            self._stale.add(symbol)
            log.warning("%s is stale: no tick on %s for %.1f s", symbol, self.source or "the feed",
                        now - self._last[symbol])
        return newly

    def stale_symbols(self) -> list[str]:
        """The markets currently stale, sorted."""
        return sorted(self._stale)

    def age(self, symbol: str) -> float:
        """Seconds since `symbol` last ticked (or since tracking began)."""
        return self._clock() - self._last[symbol]
