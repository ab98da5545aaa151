"""The risk engine's index of pending orders finds exactly the orders a tick triggers (as the brute-force
`shared.trading.order_triggered` over every order would), each once, and the ones that expire."""

from __future__ import annotations

from decimal import Decimal

from hypothesis import given, settings
from hypothesis import strategies as st

from cfd_dbproc.risk.orders import WorkingOrders
from shared.contracts.quote import Quote
from shared.contracts.rest import Order
from shared.trading import order_triggered

D = Decimal
prices = st.integers(min_value=90, max_value=110).map(D)


def order(n: int, side: str, kind: str, price: Decimal, expires_at: int | None = None) -> Order:
    return Order(id=f"o{n}", symbol="SOL_USDC", side=side, type=kind, qty=D(1), price=price,  # type: ignore[arg-type]
                 leverage=1, status="working", created_at=0, updated_at=0, expires_at=expires_at)


def quote(bid: Decimal, spread: Decimal) -> Quote:
    return Quote(symbol="SOL_USDC", bid=bid, ask=bid + spread, mid=bid + spread / 2, ts=0)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(["long", "short"]), st.sampled_from(["limit", "stop"]), prices),
                max_size=30),
       st.lists(st.tuples(prices, st.integers(min_value=0, max_value=3).map(D)), min_size=1, max_size=10))
def test_a_tick_triggers_exactly_the_orders_its_quote_reaches_and_each_once(orders, ticks):
    index = WorkingOrders()
    working = {}
    for n, (side, kind, price) in enumerate(orders):
        o = order(n, side, kind, price)
        index.put("ada", o)
        working[o.id] = o
    for bid, spread in ticks:
        q = quote(bid, spread)
        expected = {i for i, o in working.items() if order_triggered(o.side, o.type, o.price, q)}
        fired = {o.id for _, o in index.on_quote(q)}
        assert fired == expected
        for order_id in fired:  # filled: the fill's event takes them out
            index.remove(order_id)
            del working[order_id]
    assert len(index) == len(working)


def test_a_released_order_triggers_again_and_a_changed_one_on_its_new_price():
    index = WorkingOrders()
    index.put("ada", order(1, "long", "limit", D(100)))
    assert [o.id for _, o in index.on_quote(quote(D(99), D(1)))] == ["o1"]  # ask 100 ≤ 100
    assert index.on_quote(quote(D(98), D(1))) == []  # pending: not twice
    assert index.release("o1") and [o.id for _, o in index.on_quote(quote(D(98), D(1)))] == ["o1"]
    index.put("ada", order(1, "long", "limit", D(90)))  # modified: the new price only
    assert index.on_quote(quote(D(95), D(1))) == []
    index.remove("o1")  # cancelled
    assert index.on_quote(quote(D(80), D(1))) == [] and len(index) == 0


def test_orders_expire_once_at_their_time_and_a_new_expiry_replaces_the_old():
    index = WorkingOrders()
    index.put("ada", order(1, "long", "limit", D(50), expires_at=1_000))
    index.put("ada", order(2, "short", "stop", D(50), expires_at=2_000))
    index.put("ada", order(3, "short", "limit", D(150)))  # good till cancelled
    assert index.expired(999) == []
    assert [o.id for _, o in index.expired(1_000)] == ["o1"]
    assert index.expired(1_500) == []  # given once
    index.put("ada", order(2, "short", "stop", D(50), expires_at=5_000))  # modified: the later expiry counts
    assert index.expired(4_999) == [] and [o.id for _, o in index.expired(10_000)] == ["o2"]
