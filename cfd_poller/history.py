"""Candle history for the chart, and where the simulator resumes: what the poller settles with the dbproc when
it starts. Only the dbproc writes the database, so everything goes over the bus.

1. The poller asks the dbproc's candle consumer what is stored (`candles.coverage` on `requests.candles`,
   waiting at most `CFD_POLLER_RESUME_TIMEOUT`): per market, the last stored price and the minutes without a
   candle in the window of `CFD_CANDLE_HISTORY_HOURS` before the current minute.
2. The simulator continues each market from its last stored price, so a restart does not move the market
   (open positions would feel it). With nothing stored it starts at the catalogue price.
3. The minutes missing from the window are made (the simulator: the same random walk, run backwards from the
   price that follows the gap, and bent to meet the stored price before it) or fetched (Backpack's REST
   klines), and handed over on `candle-history` keyed by symbol, `BATCH_MINUTES` at a time. The dbproc stores
   each minute where none is stored. Stored minutes are not sent again, so a restart sends only what the
   poller missed while it was down.

Without an answer (no dbproc running yet) nothing is sent, since the poller cannot know what is stored, and
the simulator starts at the catalogue prices. The replay source keeps no history.
"""

from __future__ import annotations

import asyncio
import logging
import math
import random
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from decimal import Decimal

import msgspec

from cfd_poller.klines import KlineClient, KlineError, rest_url
from cfd_poller.metrics import PollerMetrics
from cfd_poller.simulation import SIMULATION
from cfd_poller.sources import PriceSource
from cfd_poller.sources.sim import MEAN_REVERSION_SECONDS, SimSource
from shared import operations as ops
from shared.bus import Bus, Topics
from shared.bus.rpc import RequestClient
from shared.candles import MINUTE_MS
from shared.contracts import encode
from shared.contracts.bus import CandleGap, CandleHistoryBatch, CoverageQuery, MarketCoverage
from shared.contracts.rest import Candle
from shared.errors import CfdError
from shared.markets import MARKETS, Market
from shared.settings import PriceSettings

log = logging.getLogger(__name__)

BATCH_MINUTES = 500
"""Candles per `candle-history` message (about 50 kB)."""

STEP_BUDGET = 200_000
"""Simulated steps per market for the whole window: one a second up to ~55 hours of history, coarser beyond."""


# --- the simulator's history -----------------------------------------------------------------------------


def steps_per_minute(minutes: int) -> int:
    """How finely to simulate a window of `minutes`: at most one step a second, at least four a minute."""
    return max(4, min(60, STEP_BUDGET // max(1, minutes)))


def simulate_minutes(market: Market, start_ms: int, end_ms: int, end_mid: Decimal | float, rng: random.Random, *,
                     start_mid: Decimal | float | None = None, steps: int = 60) -> list[Candle]:
    """1m candles of the mid for the minutes `[start_ms, end_ms)`, ending at `end_mid` when `end_ms` comes.

    The simulator's walk (log price, the market's volatility, the pull back to the simulated price) is run backwards
    from `end_mid`: a stationary walk of this kind looks the same either way in time. Given `start_mid`, the
    walk is bent linearly to start there. Each minute's close is the next one's open. `n` counts the steps.
    """
    minutes = (end_ms - start_ms) // MINUTE_MS
    if minutes <= 0:
        return []
    dt = 60.0 / steps
    sigma = SIMULATION[market.symbol].volatility * math.sqrt(dt)
    revert = min(1.0, dt / MEAN_REVERSION_SECONDS)
    base = float(SIMULATION[market.symbol].price)
    total = minutes * steps
    x = [0.0] * (total + 1)  # log(mid / simulated price) at each step, x[total] at end_ms
    x[total] = math.log(float(end_mid) / base)
    gauss = rng.gauss
    for k in range(total, 0, -1):
        here = x[k]
        x[k - 1] = here + sigma * gauss(0.0, 1.0) - here * revert
    if start_mid is not None:
        miss = math.log(float(start_mid) / base) - x[0]
        for k in range(total + 1):
            x[k] += miss * (total - k) / total
    quantum = market.price_tick / 10

    def price(value: float) -> Decimal:
        return Decimal(repr(base * math.exp(value))).quantize(quantum)

    candles = []
    for m in range(minutes):
        segment = x[m * steps:(m + 1) * steps + 1]
        candles.append(Candle(t=start_ms + m * MINUTE_MS, o=price(segment[0]), h=price(max(segment)),
                              l=price(min(segment)), c=price(segment[-1]), n=steps))
    return candles


def history_rng(seed: int | None, symbol: str, gap: CandleGap) -> random.Random:
    """The generator for one gap: the same seed and gap give the same candles."""
    if seed is None:
        return random.Random()
    return random.Random(f"{seed}:{symbol}:history:{gap.start}:{gap.end}")


# --- the poller's side ------------------------------------------------------------------------------------


def _when(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%d %H:%M UTC")


class HistoryKeeper:
    """Settles a starting poller's prices and history with the dbproc (see the module docstring)."""

    def __init__(self, settings: PriceSettings, bus: Bus, topics: Topics, source: PriceSource,
                 metrics: PollerMetrics, *, instance_id: str, clock: Callable[[], float] = time.time,
                 klines: KlineClient | None = None) -> None:
        self.settings = settings
        self.bus = bus
        self.source = source
        self.metrics = metrics
        self.topics = topics
        self.instance_id = instance_id  # its key for the dbproc's replies
        self.clock = clock
        self.kind = "sim" if isinstance(source, SimSource) else "backpack" if source.name == "backpack" else None
        self.klines = klines
        if self.kind == "backpack" and self.klines is None:
            feed_url = getattr(source, "url", settings.backpack_ws_url)
            self.klines = KlineClient(rest_url(feed_url, settings.backpack_rest_url))
        self.until = 0  # the minute the poller started in: history ends before it, live ticks build it
        self.answer: dict[str, MarketCoverage] | None = None
        self.start_mids: dict[str, float] = {}  # where the simulator's live walk starts: its history ends there

    @property
    def wanted(self) -> bool:
        """Whether this source keeps history or resumes at all (the replay does neither)."""
        return self.kind is not None

    @property
    def resumes(self) -> bool:
        """Whether the source's first prices depend on the answer (the simulator's do)."""
        return self.kind == "sim"

    @property
    def bus_topics(self) -> list[str]:
        return [self.topics.candle_history, self.topics.candle_requests, self.topics.replies]

    async def ask(self) -> dict[str, MarketCoverage] | None:
        """What the dbproc has stored, per market; None when no dbproc answered in time."""
        now_ms = int(self.clock() * 1000)
        self.until = now_ms - now_ms % MINUTE_MS
        since = self.until - self.settings.candle_history_hours * 60 * MINUTE_MS
        query = CoverageQuery(symbols=list(self.source.symbols), since=since, until=self.until)
        client = RequestClient(self.bus, self.topics.routes(), self.topics.replies, self.instance_id,
                               self.settings.poller_resume_timeout)
        started = time.monotonic()
        try:
            await client.start()
            reply = await client.call(ops.CANDLES_COVERAGE, query, key="coverage")
        except (CfdError, msgspec.ValidationError) as exc:  # none answered in time, or one that cannot tell
            reason = exc.message if isinstance(exc, CfdError) else f"an answer that cannot be read: {exc}"
            log.warning("history: no dbproc told what is stored (%s); %s", reason,
                        "the simulator starts at the catalogue prices and no history is sent" if self.resumes
                        else "no history is sent")
            return None
        finally:
            await client.stop()
        self.answer = {m.symbol: m for m in reply.markets}
        log.info("history: the dbproc answered in %.2f s", time.monotonic() - started)
        return self.answer

    def resume(self) -> None:
        """Start the simulator where the stored prices end."""
        if not isinstance(self.source, SimSource) or not self.answer:
            return
        mids = {s: m.last_close for s, m in self.answer.items() if m.last_close is not None}
        self.source.resume(mids)
        self.start_mids = {s: self.source.mid(s) for s in self.source.symbols}
        for symbol, mid in mids.items():
            log.info("history: %s continues from %s, its last stored price (%s)", symbol, mid,
                     _when(self.answer[symbol].last_t or 0))

    async def run(self) -> int:
        """Ask (unless asked already), then send the missing minutes; returns how many were sent."""
        if self.answer is None and await self.ask() is None:
            return 0
        return await self.backfill()

    async def backfill(self) -> int:
        """Make or fetch every missing minute of the window and hand it to the dbproc."""
        if not self.answer or self.settings.candle_history_hours <= 0:
            return 0
        started = time.monotonic()
        missing = {s: m.gaps for s, m in self.answer.items() if m.gaps}
        if not missing:
            log.info("history: the last %d h of every market are stored; nothing to send",
                     self.settings.candle_history_hours)
            return 0
        sent = 0
        for symbol, gaps in missing.items():
            try:
                sent += await self._market(MARKETS[symbol], gaps)
            except KlineError as exc:
                log.warning("history: no klines of %s (%s); its chart starts with the live prices", symbol, exc)
            except CfdError as exc:
                log.warning("history: cannot hand %s's history to the dbproc (%s); stopping", symbol, exc.message)
                break
        log.info("history: sent %d minutes of %d markets in %.1f s", sent, len(missing), time.monotonic() - started)
        return sent

    async def _market(self, market: Market, gaps: Sequence[CandleGap]) -> int:
        minutes = sum((g.end - g.start) // MINUTE_MS for g in gaps)
        log.info("history: %s misses %d minutes since %s; %s them", market.symbol, minutes, _when(gaps[0].start),
                 "simulating" if self.kind == "sim" else f"fetching {self.klines.base_url if self.klines else ''}")
        sent = 0
        for gap in gaps:
            if self.kind == "sim":
                candles = await asyncio.to_thread(self._simulate, market, gap, minutes)
            else:
                candles = await self._fetch(market, gap, minutes, sent)
            for start in range(0, len(candles), BATCH_MINUTES):
                batch = CandleHistoryBatch(symbol=market.symbol, source=self.source.name,
                                           candles=candles[start:start + BATCH_MINUTES])
                await self.bus.publish(self.topics.candle_history, encode(batch), key=market.symbol.encode())
                sent += len(batch.candles)
                self.metrics.history_minutes_sent += len(batch.candles)
        log.info("history: %s: %d minutes sent", market.symbol, sent)
        return sent

    def _simulate(self, market: Market, gap: CandleGap, window_minutes: int) -> list[Candle]:
        assert isinstance(self.source, SimSource)
        end_mid = gap.after if gap.after is not None else self.start_mids[market.symbol]
        return simulate_minutes(market, gap.start, gap.end, end_mid, history_rng(self.source.seed, market.symbol, gap),
                                start_mid=gap.before, steps=steps_per_minute(window_minutes))

    async def _fetch(self, market: Market, gap: CandleGap, window_minutes: int, done: int) -> list[Candle]:
        assert self.klines is not None

        def progress(minutes: int) -> None:
            log.info("history: %s: %d/%d minutes fetched", market.symbol, done + minutes, window_minutes)

        return await self.klines.minutes(market, gap.start, gap.end, progress)
