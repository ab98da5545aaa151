"""`/api/v1/orders`: pending entry orders (limit and stop), each a request to the dbproc, the user's single
writer. See docs/api.md, "Orders"."""

from __future__ import annotations

from typing import Annotated

from litestar import Controller, Request, Response, delete, get, patch, post
from litestar.datastructures import State
from litestar.di import NamedDependency, Provide
from litestar.params import FromPath, JSONBody, QueryParameter

from cfd_server.auth.dependencies import provide_session
from cfd_server.auth.tokens import Session
from cfd_server.context import rpc
from cfd_server.paging import CURSOR_HELP, NEXT_PAGE_HEADER, Since, Until, orders_page
from cfd_server.trading.controller import ask, command_id, path_id
from shared import operations as ops
from shared.contracts.bus import CancelOrderCommand, ModifyOrderCommand, OrderQuery, PlaceOrderCommand
from shared.contracts.rest import Order, OrderCreate, OrderStatus, OrderUpdate
from shared.paging import MAX_PAGE
from shared.trading import check_order, check_order_price


class OrdersController(Controller):
    path = "/orders"
    tags = ["orders"]
    dependencies = {"session": Provide(provide_session)}

    @post("/", operation_id="place_order", status_code=201,
          summary="Place a limit or stop order; it opens a position when the broker's quote reaches its price")
    async def place(self, request: Request, state: State, session: NamedDependency[Session],
                    data: JSONBody[OrderCreate]) -> Order:
        market = state.market.markets.market_of(data.symbol, field="symbol")  # the terms in force
        check_order(market, data.side, data.qty, data.leverage)
        check_order_price(data.price, market)
        body = PlaceOrderCommand(user_id=session.user.id, order=data)
        return await ask(state, session, ops.ORDER_PLACE, body, command_id(request, session, "order"))

    @get("/", operation_id="list_orders", summary="Your orders, newest first, a page at a time",
         response_headers=[NEXT_PAGE_HEADER])
    async def orders(
        self, request: Request, state: State, session: NamedDependency[Session],
        status: Annotated[OrderStatus | None, QueryParameter()] = None,
        limit: Annotated[int, QueryParameter(ge=1, le=MAX_PAGE)] = 200,
        cursor: Annotated[str | None, QueryParameter(description=CURSOR_HELP)] = None,
        since: Since = None, until: Until = None,
    ) -> Response[list[Order]]:
        return await orders_page(request, rpc(state), user_id=session.user.id, status=status, limit=limit,
                                 cursor=cursor, key=session.user.id, since=since, until=until)

    @get("/{order:str}", operation_id="get_order", summary="One of your orders")
    async def order(self, state: State, session: NamedDependency[Session], order: FromPath[str]) -> Order:
        return await ask(state, session, ops.ORDER, OrderQuery(user_id=session.user.id,
                                                               order_id=path_id(order, "order")))

    @patch("/{order:str}", operation_id="modify_order",
           summary="Change a working order's price, size, stops, trailing distance or expiry")
    async def modify(self, request: Request, state: State, session: NamedDependency[Session], order: FromPath[str],
                     data: JSONBody[OrderUpdate]) -> Order:
        body = ModifyOrderCommand(user_id=session.user.id, order_id=path_id(order, "order"), update=data)
        return await ask(state, session, ops.ORDER_MODIFY, body, command_id(request, session, f"modify-order:{order}"))

    @delete("/{order:str}", operation_id="cancel_order", status_code=200, summary="Cancel a working order")
    async def cancel(self, request: Request, state: State, session: NamedDependency[Session],
                     order: FromPath[str]) -> Order:
        body = CancelOrderCommand(user_id=session.user.id, order_id=path_id(order, "order"))
        return await ask(state, session, ops.ORDER_CANCEL, body, command_id(request, session, f"cancel:{order}"))
