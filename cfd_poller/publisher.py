"""Publishing ticks: one `PriceTick` per update to `price-updates`, keyed by symbol, fire-and-forget."""

from __future__ import annotations

import logging

from cfd_poller.metrics import PollerMetrics
from shared.bus import Bus
from shared.contracts import PriceTick, encode

log = logging.getLogger(__name__)


class TickPublisher:
    """Encodes and publishes ticks. A failing bus is logged once (and once when it recovers), never raised:
    a price is worth nothing a moment later, so a lost one is skipped, not retried."""

    def __init__(self, bus: Bus, topic: str, metrics: PollerMetrics) -> None:
        self.bus = bus
        self.topic = topic
        self.metrics = metrics
        self._failing = False

    async def publish(self, tick: PriceTick) -> bool:
        """Publish one tick; returns whether the bus took it."""
        try:
            await self.bus.publish(self.topic, encode(tick), key=tick.symbol.encode(), wait=False)
        except Exception as exc:
            self.metrics.publish_failures += 1
            if not self._failing:
                self._failing = True
                log.warning("cannot publish prices to %s (%s); skipping ticks until the bus is back", self.topic,
                            exc)
            return False
        if self._failing:
            self._failing = False
            log.info("publishing prices to %s works again", self.topic)
        self.metrics.ticks_published += 1
        return True
