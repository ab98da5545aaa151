"""The dbproc service: the only process that touches the database; answers requests from the bus."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Iterator

from cfd_dbproc.candles import CONSUMER_GROUP as CANDLES_GROUP
from cfd_dbproc.candles import CandleRecorder
from cfd_dbproc.db import Database
from cfd_dbproc.directory import DirectoryKeeper
from cfd_dbproc.keys import KeyHandlers
from cfd_dbproc.retention import Retention
from cfd_dbproc.trading.alerts import AlertHandlers
from cfd_dbproc.trading.costs import Costs
from cfd_dbproc.trading.engine import TradingEngine
from cfd_dbproc.trading.financing import FinancingJob
from cfd_dbproc.trading.markets import MarketKeeper
from cfd_dbproc.trading.marks import MarkPublisher
from cfd_dbproc.trading.operators import OperatorHandlers
from cfd_dbproc.trading.orders import OrderHandlers
from cfd_dbproc.trading.queries import TradingQueries
from cfd_dbproc.trading.quotes import QuoteCache
from cfd_dbproc.trading.replay import ReplayHandlers
from cfd_dbproc.trading.risk_runner import RiskRunner
from cfd_dbproc.trading.store import TradingStore
from cfd_dbproc.users import UserHandlers
from shared import metrics
from shared import operations as ops
from shared.bus import Bus, Partition, Subscription, Topics
from shared.bus.rpc import Responder, handles
from shared.cache import Cache
from shared.clock import now_ms
from shared.contracts.bus import HealthQuery, HealthReport
from shared.credentials import CredentialsDirectory
from shared.ids import Ids
from shared.markets import MarketBook
from shared.settings import Settings

log = logging.getLogger(__name__)

CONSUMER_GROUP = "cfd-dbproc"  # prefixed with the deployment's topic prefix


def _lag_metrics(requests: Subscription) -> Iterator[tuple[str, dict[str, str], float]]:
    for (topic, partition), lag in sorted(requests.lag().items()):
        yield "cfd_bus_consumer_lag", {"topic": topic, "partition": str(partition)}, lag


def _group_metrics(responder: Responder) -> Iterator[tuple[str, dict[str, str], float]]:
    yield "cfd_group_commits", {}, responder.groups
    yield "cfd_group_committed_commands", {}, responder.grouped


def _query_metrics(queries: TradingQueries) -> Iterator[tuple[str, dict[str, str], float]]:
    yield "cfd_accounts_from_book", {}, queries.from_book


def _risk_metrics(risk: RiskRunner) -> Iterator[tuple[str, dict[str, str], float]]:
    yield "cfd_risk_ticks", {}, risk.ticks
    yield "cfd_risk_triggers", {}, risk.triggers
    yield "cfd_risk_check_seconds", {}, risk.check_seconds
    yield "cfd_risk_positions", {}, len(risk.book)
    yield "cfd_risk_working_orders", {}, len(risk.orders)
    yield "cfd_risk_partitions", {}, len(risk.owned)


class DbProc:
    """Consumes the request topics as one member of the `cfd-dbproc` consumer group."""

    def __init__(self, settings: Settings, bus: Bus, db: Database, cache: Cache,
                 clock: Callable[[], int] = now_ms, ids: Ids | None = None) -> None:
        """`clock` is the wall clock of the market controls and of financing (tests move it across rollovers);
        `ids` makes the ids of what the engine creates (seeded in a sandbox: `shared.ids`)."""
        ids = ids or Ids()
        self.settings = settings
        self.bus = bus
        self.db = db
        self.topics = Topics(settings.bus)
        self.responder = Responder(bus, self.topics.replies, group=db.group)
        metrics.track(self.responder, settings.instance_id, _group_metrics)
        self.directory = DirectoryKeeper(CredentialsDirectory(cache, settings.bus.topic_prefix))
        self.markets = MarketBook()  # the terms in force: the catalogue's, as operators changed them
        self.market_keeper = MarketKeeper(db, bus, self.topics, self.markets, clock, ids)
        self.quotes = QuoteCache(settings.prices.quotes_stale_after, markets=self.markets)
        store = TradingStore(db, ids)
        self.trading = TradingEngine(store, bus, self.topics.events, self.quotes,
                                     Costs(store, self.quotes, settings.trading.financing_rollover_minute, clock))
        self.risk = RiskRunner(bus, self.topics, self.quotes, store)
        self.trading.unstored_stop = self.risk.book.unstored_stop
        metrics.track(self.quotes, settings.instance_id, metrics.quote_book_metrics("dbproc"))
        metrics.track(self.risk, settings.instance_id, _risk_metrics)
        self.marks = MarkPublisher(bus, self.topics.marks, self.risk)
        self.queries = TradingQueries(self.trading, self.risk)
        metrics.track(self.queries, settings.instance_id, _query_metrics)
        self.responder.serve(UserHandlers(db, settings.trading.demo_deposit, self.directory, ids), self.trading,
                             self.queries, OperatorHandlers(store, self.quotes, self.directory),
                             OrderHandlers(self.trading), AlertHandlers(self.trading), KeyHandlers(db), self.marks,
                             ReplayHandlers(self.trading, self.risk, settings.bus.request_timeout),
                             self.market_keeper, self)
        self.candles = CandleRecorder(db, bus, self.topics, self.markets)  # answers the candle requests, own group
        self.assigned: set[int] = set()
        self.requests: Subscription | None = None
        """The request group's subscription, once joined."""
        """The partitions of `requests.trading` this dbproc owns in the request group."""
        self.financing = FinancingJob(bus, self.topics.routes(), store, self._owns,
                                      settings.trading.financing_rollover_minute, clock)
        self.retention = Retention(settings.retention, db, history_hours=settings.prices.candle_history_hours)
        self._subscriptions: list[Subscription] = []
        self._joining: asyncio.Task[None] | None = None
        self.joined = asyncio.Event()  # set once this dbproc takes requests

    async def start(self) -> None:
        """Start the risk engine and the candles, then join the request group once every market has a live
        quote (at most `CFD_DBPROC_QUOTE_WAIT_SECONDS` later, in the background), so that the first orders
        are not refused as `market_unavailable` just because this dbproc has not heard a tick yet."""
        await self.bus.ensure_topics(self.topics.all())
        await self.market_keeper.start()  # the terms in force, before the first quote is computed
        await self.risk.start()  # quotes are live before the first order arrives; accounts load as partitions come
        self.marks.start()
        await self.directory.start()
        self._subscriptions.append(
            await self.bus.subscribe(self.candles.consumed_topics, self.candles.on_message,
                                     group=self.settings.bus.topic(CANDLES_GROUP)))
        self.retention.start()
        self.financing.start()
        if self.settings.trading.quote_wait_seconds <= 0 or self.settings.prices.lockstep or not self.quotes.unpriced():
            await self._join()  # a lockstep replay has no price before its first step: nothing to wait for
        else:
            self._joining = asyncio.get_running_loop().create_task(self._join_when_priced(),
                                                                   name="dbproc-join")

    async def _join_when_priced(self) -> None:
        bound = self.settings.trading.quote_wait_seconds
        started = time.monotonic()
        log.info("dbproc %s waits up to %g s for a live quote of every market before taking requests "
                 "(none yet for %s)", self.settings.instance_id, bound, ", ".join(self.quotes.unpriced()))
        while missing := self.quotes.unpriced():
            if time.monotonic() - started >= bound:
                log.warning("no live quote of %s after %g s (is the price feed running?); taking requests anyway: "
                            "orders in those markets get 503 market_unavailable until their prices arrive",
                            ", ".join(missing), bound)
                break
            await asyncio.sleep(0.05)
        else:
            log.info("every market has a live quote after %.1f s", time.monotonic() - started)
        await self._join()

    async def _join(self) -> None:
        # The risk engine checks the accounts of the trading partitions this dbproc owns: it loads them before
        # their first command is handed over, and forgets them once their last one is committed.
        self.requests = await self.bus.subscribe([self.topics.user_requests, self.topics.trading_requests,
                                                  self.topics.health_requests], self.responder.batch,
                                                 group=self.settings.bus.topic(CONSUMER_GROUP),
                                                 on_assigned=self._assigned, on_revoked=self._revoked, batched=True)
        self._subscriptions.append(self.requests)
        metrics.track(self.requests, self.settings.instance_id, _lag_metrics)
        self.joined.set()
        log.info("dbproc %s consuming %s, %s and %s", self.settings.instance_id, self.topics.user_requests,
                 self.topics.trading_requests, self.topics.health_requests)

    async def _assigned(self, partitions: set[Partition]) -> None:
        await self.risk.on_assigned(partitions)
        self.assigned |= {p for topic, p in partitions if topic == self.topics.trading_requests}
        self.financing.wake()  # their users may owe a rollover (one missed while the platform was down)

    async def _revoked(self, partitions: set[Partition]) -> None:
        self.assigned -= {p for topic, p in partitions if topic == self.topics.trading_requests}
        await self.risk.on_revoked(partitions)

    def _owns(self, user_id: str) -> bool:
        return self.bus.partition_for(self.topics.trading_requests, user_id.encode()) in self.assigned

    @handles(ops.HEALTH)
    async def health(self, query: HealthQuery) -> HealthReport:
        await self.db.ping()
        return HealthReport(database=self.db.engine.__class__.__name__, instance_id=self.settings.instance_id)

    async def stop(self) -> None:
        """Stop consuming; the request in hand finishes and is committed first."""
        if self._joining is not None:
            self._joining.cancel()
            await asyncio.gather(self._joining, return_exceptions=True)
            self._joining = None
        for subscription in self._subscriptions:
            await subscription.stop()
        self._subscriptions.clear()
        await self.retention.stop()
        await self.marks.stop()
        await self.financing.stop()
        await self.risk.stop()
        await self.market_keeper.stop()
        await self.directory.stop()
