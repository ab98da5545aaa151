"""`POST /api/v1/replay/step`: move a lockstep replay on by some ticks, and answer once the caller's account has
felt them (docs/api.md, "Replay"; docs/bots.md, "Reproducible runs").

A step is three requests over the bus, each waited for:

1. `replay.sync` on the caller's `requests.trading` partition: behind the caller's earlier commands, it waits
   until the dbproc's risk engine holds their events (a position opened just before has its stops checked
   against the step's ticks);
2. `replay.step` to the poller, which publishes the ticks and says which;
3. `replay.sync` with each market's last tick: the risk engine has checked the ticks and sent what they
   triggered (stops, stop-outs, order fills, alerts, margin calls) onto the caller's partition, where they
   are applied before anything the caller sends after the answer (every request about the caller's account
   queues on that partition).

Then this server's own quote book is waited for (so `GET /prices` and the feed show the step's prices), and the
answer carries the dbproc's quotes: the ones the caller's next order fills at. Other users' accounts are
checked against the same ticks, but the step waits for none of their commands.

Who may step: any signed-in user, with a session or an API key with the `trade` scope (stepping is a write;
a read-only key gets 403 `insufficient_scope`), and only while the platform runs a lockstep replay, which is a
single-user sandbox: every user shares its one market, so anyone may move it. Steps count against a rate-limit
class of their own (`CFD_RATE_LIMIT_REPLAY`), not the trading budget.
"""

from __future__ import annotations

import logging

from litestar import Controller, Request, post
from litestar.datastructures import State
from litestar.di import NamedDependency, Provide
from litestar.params import JSONBody

from cfd_server.auth.dependencies import provide_session
from cfd_server.auth.tokens import Session
from cfd_server.context import rpc
from cfd_server.market.runtime import MarketRuntime
from cfd_server.trading.controller import command_id
from shared import operations as ops
from shared.contracts.bus import ReplayStepCommand, ReplaySync
from shared.contracts.quote import view_of
from shared.contracts.rest import Price, ReplayStep, ReplayStepRequest
from shared.errors import Conflict, NotFound
from shared.settings import Settings

log = logging.getLogger(__name__)

REPLAY_KEY = "replay"  # every step goes to one partition of `requests.replay`: the poller plays them in order


def check_lockstep(settings: Settings) -> None:
    """Refuse a step unless a lockstep replay runs: 404 without a replay, 409 with one that plays in time."""
    prices = settings.prices
    if prices.source != "replay":
        raise NotFound("No replay runs here, so there is nothing to step: start the platform with "
                       "`cfd up --replay FILE --lockstep` (or `--seed N`).", code="replay_not_running")
    if not prices.replay_lockstep:
        raise Conflict("This replay plays in time (CFD_REPLAY_SPEED); only a lockstep replay waits for steps: "
                       "`cfd up --replay FILE --lockstep`.", code="replay_not_lockstep")


class ReplayController(Controller):
    path = "/replay"
    tags = ["replay"]
    dependencies = {"session": Provide(provide_session)}

    @post("/step", operation_id="replay_step", status_code=200, opt={"rate_class": "replay"},
          summary="Play the next ticks of a lockstep replay; answers once your account has felt them")
    async def step(self, request: Request, state: State, session: NamedDependency[Session],
                   data: JSONBody[ReplayStepRequest | None] = None) -> ReplayStep:
        settings: Settings = state.ctx.settings
        check_lockstep(settings)
        count = data.count if data is not None else 1
        user_id = session.user.id
        client = rpc(state)
        await client.call(ops.REPLAY_SYNC, ReplaySync(user_id=user_id, marks={}), key=user_id)
        stepped = await client.call(ops.REPLAY_STEP, ReplayStepCommand(count=count), key=REPLAY_KEY,
                                    command_id=command_id(request, session, "replay-step"))
        marks = {tick.symbol: tick.exchange_time_us for tick in stepped.ticks}  # each market's last
        synced = await client.call(ops.REPLAY_SYNC, ReplaySync(user_id=user_id, marks=marks), key=user_id)
        market: MarketRuntime = state.market
        try:
            await market.quotes.seen.wait(marks, settings.bus.request_timeout)
        except TimeoutError:  # the fills are the dbproc's: this server's own prices just lag
            log.warning("this server's quote book did not catch up with a replay step in %g s",
                        settings.bus.request_timeout)
        return ReplayStep(ticks=len(stepped.ticks), played=stepped.played, ended=stepped.ended,
                          quotes=[view_of(quote, Price) for quote in synced.quotes])
