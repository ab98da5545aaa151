"""Capped exponential backoff with jitter, for reconnecting without hammering a server that just came back.

One class for every reconnect loop: the poller's exchange feeds and source restarts, the client library's
feed, the terminal and `cfd prices watch`. Pure: it computes delays; the caller sleeps.
"""

from __future__ import annotations

import random


class Backoff:
    """Delays `initial`, `initial*factor`, … up to `cap` seconds, each scaled down by a random jitter.

    The n-th delay lies in `[d*(1-jitter), d]` with `d = min(cap, initial*factor**n)`, so the delays of many
    clients that lost the same server spread out, and no delay ever exceeds `cap`.
    """

    def __init__(self, initial: float = 0.5, cap: float = 30.0, factor: float = 2.0, jitter: float = 0.5,
                 rng: random.Random | None = None) -> None:
        if not 0 < initial <= cap:
            raise ValueError("backoff needs 0 < initial <= cap")
        if factor < 1 or not 0 <= jitter < 1:
            raise ValueError("backoff needs factor >= 1 and 0 <= jitter < 1")
        self.initial = initial
        self.cap = cap
        self.factor = factor
        self.jitter = jitter
        self._rng = rng or random.Random()
        self.attempts = 0

    def ceiling(self) -> float:
        """The un-jittered delay the next call to `next()` is drawn below."""
        return min(self.cap, self.initial * self.factor ** min(self.attempts, 64))

    def next(self) -> float:
        """The delay before the next attempt (seconds); each call backs off further."""
        ceiling = self.ceiling()
        self.attempts += 1
        return ceiling * (1 - self.jitter * self._rng.random())

    def reset(self) -> None:
        """Start again from `initial`, after a connection that worked."""
        self.attempts = 0
