"""Pending entry orders: place, modify, cancel; and, from the risk engine, fill and expire.

An order reserves no margin while it works (as in MT5). When a tick reaches its price, the risk engine sends
`order.fill` with that tick's quote: the order opens a position at that quote through the same path as a
market order (`TradingEngine.open_at`: the market's rules, the stops, the margin check), in the same
transaction that marks it `filled`; if the position cannot open (no margin, a stop the gap put on the wrong
side), the order is `rejected` with the reason. Each command is applied once, and a fill of an order that is no
longer working changes nothing, so an order fills at most once whatever is redelivered.
"""

from __future__ import annotations

import uuid
from typing import Any

import msgspec

from cfd_dbproc.trading.engine import Events, TradingEngine
from cfd_dbproc.trading.store import parse_id
from shared import operations as ops
from shared.bus.rpc import handles
from shared.clock import now_ms
from shared.contracts.bus import (
    CancelOrderCommand,
    ExpireOrderCommand,
    FillOrderCommand,
    ModifyOrderCommand,
    OrderQuery,
    OrdersQuery,
    PlaceOrderCommand,
)
from shared.contracts.events import OrderEvent, OrderEventKind
from shared.contracts.rest import Order, OrderCreate
from shared.errors import Conflict, NotFound, Rejected
from shared.markets import Market, check_trading
from shared.trading import check_order, check_order_price, check_stops, check_trailing, order_triggered, plain

MAX_WORKING_ORDERS = 100
"""Working orders one account may hold at once."""


def check_pending(market: Market, order: OrderCreate | Order, now: int) -> None:
    """Reject (422) a pending order that breaks the market's rules (its terms in force): not in a close-only
    market, size and leverage as a market order, the price on the market's tick, stops on the right side of the
    order's price, a sound trailing distance, and an expiry in the future. A halted market takes orders: they
    wait for it to reopen."""
    if market.status == "close_only":
        check_trading(market, "open")
    check_order(market, order.side, order.qty, order.leverage)
    check_order_price(order.price, market)
    check_stops(order.side, order.price, order.stop_loss, order.take_profit, market)
    check_trailing(order.side, order.trailing_distance, order.price, market)
    if order.expires_at is not None and order.expires_at <= now:
        raise Rejected("expires_at must be in the future (epoch milliseconds), or left out for good till cancelled.",
                       code="invalid_expiry", details={"field": "expires_at", "server_time": now})


class OrderHandlers:
    """The order operations of `shared.operations`, applied through the trading engine."""

    group_commit = True
    """Its commands may share a transaction with others (`Database.group`): they do nothing outside the database
    before the commit (`Database.after_commit`)."""

    def __init__(self, engine: TradingEngine) -> None:
        self.engine = engine
        self.store = engine.store

    async def _working(self, user_id: uuid.UUID, order_id: str) -> Order:
        order = await self.store.order(user_id, order_id)
        if order.status != "working":
            raise Conflict(f"This order is {order.status}; only a working order can change.",
                           code="order_not_working", details={"status": order.status})
        return order

    async def _set(self, order: Order, events: Events, user_id: str, event: OrderEventKind, **fields: Any) -> Order:
        fields["updated_at"] = now_ms()
        await self.store.update_order(order.id, **fields)
        changed = msgspec.structs.replace(order, **fields)
        events.append(OrderEvent(event=event, user_id=user_id, order=changed))
        return changed

    @handles(ops.ORDER_PLACE)
    async def place(self, command: PlaceOrderCommand, command_id: str) -> Order:
        uid = parse_id(command.user_id, "account")
        o = command.order

        async def apply(events: Events) -> Order:
            at = now_ms()
            check_pending(self.engine.quotes.markets.market_of(o.symbol, field="symbol"), o, at)
            await self.store.balance(uid)  # the account exists
            if await self.store.working_count(uid) >= MAX_WORKING_ORDERS:
                raise Rejected(f"An account may have {MAX_WORKING_ORDERS} working orders at most; cancel one first.",
                               code="too_many_orders", details={"limit": MAX_WORKING_ORDERS})
            order = Order(id=self.store.ids(), symbol=o.symbol, side=o.side, type=o.type, qty=plain(o.qty),
                          price=plain(o.price), leverage=o.leverage, stop_loss=plain(o.stop_loss),
                          take_profit=plain(o.take_profit), trailing_distance=plain(o.trailing_distance),
                          status="working", created_at=at, updated_at=at, expires_at=o.expires_at)
            await self.store.insert_order(uid, order)
            events.append(OrderEvent(event="accepted", user_id=command.user_id, order=order))
            return order

        return await self.engine.apply(ops.ORDER_PLACE, command_id, command.user_id, apply)

    @handles(ops.ORDER_MODIFY)
    async def modify(self, command: ModifyOrderCommand, command_id: str) -> Order:
        uid = parse_id(command.user_id, "account")

        async def apply(events: Events) -> Order:
            order = await self._working(uid, command.order_id)
            fields = {name: value for name, value in msgspec.structs.asdict(command.update).items()
                      if value is not msgspec.UNSET}
            changed = msgspec.structs.replace(order, **fields)
            check_pending(self.engine.quotes.markets.market_of(order.symbol), changed, now_ms())
            return await self._set(order, events, command.user_id, "modified",
                                   **{name: plain(v) if name != "expires_at" else v for name, v in fields.items()})

        return await self.engine.apply(ops.ORDER_MODIFY, command_id, command.user_id, apply)

    @handles(ops.ORDER_CANCEL)
    async def cancel(self, command: CancelOrderCommand, command_id: str) -> Order:
        uid = parse_id(command.user_id, "account")

        async def apply(events: Events) -> Order:
            order = await self._working(uid, command.order_id)
            return await self._set(order, events, command.user_id, "cancelled", status="cancelled")

        return await self.engine.apply(ops.ORDER_CANCEL, command_id, command.user_id, apply)

    @handles(ops.ORDER_FILL)
    async def fill(self, command: FillOrderCommand, command_id: str) -> None:
        """The risk engine saw `command.quote` reach the order: open its position at that quote, or reject it."""
        uid = parse_id(command.user_id, "account")

        async def apply(events: Events) -> None:
            try:
                order = await self.store.order(uid, command.order_id)
            except NotFound:
                return
            if order.status != "working" or not order_triggered(order.side, order.type, order.price, command.quote):
                return  # filled, cancelled or expired meanwhile, or its price was moved since the tick
            if order.expires_at is not None and order.expires_at <= now_ms():
                await self._set(order, events, command.user_id, "expired", status="expired")
                return
            try:
                position = await self.engine.open_at(command.user_id, order, command.quote, events, command_id,
                                                     order_id=order.id)
            except Rejected as exc:  # judged when it triggers: refused now, with the reason
                await self._set(order, events, command.user_id, "rejected", status="rejected",
                                reason=f"{exc.code}: {exc.message}"[:200])
                return
            await self._set(order, events, command.user_id, "filled", status="filled", position_id=position.id)

        await self.engine.apply(ops.ORDER_FILL, command_id, command.user_id, apply)

    @handles(ops.ORDER_EXPIRE)
    async def expire(self, command: ExpireOrderCommand, command_id: str) -> None:
        uid = parse_id(command.user_id, "account")

        async def apply(events: Events) -> None:
            try:
                order = await self.store.order(uid, command.order_id)
            except NotFound:
                return
            if order.status == "working" and order.expires_at is not None and order.expires_at <= now_ms():
                await self._set(order, events, command.user_id, "expired", status="expired")

        await self.engine.apply(ops.ORDER_EXPIRE, command_id, command.user_id, apply)

    # --- queries ------------------------------------------------------------------------------------------

    @handles(ops.ORDERS)
    async def orders(self, query: OrdersQuery) -> list[Order]:
        return await self.store.orders_page(query)

    @handles(ops.ORDER)
    async def order(self, query: OrderQuery) -> Order:
        return await self.store.order(parse_id(query.user_id, "account"), query.order_id)
