"""`/api/v1/account`, `/account/events`, `/positions`, `/ledger`: each a request to the dbproc, the user's single
writer (orders: `cfd_server.trading.orders`)."""

from __future__ import annotations

import hashlib
import re
import uuid
from typing import Annotated, Literal, TypeVar

import msgspec
from litestar import Controller, Request, Response, get, patch, post
from litestar.datastructures import ResponseHeader, State
from litestar.di import NamedDependency, Provide
from litestar.params import FromPath, JSONBody, QueryParameter

from cfd_server.auth.dependencies import provide_session
from cfd_server.auth.tokens import Session
from cfd_server.context import rpc
from cfd_server.paging import CURSOR_HELP, MAX_MS, NEXT_PAGE_HEADER, Since, Until, next_page, paged, positions_page
from shared import operations as ops
from shared.contracts.bus import (
    AccountEventsQuery,
    AccountQuery,
    CloseAllCommand,
    CloseCommand,
    LedgerQuery,
    ModifyCommand,
    OpenCommand,
    PositionQuery,
)
from shared.contracts.events import Event
from shared.contracts.rest import (
    Account,
    CloseAll,
    ClosedAll,
    LedgerEntry,
    Position,
    PositionClose,
    PositionCreate,
    PositionUpdate,
)
from shared.errors import BadRequest, Gone, NotFound
from shared.markets import check_trading
from shared.operations import Operation
from shared.paging import MAX_PAGE, decode_cursor
from shared.trading import check_order

Req = TypeVar("Req")
Rep = TypeVar("Rep")
_IDEMPOTENCY_KEY = re.compile(r"^[A-Za-z0-9._:-]{1,100}$")
_events = msgspec.json.Decoder(Event)
NEXT_EVENTS_HEADER = ResponseHeader(
    name="Link", required=False, documentation_only=True,
    description='`<URL>; rel="next"`: the next page, when there is one (the same query, `since` the last `seq`).')


def command_id(request: Request, session: Session, action: str) -> str:
    """The `Idempotency-Key` header scoped to the user and the action; a fresh id without one."""
    key = request.headers.get("idempotency-key")
    if key is None:
        return uuid.uuid4().hex
    if not _IDEMPOTENCY_KEY.match(key):
        raise BadRequest("Idempotency-Key must be 1 to 100 letters, digits or . _ : -", code="invalid_idempotency_key")
    scoped = hashlib.sha256(f"{action}:{session.user.id}:{key}".encode()).hexdigest()
    return f"{action.split(':')[0]}:{scoped}"  # a fixed length, whatever the key


def position_id(value: str) -> str:
    return path_id(value, "position")


def path_id(value: str, what: str) -> str:
    """The UUID in a path segment; anything else is a 404 `<what>_not_found` (an id that cannot exist)."""
    try:
        return str(uuid.UUID(value))
    except ValueError:
        raise NotFound(f"No such {what}.", code=f"{what}_not_found") from None


async def ask(state: State, session: Session, op: Operation[Req, Rep], body: Req, command: str | None = None) -> Rep:
    """Ask the dbproc, keyed by the signed-in user: one user's requests are applied in order."""
    return await rpc(state).call(op, body, key=session.user.id, command_id=command)


class TradingController(Controller):
    path = "/"
    tags = ["trading"]
    dependencies = {"session": Provide(provide_session)}

    @get("/account", operation_id="get_account", summary="Balance, equity, margin and margin level")
    async def account(self, state: State, session: NamedDependency[Session]) -> Account:
        return await ask(state, session, ops.ACCOUNT, AccountQuery(user_id=session.user.id))

    @get("/account/events", operation_id="list_account_events",
         summary="Your account events after a seq, oldest first, a page at a time",
         response_headers=[NEXT_EVENTS_HEADER])
    async def account_events(
        self, request: Request, state: State, session: NamedDependency[Session],
        since: Annotated[int, QueryParameter(ge=0, le=MAX_MS, description="The last seq you have (0: none).")],
        limit: Annotated[int, QueryParameter(ge=1, le=MAX_PAGE)] = 200,
    ) -> Response[list[Event]]:
        page = await ask(state, session, ops.ACCOUNT_EVENTS,
                         AccountEventsQuery(user_id=session.user.id, since=since, limit=limit + 1))
        if page.gap:
            raise Gone(f"The events after {since} are no longer kept (or {since} is beyond the latest, "
                       f"{page.latest}): reload the account, positions and orders, then follow the events after "
                       f"{page.latest}.", code="resume_gap", details={"latest_seq": page.latest})
        events = [_events.decode(raw) for raw in page.events[:limit]]
        if len(page.events) > limit and events[-1].seq is not None:
            return Response(events, headers=next_page(request, since=events[-1].seq))
        return Response(events)

    @post("/positions", operation_id="open_position", status_code=201,
          summary="Open a position at the broker's quote (ask for long, bid for short)")
    async def open_position(self, request: Request, state: State, session: NamedDependency[Session],
                            data: JSONBody[PositionCreate]) -> Position:
        market = state.market.markets.market_of(data.symbol, field="symbol")  # the terms in force
        check_trading(market, "open")
        check_order(market, data.side, data.qty, data.leverage)
        body = OpenCommand(user_id=session.user.id, order=data)
        return await ask(state, session, ops.OPEN, body, command_id(request, session, "open"))

    @post("/positions/close-all", operation_id="close_all_positions", status_code=200,
          summary="Close every open position, or those of one market, at the broker's quote")
    async def close_all(self, request: Request, state: State, session: NamedDependency[Session],
                        data: JSONBody[CloseAll | None] = None) -> ClosedAll:
        symbol = data.symbol if data is not None else None
        if symbol is not None:
            state.market.markets.market_of(symbol, field="symbol")
        body = CloseAllCommand(user_id=session.user.id, symbol=symbol)
        return await ask(state, session, ops.CLOSE_ALL, body, command_id(request, session, f"close-all:{symbol}"))

    @get("/positions", operation_id="list_positions", summary="Your positions, newest first, a page at a time",
         response_headers=[NEXT_PAGE_HEADER])
    async def positions(
        self, request: Request, state: State, session: NamedDependency[Session],
        status: Annotated[Literal["open", "closed"] | None, QueryParameter()] = None,
        limit: Annotated[int, QueryParameter(ge=1, le=MAX_PAGE)] = 200,
        cursor: Annotated[str | None, QueryParameter(description=CURSOR_HELP)] = None,
        since: Since = None, until: Until = None,
    ) -> Response[list[Position]]:
        return await positions_page(request, rpc(state), user_id=session.user.id, status=status, limit=limit,
                                    cursor=cursor, key=session.user.id, since=since, until=until)

    @get("/positions/{position:str}", operation_id="get_position", summary="One of your positions")
    async def position(self, state: State, session: NamedDependency[Session], position: FromPath[str]) -> Position:
        query = PositionQuery(user_id=session.user.id, position_id=position_id(position))
        return await ask(state, session, ops.POSITION, query)

    @patch("/positions/{position:str}", operation_id="modify_position",
           summary="Set or remove stop-loss, take-profit and trailing distance")
    async def modify(self, request: Request, state: State, session: NamedDependency[Session], position: FromPath[str],
                     data: JSONBody[PositionUpdate]) -> Position:
        body = ModifyCommand(user_id=session.user.id, position_id=position_id(position), update=data)
        return await ask(state, session, ops.MODIFY, body,
                         command_id(request, session, f"modify:{position}"))

    @post("/positions/{position:str}/close", operation_id="close_position", status_code=200,
          summary="Close a position, or part of it with qty")
    async def close(self, request: Request, state: State, session: NamedDependency[Session], position: FromPath[str],
                    data: JSONBody[PositionClose | None] = None) -> Position:
        body = CloseCommand(user_id=session.user.id, position_id=position_id(position),
                            qty=data.qty if data is not None else None)
        return await ask(state, session, ops.CLOSE, body,
                         command_id(request, session, f"close:{position}"))

    @get("/ledger", operation_id="list_ledger", summary="Every balance change, newest first, a page at a time",
         response_headers=[NEXT_PAGE_HEADER])
    async def ledger(self, request: Request, state: State, session: NamedDependency[Session],
                     limit: Annotated[int, QueryParameter(ge=1, le=MAX_PAGE)] = 200,
                     cursor: Annotated[str | None, QueryParameter(description=CURSOR_HELP)] = None,
                     since: Since = None, until: Until = None,
                     ) -> Response[list[LedgerEntry]]:
        if cursor is not None:
            decode_cursor(cursor, "ledger")
        query = LedgerQuery(user_id=session.user.id, limit=limit + 1, cursor=cursor, since=since, until=until)
        rows = await ask(state, session, ops.LEDGER, query)
        return paged(request, rows, limit, "ledger", lambda e: (e.created_at, e.id))
