"""`/markets`, `/prices`, `/candles`: the catalogue, the latest broker quotes and candle history."""

from __future__ import annotations

from typing import Annotated

from litestar import Controller, Request, Response, get
from litestar.datastructures import ResponseHeader, State
from litestar.params import Parameter, PathParameter

from cfd_server.market.runtime import MarketRuntime
from cfd_server.paging import MAX_MS, next_page
from shared.candles import DEFAULT_LIMIT, INTERVALS, MAX_LIMIT
from shared.contracts.quote import Quote, view_of
from shared.contracts.rest import Candle, Price
from shared.errors import BadRequest, Unavailable
from shared.markets import Market, market_of

Symbol = Annotated[str, PathParameter(description="A market symbol, e.g. SOL_USDC (any case)")]

NEXT_CANDLES_HEADER = ResponseHeader(
    name="Link", required=False, documentation_only=True,
    description='`<URL>; rel="next"`: with `since`, the next candles (the same query, `since` after the last one).')


def market_or_404(symbol: str) -> Market:
    """The market of a path's symbol, in any case."""
    return market_of(symbol.upper())


def _price(quote: Quote, stale: bool) -> Price:
    return view_of(quote, Price, stale=stale)


class MarketController(Controller):
    path = "/"
    tags = ("markets",)

    @get("/markets", operation_id="list_markets",
         summary="The tradable markets: their contract terms, costs and status in force")
    async def markets(self, state: State) -> list[Market]:
        runtime: MarketRuntime = state.market
        return runtime.markets.all()

    @get("/prices", operation_id="list_prices",
         summary="The latest broker quote of every market that has one (`stale` when its feed is quiet)")
    async def prices(self, state: State) -> list[Price]:
        market: MarketRuntime = state.market
        return [_price(quote, stale) for quote, stale in market.quotes.all()]

    @get("/prices/{symbol:str}", operation_id="get_price",
         summary="The latest broker quote of one market (503 while it has none or it is stale)")
    async def price(self, state: State, symbol: Symbol) -> Price:
        market = market_or_404(symbol)
        runtime: MarketRuntime = state.market
        latest = runtime.quotes.get(market.symbol)
        if latest is None:
            raise Unavailable(f"There is no price for {market.symbol} yet; retry shortly.", code="market_unavailable",
                              retry_after=2)
        quote, stale = latest
        if stale:
            age = runtime.quotes.age(market.symbol) or 0.0
            raise Unavailable(f"The price of {market.symbol} is stale (no update for {age:.0f} s).",
                              code="market_unavailable", retry_after=5, details={"last": _price(quote, True)})
        return _price(quote, False)

    @get("/candles/{symbol:str}", operation_id="get_candles",
         summary="Candles on the broker mid, oldest first: the latest (the last one is the bucket in progress), or "
                 "from `since`", response_headers=[NEXT_CANDLES_HEADER])
    async def candles(
        self,
        request: Request,
        state: State,
        symbol: Symbol,
        interval: Annotated[str, Parameter(description=f"One of {', '.join(INTERVALS)}")] = "1m",
        limit: Annotated[int, Parameter(description=f"How many candles, 1 to {MAX_LIMIT}")] = DEFAULT_LIMIT,
        since: Annotated[int | None, Parameter(
            ge=0, le=MAX_MS, description="Epoch ms: the first `limit` candles that start at or after this")] = None,
        until: Annotated[int | None, Parameter(
            ge=0, le=MAX_MS, description="Epoch ms: only candles that start before this")] = None,
    ) -> Response[list[Candle]]:
        market = market_or_404(symbol)
        if interval not in INTERVALS:
            raise BadRequest(f"Unknown interval {interval!r}; use one of {', '.join(INTERVALS)}.",
                             code="invalid_interval")
        if not 1 <= limit <= MAX_LIMIT:
            raise BadRequest(f"The limit must be between 1 and {MAX_LIMIT}, got {limit}.", code="invalid_limit")
        runtime: MarketRuntime = state.market
        candles, more = await runtime.chart(market.symbol, interval, limit, since=since, until=until)
        if more and candles:
            return Response(candles, headers=next_page(request, since=candles[-1].t + INTERVALS[interval]))
        return Response(candles)


MARKET_HANDLERS = [MarketController]
"""Route handlers to mount under `/api/v1`."""
