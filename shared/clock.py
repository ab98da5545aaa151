"""The wall clock in the units of the wire: epoch milliseconds for times, microseconds for ticks."""

from __future__ import annotations

import time


def now_ms() -> int:
    """Now, in epoch milliseconds."""
    return time.time_ns() // 1_000_000


def now_us() -> int:
    """Now, in epoch microseconds (price ticks are timed in microseconds)."""
    return time.time_ns() // 1000
