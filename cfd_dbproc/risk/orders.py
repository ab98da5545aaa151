"""`WorkingOrders`: the risk engine's index of pending entry orders, so that a tick finds the orders it
triggers without looking at the others, and the clock finds the ones that expire.

Each working order is one key in its market's `PriceLadder`, on the price it fills at (the ask for a long,
the bid for a short; see `shared.trading.order_triggered`), and, with an expiry, one item in a heap of
expiry times. A triggered order is pending (its key is gone) until its fill is applied (the order's event
removes it) or `release` re-arms it.
"""

from __future__ import annotations

import heapq

from msgspec import Struct

from cfd_dbproc.risk.ladder import PriceLadder, Series
from shared.contracts.quote import Quote
from shared.contracts.rest import Order


class _Working(Struct, gc=False):
    user_id: str
    order: Order
    ticket: int | None = None  # its key in the market's ladder; None while pending


def order_key(order: Order) -> tuple[Series, bool]:
    """(series, fires when rising) of an order's trigger: a long limit buys once the ask falls to its price, a
    long stop once the ask rises to it; a short limit sells once the bid rises to it, a short stop once the
    bid falls to it."""
    series: Series = "ask" if order.side == "long" else "bid"
    rising = (order.side == "long") != (order.type == "limit")
    return series, rising


class WorkingOrders:
    """Working orders by id, indexed by trigger price per market and by expiry time."""

    def __init__(self) -> None:
        self._orders: dict[str, _Working] = {}
        self._ladders: dict[str, PriceLadder] = {}
        self._expiries: list[tuple[int, str]] = []  # (expires_at, order id); stale items are skipped

    def __len__(self) -> int:
        return len(self._orders)

    def __contains__(self, order_id: object) -> bool:
        return order_id in self._orders

    def user_ids(self) -> set[str]:
        return {w.user_id for w in self._orders.values()}

    def put(self, user_id: str, order: Order) -> None:
        """A working order, new or changed (its trigger and expiry are indexed again); any other status
        removes it."""
        self.remove(order.id)
        if order.status != "working":
            return
        working = self._orders[order.id] = _Working(user_id, order)
        self._arm(working)
        if order.expires_at is not None:
            heapq.heappush(self._expiries, (order.expires_at, order.id))

    def remove(self, order_id: str) -> None:
        working = self._orders.pop(order_id, None)
        if working is not None:
            self._disarm(working)

    def drop_users(self, user_ids: set[str]) -> int:
        """Forget the orders of these users (their partition moved); returns how many went."""
        gone = [order_id for order_id, w in self._orders.items() if w.user_id in user_ids]
        for order_id in gone:
            self.remove(order_id)
        return len(gone)

    def on_quote(self, quote: Quote) -> list[tuple[str, Order]]:
        """The orders this quote triggers, as (user id, order); each is pending until removed or released."""
        ladder = self._ladders.get(quote.symbol)
        if ladder is None or not len(ladder):
            return []
        fired = []
        for order_id in ladder.reached(quote.bid, quote.ask, quote.ask - quote.bid):
            working = self._orders.get(order_id)
            if working is not None:
                working.ticket = None
                fired.append((working.user_id, working.order))
        return fired

    def release(self, order_id: str) -> bool:
        """A triggered order's fill changed nothing (it failed): arm it again. False if not pending."""
        working = self._orders.get(order_id)
        if working is None or working.ticket is not None:
            return False
        self._arm(working)
        return True

    def expired(self, now_ms: int) -> list[tuple[str, Order]]:
        """The orders whose expiry is at or before `now_ms` (each given once; they stay until their event)."""
        due = []
        while self._expiries and self._expiries[0][0] <= now_ms:
            expires_at, order_id = heapq.heappop(self._expiries)
            working = self._orders.get(order_id)
            if working is not None and working.order.expires_at == expires_at:
                due.append((working.user_id, working.order))
        return due

    def _arm(self, working: _Working) -> None:
        order = working.order
        ladder = self._ladders.get(order.symbol)
        if ladder is None:
            ladder = self._ladders[order.symbol] = PriceLadder()
        series, rising = order_key(order)
        working.ticket = ladder.add(series, rising, order.price, order.id)

    def _disarm(self, working: _Working) -> None:
        if working.ticket is not None:
            self._ladders[working.order.symbol].cancel(working.ticket)
            working.ticket = None
