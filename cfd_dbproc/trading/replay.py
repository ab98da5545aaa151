"""`replay.sync`: the dbproc's part of a lockstep replay's step (docs/bots.md, "Reproducible runs").

A step must leave nothing to chance: the caller's next order fills at the quote of the step's last tick, and
whatever the ticks triggered in the caller's account is applied before anything the caller sends next. Two
things in a dbproc run beside the requests and could race them: the risk engine reads prices and account
events from their own subscriptions. So the server sends `replay.sync` on the caller's partition, where it
queues behind the caller's earlier commands, and its handler waits until

1. the risk engine's book holds every account event this dbproc has published for the caller (so a position
   the caller opened just before, or one a stop of the last step closed, is as the book checks the step's
   ticks against), and
2. with `marks`, the risk engine has checked each market's tick up to its mark, and sent the commands those
   ticks triggered: onto the caller's partition, behind this request and ahead of the caller's next one.

The server asks twice per step: before the poller publishes the ticks (1 only), and after (1 and 2). See
`cfd_server.market.replay`.
"""

from __future__ import annotations

from cfd_dbproc.trading.engine import TradingEngine
from cfd_dbproc.trading.risk_runner import RiskRunner
from shared import operations as ops
from shared.bus.rpc import handles
from shared.contracts.bus import ReplaySync, ReplaySynced
from shared.errors import TimedOut
from shared.markets import MARKETS


class ReplayHandlers:
    def __init__(self, engine: TradingEngine, risk: RiskRunner, timeout: float) -> None:
        """`timeout`: how long to wait for the risk engine (the server's request timeout: it waits no longer)."""
        self.engine = engine
        self.risk = risk
        self.timeout = timeout

    @handles(ops.REPLAY_SYNC)
    async def sync(self, query: ReplaySync) -> ReplaySynced:
        published = self.engine.published.get(query.user_id)
        try:
            if published is not None:
                await self.risk.applied.wait({query.user_id: published}, self.timeout)
            await self.risk.checked.wait(query.marks, self.timeout)
        except TimeoutError:
            raise TimedOut("The replayed ticks did not reach the risk engine in time; step again.",
                           code="request_timeout") from None
        latest = self.risk.quotes.latest()
        return ReplaySynced(quotes=[latest[s] for s in MARKETS if s in query.marks and s in latest])
