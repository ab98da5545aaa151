"""Account events (topic `account-events`, keyed by user id): what the dbproc publishes after each commit,
relayed to the `account` channel.

Every event a command makes carries `seq`: the user's event number, one more than the user's previous event,
assigned and stored (`account_events`) in the command's transaction, so a client that missed some can ask for
exactly those again. Marks (`AccountEvent` with `event="mark"`) are state, not events: their `seq` is null.
`resync`, between services only, has none either."""

from __future__ import annotations

from decimal import Decimal
from typing import Literal

from msgspec import Struct

from shared.contracts.rest import Account, Alert, Order, Position


class PositionEvent(Struct, tag_field="type", tag="position", kw_only=True):
    """A position opened, changed or closed; `balance` after it. `trailed` marks an update that is only its
    trailing stop-loss moving up (long) or down (short)."""

    event: Literal["opened", "updated", "closed"]
    user_id: str
    position: Position
    balance: Decimal
    trailed: bool = False
    seq: int | None = None


OrderEventKind = Literal["accepted", "modified", "filled", "cancelled", "expired", "rejected"]


class OrderEvent(Struct, tag_field="type", tag="order", kw_only=True):
    """A pending order was accepted, modified, filled (its position comes as a `position` `opened` event just
    before), cancelled, expired or rejected when it triggered (`order.reason` says why)."""

    event: OrderEventKind
    user_id: str
    order: Order
    seq: int | None = None


class PositionMark(Struct, kw_only=True):
    """One open position marked to market: the price it would close at now, and its unrealised PnL; and the
    price it would close at when the account reached the stop-out level (50 %), and the margin call level
    (100 %), if its market moved there and every other price stayed (None: no price of its market gets there,
    e.g. a market held as much long as short)."""

    id: str
    price: Decimal
    unrealized_pnl: Decimal
    stop_out_price: Decimal | None = None
    margin_call_price: Decimal | None = None


class AccountEvent(Struct, tag_field="type", tag="account", kw_only=True):
    """The account after a change (`snapshot`), marked to market (`mark`, with each position's PnL), a margin
    call, its clearing, or a stop-out. `resync` (between services only) says a command was answered from
    its stored reply: its events may never have gone out, so listeners reload that user's state."""

    event: Literal["snapshot", "mark", "margin_call", "margin_call_cleared", "stop_out", "resync"]
    user_id: str
    account: Account | None = None
    margin_level: Decimal | None = None
    marks: list[PositionMark] | None = None
    seq: int | None = None


class AlertEvent(Struct, tag_field="type", tag="alert", kw_only=True):
    """An alert was created (`created`), fired (`triggered`, with `price`: the bid or the margin level that
    fired it) or deleted (`deleted`). `email` is where a `mail` alert goes (the owner's own address)."""

    event: Literal["created", "triggered", "deleted"]
    user_id: str
    alert: Alert
    price: Decimal | None = None
    email: str | None = None
    seq: int | None = None


Event = PositionEvent | AccountEvent | OrderEvent | AlertEvent


class AccountState(Struct, tag_field="type", tag="account_state", kw_only=True):
    """Everything a client needs to rebuild its view of an account, as of event `seq`: the account, its open
    positions and its working orders. Sent on the `account` channel after a `resume_gap` error (the events
    after the client's `since` are no longer kept); the events after `seq` follow it."""

    seq: int
    account: Account
    positions: list[Position]
    orders: list[Order]
