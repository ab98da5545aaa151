"""Wire types of the client. The REST types are the platform's own (`shared.contracts.rest`), re-exported
here; the feed's account frames and the client's own state events
are defined here, leniently (optional fields, unknown fields ignored), so a server that adds fields to a
frame does not break old clients.
"""

from __future__ import annotations

from decimal import Decimal
from enum import StrEnum
from typing import Literal

from msgspec import Struct

from shared.contracts.events import PositionMark
from shared.contracts.rest import (
    Account,
    Alert,
    FillReceipt,
    LedgerEntry,
    Order,
    Position,
    PositionClose,
    PositionCreate,
    PositionUpdate,
    ReplayStep,
)

Side = Literal["long", "short"]

__all__ = [
    "Account",
    "AccountFrame",
    "AccountStateFrame",
    "Alert",
    "AlertFrame",
    "FeedState",
    "FillReceipt",
    "LedgerEntry",
    "Order",
    "OrderFrame",
    "Position",
    "PositionClose",
    "PositionCreate",
    "PositionFrame",
    "PositionMark",
    "PositionUpdate",
    "ReplayStep",
    "Side",
    "StateChanged",
    "is_open",
]


def is_open(position: Position) -> bool:
    """Whether a position is still open."""
    return position.status == "open"


# --- feed events -----------------------------------------------------------------------------------------


class PositionFrame(Struct, tag_field="type", tag="position", kw_only=True):
    """`account` channel: a position of the signed-in user was `opened`, `updated` or `closed`; `balance` is
    the account balance after it. `seq` (on every account event): the user's event number, one more than the
    previous event's."""

    event: str
    position: Position
    balance: Decimal | None = None
    seq: int | None = None


class OrderFrame(Struct, tag_field="type", tag="order", kw_only=True):
    """`account` channel: a pending order was `accepted`, `modified`, `filled`, `cancelled`, `expired` or
    `rejected` (`order.reason` says why)."""

    event: str
    order: Order
    seq: int | None = None


class AlertFrame(Struct, tag_field="type", tag="alert", kw_only=True):
    """`account` channel: an alert was `created`, `triggered` (with `price`: the bid or the margin level that
    fired it) or `deleted`; numbered (`seq`) like every account event."""

    event: str
    alert: Alert
    price: Decimal | None = None
    seq: int | None = None


class AccountFrame(Struct, tag_field="type", tag="account", kw_only=True):
    """`account` channel: `event` is `snapshot` (the account changed), `mark` (the account and its open
    positions marked to market at the latest quotes, in `marks`), `margin_call`, `margin_call_cleared` or
    `stop_out`."""

    event: str = "snapshot"
    account: Account | None = None
    margin_level: Decimal | None = None
    marks: list[PositionMark] | None = None
    seq: int | None = None  # None for a mark (state, not an event)


class AccountStateFrame(Struct, tag_field="type", tag="account_state", kw_only=True):
    """`account` channel, after a `resume_gap` error: the account, its open positions and working orders as of
    event `seq` (the events the client missed are no longer kept); the events after `seq` follow."""

    seq: int
    account: Account
    positions: list[Position] = []
    orders: list[Order] = []


class FeedState(StrEnum):
    """Where a `FeedClient` stands; `STALE` means connected but no price for a while."""

    CONNECTING = "connecting"
    LIVE = "live"
    RECONNECTING = "reconnecting"
    STALE = "stale"
    CLOSED = "closed"


class StateChanged(Struct, tag_field="type", tag="state", kw_only=True):
    """Emitted by the `FeedClient` itself (never by the server) when its state changes."""

    state: FeedState
    detail: str = ""
    attempt: int = 0
    retry_in: float | None = None

