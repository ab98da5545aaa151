"""Publishing ticks: one `PriceTick` per update to `price-updates`, keyed by symbol, fire-and-forget."""

from __future__ import annotations

import logging

from cfd_poller.metrics import PollerMetrics
from shared.bus import Bus
from shared.contracts import encode
from shared.contracts.bus import PriceTick
from shared.errors import BackendDown
from shared.outage import Outage

log = logging.getLogger(__name__)


class TickPublisher:
    """Encodes and publishes ticks, never raising: a price is worth nothing a moment later, so a tick the bus
    refuses is skipped, not retried. A failing bus is logged as an outage (once when it starts, a summary with
    counts every few seconds, once when no failure came for a while); a tick the bus took but could not deliver
    later is counted and logged by the bus itself."""

    def __init__(self, bus: Bus, topic: str, metrics: PollerMetrics) -> None:
        self.bus = bus
        self.topic = topic
        self.metrics = metrics
        self.outage = Outage(f"prices cannot be published to {topic}; ticks are skipped", log)

    async def publish(self, tick: PriceTick) -> bool:
        """Publish one tick; returns whether the bus took it."""
        try:
            await self.bus.publish(self.topic, encode(tick), key=tick.symbol.encode(), wait=False)
        except Exception as exc:
            self.metrics.publish_failures += 1
            self.outage.failed(exc.details.get("reason", exc) if isinstance(exc, BackendDown) else exc)
            return False
        self.metrics.ticks_published += 1
        return True
