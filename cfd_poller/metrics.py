"""The poller's counters: what an operator looks at to see whether prices are flowing."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any


@dataclass
class PollerMetrics:
    """Counters shared by the source and the publisher of one poller."""

    ticks_published: int = 0
    publish_failures: int = 0
    invalid_frames: Counter[str] = field(default_factory=Counter)
    error_frames: int = 0
    connects: int = 0  # connections to the exchange that opened
    reconnects: int = 0  # of those, the ones after the first
    connect_failures: int = 0  # attempts that did not open
    feed_gaps: int = 0
    last_gap_seconds: float | None = None
    history_minutes_sent: int = 0  # 1m candles of history handed to the dbproc at start-up

    def invalid(self, reason: str) -> None:
        """Count one skipped frame."""
        self.invalid_frames[reason] += 1

    @property
    def invalid_total(self) -> int:
        return sum(self.invalid_frames.values())

    def summary(self) -> str:
        """One line for logs."""
        invalid = ", ".join(f"{reason} {n}" for reason, n in sorted(self.invalid_frames.items())) or "none"
        return (f"{self.ticks_published} ticks published, invalid frames: {invalid}, "
                f"{self.error_frames} error frames, {self.reconnects} reconnects")

    def snapshot(self) -> dict[str, Any]:
        """A plain-dict copy, for logs, health answers and tests."""
        return {
            "ticks_published": self.ticks_published,
            "publish_failures": self.publish_failures,
            "invalid_frames": dict(self.invalid_frames),
            "error_frames": self.error_frames,
            "connects": self.connects,
            "reconnects": self.reconnects,
            "connect_failures": self.connect_failures,
            "feed_gaps": self.feed_gaps,
            "last_gap_seconds": self.last_gap_seconds,
            "history_minutes_sent": self.history_minutes_sent,
        }
