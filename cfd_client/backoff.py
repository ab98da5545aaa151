"""Capped exponential backoff with jitter, for reconnecting without hammering a server that just came back."""

from __future__ import annotations

import random


class Backoff:
    """Delays `initial`, `initial*factor`, … capped at `cap` seconds, each scaled down by up to `jitter`.

    Many clients that lost the same server spread their retries out instead of arriving together.
    """

    def __init__(self, initial: float = 0.25, cap: float = 8.0, factor: float = 2.0, jitter: float = 0.3,
                 rng: random.Random | None = None) -> None:
        if not 0 < initial <= cap or factor < 1 or not 0 <= jitter < 1:
            raise ValueError("backoff needs 0 < initial <= cap, factor >= 1 and 0 <= jitter < 1")
        self.initial, self.cap, self.factor, self.jitter = initial, cap, factor, jitter
        self._rng = rng or random.Random()
        self.attempts = 0

    def next(self) -> float:
        """The delay before the next attempt; each call backs off further, never beyond `cap`."""
        ceiling = min(self.cap, self.initial * self.factor ** min(self.attempts, 32))
        self.attempts += 1
        return ceiling * (1 - self.jitter * self._rng.random())

    def reset(self) -> None:
        """Start again from `initial` after a connection that worked."""
        self.attempts = 0
