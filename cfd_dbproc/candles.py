"""Candles in the dbproc: 1-minute candles built from every tick and persisted, and the history request.

The candle price is the mid of the broker quote (`shared.markets.broker_quote`): the one price a chart can
show for a market the broker quotes two-sided, the same for longs and shorts, and the same series the
server's live candles use, so a chart's stored history and its live bar line up.

Each tick is one upsert of its minute's row (unique on symbol and minute). The row keeps the exchange time
of the last tick it took (`last_tick_us`): a tick not after it was applied before (a redelivery after a
crash or a rebalance) and changes nothing, so `n` never counts a tick twice; ticks of one market arrive in
order (one partition per key). Longer intervals are rolled up from the 1m rows in SQL (the same roll-up as
`shared.candles.aggregate`).

History from the poller (`candle-history`, minutes before it started: simulated, or the exchange's klines)
is inserted only where no row exists, so a redelivered batch changes nothing and a minute that live ticks
built is never overwritten; a live tick of a minute that came as history is folded into it like any other.
The poller learns what is stored (the gaps in its window and the last stored price) from `candles.coverage`
on `requests.candles`, answered here, in the candle consumer: it must not wait for the dbproc's request group.
"""

from __future__ import annotations

import logging
from decimal import Decimal

import msgspec

from cfd_dbproc.db import Database
from cfd_dbproc.db.tables import Candles
from shared import operations as ops
from shared.bus import Bus, Message, Topics
from shared.bus.rpc import Responder, handles
from shared.candles import INTERVALS, MAX_LIMIT, MINUTE_MS, bucket_start
from shared.contracts.bus import (
    CandleGap,
    CandleHistory,
    CandleHistoryBatch,
    CandlesQuery,
    Coverage,
    CoverageQuery,
    MarketCoverage,
    PriceTick,
)
from shared.contracts.rest import Candle
from shared.errors import BadRequest
from shared.markets import MARKETS, Market, MarketBook, broker_quote, market_of

log = logging.getLogger(__name__)

CONSUMER_GROUP = "cfd-candles"
"""The dbproc's consumer group on the prices topic (prefix it with the deployment's topic prefix)."""

_ROW = (Candles.t, Candles.o, Candles.h, Candles.l, Candles.c, Candles.n)

# Buckets of LENGTH ms rolled up from 1m rows: high, low and count in one pass, open and close from the
# first and last minute of each bucket. LENGTH is an integer from `INTERVALS`, never client text.
_ROLL_UP = """
SELECT b.bucket AS t, f.o AS o, b.h AS h, b.l AS l, z.c AS c, b.n AS n
FROM (
    SELECT (t / LENGTH) * LENGTH AS bucket, MAX(h) AS h, MIN(l) AS l, SUM(n) AS n,
           MIN(t) AS first_t, MAX(t) AS last_t
    FROM candles WHERE symbol = {} AND t >= {} AND t < {}
    GROUP BY (t / LENGTH) * LENGTH
) AS b
JOIN candles AS f ON f.symbol = {} AND f.t = b.first_t
JOIN candles AS z ON z.symbol = {} AND z.t = b.last_t
ORDER BY b.bucket
"""


# One tick into its minute's row: the first tick of a minute inserts it; a later one moves the close and
# widens the range; a tick the row has seen (its exchange time not after `last_tick_us`) changes nothing.
# CASE rather than GREATEST/MAX: the same SQL on PostgreSQL and SQLite.
_UPSERT = """
INSERT INTO candles (symbol, t, o, h, l, c, n, last_tick_us) VALUES ({}, {}, {}, {}, {}, {}, 1, {})
ON CONFLICT (symbol, t) DO UPDATE SET
    h = CASE WHEN excluded.h > candles.h THEN excluded.h ELSE candles.h END,
    l = CASE WHEN excluded.l < candles.l THEN excluded.l ELSE candles.l END,
    c = excluded.c,
    n = candles.n + 1,
    last_tick_us = excluded.last_tick_us
WHERE candles.last_tick_us < excluded.last_tick_us
RETURNING n
"""

_NO_END = 2**62  # a time after every candle

HISTORY_ROWS_PER_STATEMENT = 250
MAX_COVERAGE_MS = 721 * 60 * MINUTE_MS  # a little over CFD_CANDLE_HISTORY_HOURS' maximum


def _insert_history_sql(rows: int) -> str:
    """Insert `rows` history minutes, each only where the minute has no row yet; returns those inserted."""
    values = ", ".join(["({}, {}, {}, {}, {}, {}, {}, {})"] * rows)
    return (f"INSERT INTO candles (symbol, t, o, h, l, c, n, last_tick_us) VALUES {values} "
            "ON CONFLICT (symbol, t) DO NOTHING RETURNING t")


class CandleRecorder:
    """Builds and stores 1m candles from `price-updates` and `candle-history`; answers `candles.history` and,
    given the bus, `candles.coverage`."""

    def __init__(self, db: Database, bus: Bus | None = None, topics: Topics | None = None,
                 markets: MarketBook | None = None) -> None:
        self.db = db
        self.topics = topics
        self.markets = markets if markets is not None else MarketBook()  # the spread in force makes the mid
        self.applied = 0
        self.skipped = 0
        self.history_stored = 0  # history minutes inserted
        self.history_present = 0  # history minutes that were stored already, left alone
        self._decoder = msgspec.json.Decoder(PriceTick)
        self._history_decoder = msgspec.json.Decoder(CandleHistoryBatch)
        self._last_tick_us: dict[str, int] = {}  # a cheap first check; the row decides
        self._responder: Responder | None = None
        if bus is not None and topics is not None:
            self._responder = Responder(bus, topics.replies)
            self._responder.serve(self)

    @property
    def consumed_topics(self) -> list[str]:
        """What the candle consumer group reads: ticks, history batches and the poller's questions."""
        if self.topics is None:
            raise RuntimeError("CandleRecorder needs the topics to consume more than ticks")
        return [self.topics.prices, self.topics.candle_history, self.topics.candle_requests]

    async def on_message(self, message: Message) -> None:
        """Bus handler for `consumed_topics`."""
        assert self.topics is not None
        if message.topic == self.topics.prices:
            await self.on_tick(message)
        elif message.topic == self.topics.candle_history:
            await self.on_history(message)
        elif message.topic == self.topics.candle_requests and self._responder is not None:
            await self._responder(message)

    async def on_history(self, message: Message) -> None:
        """Store a batch of history minutes where none is stored (bus handler for `candle-history`)."""
        try:
            batch = self._history_decoder.decode(message.value)
        except msgspec.DecodeError:
            log.warning("skipping an undecodable history batch on %s[%d]@%d", message.topic, message.partition,
                        message.offset)
            return
        market = MARKETS.get(batch.symbol)
        if market is None:
            log.warning("skipping history of unknown market %r", batch.symbol)
            return
        candles = [c for c in batch.candles if _sound(c)]
        if len(candles) < len(batch.candles):
            log.warning("skipping %d unsound history candles of %s from %s", len(batch.candles) - len(candles),
                        batch.symbol, batch.source)
        inserted = 0
        async with self.db.transaction():
            for start in range(0, len(candles), HISTORY_ROWS_PER_STATEMENT):
                chunk = candles[start:start + HISTORY_ROWS_PER_STATEMENT]
                values: list[object] = []
                for c in chunk:
                    # a live tick of this minute (exchange time at or after its start) is folded in
                    values += [batch.symbol, c.t, c.o, c.h, c.l, c.c, c.n, c.t * 1000 - 1]
                inserted += len(await Candles.raw(_insert_history_sql(len(chunk)), *values).run())
        self.history_stored += inserted
        self.history_present += len(candles) - inserted
        log.debug("history of %s from %s: %d minutes stored, %d were there", batch.symbol, batch.source,
                  inserted, len(candles) - inserted)

    @handles(ops.CANDLES_COVERAGE)
    async def coverage(self, query: CoverageQuery) -> Coverage:
        """`candles.coverage`: per market, its latest stored candle and the minutes of the window without one."""
        if not (query.since % MINUTE_MS == 0 and query.until % MINUTE_MS == 0
                and 0 <= query.until - query.since <= MAX_COVERAGE_MS):
            raise BadRequest("The coverage window must be whole minutes and at most 721 hours long.",
                             code="invalid_window")
        markets = [await self._coverage(MARKETS[s], query.since, query.until) for s in query.symbols
                   if s in MARKETS]
        return Coverage(markets=markets)

    async def _coverage(self, market: Market, since: int, until: int) -> MarketCoverage:
        step = market.price_tick / 10
        latest = await Candles.select(Candles.t, Candles.c).where(Candles.symbol == market.symbol).order_by(
            Candles.t, ascending=False).first().run()
        coverage = MarketCoverage(symbol=market.symbol)
        if latest is None:
            if until > since:
                coverage.gaps.append(CandleGap(start=since, end=until))
            return coverage
        coverage.last_t, coverage.last_close = int(latest["t"]), _price(latest["c"], step)
        rows = await Candles.select(Candles.t, Candles.o, Candles.c).where(
            (Candles.symbol == market.symbol) & (Candles.t >= since) & (Candles.t < until)).order_by(Candles.t).run()
        previous = await Candles.select(Candles.c).where(
            (Candles.symbol == market.symbol) & (Candles.t < since)).order_by(Candles.t, ascending=False).first().run()
        before = _price(previous["c"], step) if previous is not None else None
        cursor = since
        for row in rows:
            t = int(row["t"])
            if t > cursor:
                coverage.gaps.append(CandleGap(start=cursor, end=t, before=before, after=_price(row["o"], step)))
            before = _price(row["c"], step)
            cursor = t + MINUTE_MS
        if cursor < until:
            coverage.gaps.append(CandleGap(start=cursor, end=until, before=before))
        return coverage

    async def on_tick(self, message: Message) -> None:
        """Fold one tick into its market's 1m candle (bus handler for the prices topic)."""
        try:
            tick = self._decoder.decode(message.value)
        except msgspec.DecodeError:
            log.warning("skipping an undecodable tick on %s[%d]@%d", message.topic, message.partition,
                        message.offset)
            return
        market = self.markets.get(tick.symbol)
        if market is None or not (0 < tick.bid <= tick.ask):
            return
        if tick.exchange_time_us <= self._last_tick_us.get(tick.symbol, -1):
            self.skipped += 1
            return
        mid = broker_quote(market, tick.bid, tick.ask, tick.exchange_time_us // 1000).mid
        if await self._apply(tick.symbol, tick.exchange_time_us, mid):
            self.applied += 1
        else:
            self.skipped += 1
        self._last_tick_us[tick.symbol] = max(tick.exchange_time_us, self._last_tick_us.get(tick.symbol, -1))

    async def _apply(self, symbol: str, tick_us: int, price: Decimal) -> bool:
        """Upsert the tick's minute in one statement; False when the row has seen this tick (or a later one)."""
        minute = bucket_start(tick_us // 1000, MINUTE_MS)
        async with self.db.transaction():
            applied = await Candles.raw(_UPSERT, symbol, minute, price, price, price, price, tick_us).run()
        return bool(applied)

    @handles(ops.CANDLES_HISTORY)
    async def history(self, query: CandlesQuery) -> CandleHistory:
        """`candles.history`: the last `limit` candles of `interval` (those that start before `until`), oldest
        first, the one in progress as stored so far included (the server lays its live candle over it); with
        `since`, the first `limit` that start at `since` or later instead, and whether more follow."""
        market = market_of(query.symbol)
        length = INTERVALS.get(query.interval)
        if length is None:
            raise BadRequest(f"Unknown interval {query.interval!r}; use one of {', '.join(INTERVALS)}.",
                             code="invalid_interval")
        if not 1 <= query.limit <= MAX_LIMIT:
            raise BadRequest(f"The limit must be between 1 and {MAX_LIMIT}.", code="invalid_limit")
        # A bucket counts when it starts before `until`: its minutes run to the bucket boundary at or after it.
        end = _NO_END if query.until is None else min(_NO_END, -(-query.until // length) * length)
        if query.since is None:
            rows = await self._last_rows(query.symbol, length, query.limit, end)
            return CandleHistory(candles=[_candle(market, row) for row in rows])
        rows = await self._first_rows(query.symbol, length, query.limit + 1, -(-query.since // length) * length,
                                      end)
        return CandleHistory(candles=[_candle(market, row) for row in rows[:query.limit]],
                             more=len(rows) > query.limit)

    async def _last_rows(self, symbol: str, length: int, limit: int, end: int) -> list[dict]:
        """The last `limit` buckets whose minutes are before `end`, oldest first."""
        if length == MINUTE_MS:
            rows = await Candles.select(*_ROW).where((Candles.symbol == symbol) & (Candles.t < end)).order_by(
                Candles.t, ascending=False).limit(limit).run()
            return rows[::-1]
        latest = await Candles.select(Candles.t).where((Candles.symbol == symbol) & (Candles.t < end)).order_by(
            Candles.t, ascending=False).first().run()
        if latest is None:
            return []
        since = bucket_start(latest["t"], length) - (limit - 1) * length
        sql = _ROLL_UP.replace("LENGTH", str(int(length)))
        return await Candles.raw(sql, symbol, since, end, symbol, symbol).run()

    async def _first_rows(self, symbol: str, length: int, limit: int, start: int, end: int) -> list[dict]:
        """The first `limit` buckets from `start` (a bucket boundary) whose minutes are before `end`."""
        if length == MINUTE_MS:
            return await Candles.select(*_ROW).where(
                (Candles.symbol == symbol) & (Candles.t >= start) & (Candles.t < end)
            ).order_by(Candles.t).limit(limit).run()
        sql = _ROLL_UP.replace("LENGTH", str(int(length))) + f" LIMIT {int(limit)}"
        return await Candles.raw(sql, symbol, start, end, symbol, symbol).run()


def _sound(c: Candle) -> bool:
    """A history candle the table can take: on a minute, positive, the range holding the open and close."""
    prices = (c.o, c.h, c.l, c.c)
    return (all(p.is_finite() for p in prices) and c.t % MINUTE_MS == 0 and c.t >= 0 and c.n >= 0
            and 0 < c.l <= min(c.o, c.c)
            and max(c.o, c.c) <= c.h < Decimal("1e17"))


def _candle(market: Market, row: dict) -> Candle:
    """A stored row as a wire candle, prices at the mid's precision (SQLite hands aggregates back as floats)."""
    step = market.price_tick / 10
    return Candle(t=int(row["t"]), o=_price(row["o"], step), h=_price(row["h"], step), l=_price(row["l"], step),
                  c=_price(row["c"], step), n=int(row["n"]))


def _price(value: Decimal | float | str, step: Decimal) -> Decimal:
    number = value if isinstance(value, Decimal) else Decimal(str(value))
    return number.quantize(step)
