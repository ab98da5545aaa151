"""Price sources: each yields validated `PriceTick`s as an async iterator, for as long as it has prices.

- `backpack`: the exchange's WebSocket feed (reconnects by itself, never ends);
- `sim`: a seeded random walk around each market's its simulated price (`cfd_poller.simulation`) (never ends);
- `replay`: a recorded JSONL file of Backpack frames (ends with the file), in time or, with
  `CFD_REPLAY_LOCKSTEP`, a step at a time (`LockstepReplay`).
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, Iterable
from typing import Protocol

from cfd_poller.metrics import PollerMetrics
from shared.contracts.bus import PriceTick
from shared.errors import SettingsError
from shared.markets import MARKETS
from shared.settings import PriceSettings

SOURCE_NAMES = ("sim", "backpack", "replay")


class PriceSource(Protocol):
    """Where prices come from."""

    name: str
    symbols: tuple[str, ...]
    metrics: PollerMetrics

    def ticks(self) -> AsyncGenerator[PriceTick, None]:
        """Validated ticks, each stamped with its ingest time on receipt."""
        ...


def create_source(settings: PriceSettings, metrics: PollerMetrics, symbols: Iterable[str] = MARKETS) -> PriceSource:
    """The source `settings.source` names; raises `SettingsError` when it cannot work."""
    symbols = tuple(symbols)
    if settings.source == "backpack":
        from cfd_poller.sources.backpack import BackpackSource

        return BackpackSource(settings.backpack_ws_url, symbols, metrics)
    if settings.source == "replay":
        from cfd_poller.sources.replay import LockstepReplay, ReplaySource

        if settings.replay_file is None:
            raise SettingsError("CFD_REPLAY_FILE must name a JSONL file when CFD_PRICE_SOURCE=replay")
        if not settings.replay_file.is_file():
            raise SettingsError(f"CFD_REPLAY_FILE {settings.replay_file} is not a readable file")
        if settings.replay_lockstep:
            return LockstepReplay(settings.replay_file, symbols, metrics)
        return ReplaySource(settings.replay_file, symbols, metrics, speed=settings.replay_speed)
    if settings.source == "sim":
        from cfd_poller.sources.sim import SimSource

        return SimSource([MARKETS[s] for s in symbols], metrics, tick_hz=settings.sim_tick_hz,
                         seed=settings.sim_seed)
    raise SettingsError(f"CFD_PRICE_SOURCE must be one of {', '.join(SOURCE_NAMES)}, got {settings.source!r}")
