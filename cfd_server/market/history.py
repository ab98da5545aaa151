"""Stored candle history, asked of the dbproc over the bus (the server never touches the database)."""

from __future__ import annotations

from cfd_server.context import ServerContext
from shared import operations as ops
from shared.contracts.bus import CandleHistory, CandlesQuery
from shared.contracts.rest import Candle


async def fetch_history(ctx: ServerContext, symbol: str, interval: str, limit: int,
                        timeout: float | None = None) -> list[Candle]:
    """The last `limit` stored candles of `interval` for `symbol`, oldest first; raises the dbproc's error."""
    return (await fetch_page(ctx, CandlesQuery(symbol=symbol, interval=interval, limit=limit), timeout)).candles


async def fetch_page(ctx: ServerContext, query: CandlesQuery, timeout: float | None = None) -> CandleHistory:
    """Stored candles as `query` asks (see `CandlesQuery`), oldest first; raises the dbproc's error."""
    return await ctx.rpc.call(ops.CANDLES_HISTORY, query, key=query.symbol, timeout=timeout)
