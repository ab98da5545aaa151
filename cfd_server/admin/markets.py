"""`/api/v1/admin/markets/{symbol}` and `/api/v1/admin/audit`: operators change a market's terms, and read
what operators changed."""

from __future__ import annotations

import hashlib
import re
from typing import Annotated

import msgspec
from litestar import Controller, Request, Response, get, patch
from litestar.datastructures import State
from litestar.params import FromPath, JSONBody, QueryParameter

from cfd_server.admin.controller import operator_guard
from cfd_server.context import rpc
from cfd_server.market.runtime import MarketRuntime
from cfd_server.paging import CURSOR_HELP, NEXT_PAGE_HEADER, paged
from shared import operations as ops
from shared.contracts.bus import AuditQuery, SetMarketCommand
from shared.contracts.rest import AuditEntry, MarketUpdate
from shared.errors import BadRequest
from shared.markets import SETTING_FIELDS, Market, check_settings, market_of, settings_of, with_settings
from shared.paging import MAX_PAGE, decode_cursor

OPERATOR_HEADER = "cfd-operator"
DEFAULT_OPERATOR = "operator"
_OPERATOR = re.compile(r"^[A-Za-z0-9._@+-]{1,64}$")


def operator_of(request: Request) -> str:
    """Who the operator says they are (`Cfd-Operator`; the `cfd` CLI sends the login name). The operator token
    is shared, so this is a name for the audit, not a proof."""
    name = request.headers.get(OPERATOR_HEADER)
    if name is None:
        return DEFAULT_OPERATOR
    if not _OPERATOR.match(name):
        raise BadRequest("Cfd-Operator must be 1 to 64 letters, digits or . _ @ + -", code="invalid_operator",
                         details={"header": "Cfd-Operator"})
    return name


class AdminMarketsController(Controller):
    path = "/admin"
    tags = ["operators"]
    guards = [operator_guard]

    @patch("/markets/{symbol:str}", operation_id="admin_set_market",
           summary="Change a market's status, spread, costs or maximum leverage (on every instance at once)")
    async def set_market(self, request: Request, state: State, symbol: FromPath[str],
                         data: JSONBody[MarketUpdate]) -> Market:
        runtime: MarketRuntime = state.market
        market = runtime.markets.market_of(symbol.upper())
        wanted = {name: value for name in SETTING_FIELDS if (value := getattr(data, name)) is not msgspec.UNSET}
        if not wanted:
            raise BadRequest(f"Name at least one of {', '.join(SETTING_FIELDS)} to change.", code="nothing_to_change")
        check_settings(msgspec.structs.replace(settings_of(market), **wanted))  # the dbproc checks again
        key = request.headers.get("idempotency-key")
        command = f"market:{hashlib.sha256(f'{market.symbol}:{key}'.encode()).hexdigest()}" if key else None
        peer = request.client.host if request.client else None
        address = state.auth.addresses.client(peer, request.headers.getall("x-forwarded-for", []))
        body = SetMarketCommand(symbol=market.symbol, update=data, operator=operator_of(request),
                                address=str(address) if address is not None else None)
        settings = await rpc(state).call(ops.SET_MARKET, body, key=f"market:{market.symbol}", command_id=command)
        runtime.markets.apply(settings)  # this server at once; every other one as the broadcast arrives
        return with_settings(market_of(market.symbol), settings)

    @get("/audit", operation_id="admin_audit", summary="What operators changed, newest first",
         response_headers=[NEXT_PAGE_HEADER])
    async def audit(self, request: Request, state: State,
                    subject: Annotated[str | None, QueryParameter(max_length=64,
                                                                  description="Only this market")] = None,
                    limit: Annotated[int, QueryParameter(ge=1, le=MAX_PAGE)] = 100,
                    cursor: Annotated[str | None, QueryParameter(description=CURSOR_HELP)] = None,
                    ) -> Response[list[AuditEntry]]:
        if cursor is not None:
            decode_cursor(cursor, "audit")
        query = AuditQuery(subject=subject.upper() if subject else None, limit=limit + 1, cursor=cursor)
        rows = await rpc(state).call(ops.AUDIT, query, key="operator")
        return paged(request, rows, limit, "audit", lambda e: (e.at, e.id))
