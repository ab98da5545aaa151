"""Wire contracts of trading: positions, the account, the ledger, and their bus requests and events.

Money, prices and quantities are `Decimal` (decimal strings on the wire); times are epoch milliseconds. What a
client sends as a decimal is typed `Quantity`, `Price` or `Amount`: the grammar and range of `shared.numbers`.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Annotated, Literal

from msgspec import UNSET, Meta, Struct, UnsetType

from shared.contracts import Quote
from shared.markets import MARKETS
from shared.numbers import Amount, Price, Quantity

Symbol = Annotated[str, Meta(min_length=1, max_length=32, extra_json_schema={
    "description": "A market of GET /markets (another symbol is refused with 404 unknown_market).",
    "examples": ["SOL_USDC"], "extra": {"enum": list(MARKETS)}})]
Leverage = Annotated[int, Meta(ge=1, le=1000)]


class PositionCreate(Struct, forbid_unknown_fields=True, kw_only=True):
    """POST /positions."""

    symbol: Symbol
    side: Literal["long", "short"]
    qty: Quantity
    leverage: Leverage = 1
    stop_loss: Price | None = None
    take_profit: Price | None = None


class PositionUpdate(Struct, forbid_unknown_fields=True, kw_only=True):
    """PATCH /positions/{id}: a field left out is kept, a null removes that stop."""

    stop_loss: Price | UnsetType | None = UNSET
    take_profit: Price | UnsetType | None = UNSET


class PositionClose(Struct, forbid_unknown_fields=True, kw_only=True):
    """POST /positions/{id}/close: without `qty` the whole position closes."""

    qty: Quantity | None = None


class Position(Struct, kw_only=True):
    id: str
    symbol: str
    side: Literal["long", "short"]
    qty: Decimal
    entry_price: Decimal
    leverage: int
    margin: Decimal
    stop_loss: Decimal | None = None
    take_profit: Decimal | None = None
    status: Literal["open", "closed"]
    opened_at: int
    updated_at: int
    closed_at: int | None = None
    close_price: Decimal | None = None
    realized_pnl: Decimal | None = None
    close_reason: Literal["manual", "stop_loss", "take_profit", "stop_out"] | None = None
    parent_id: str | None = None
    user_id: str | None = None  # set for operators only


class Account(Struct, kw_only=True):
    currency: str
    balance: Decimal
    equity: Decimal
    used_margin: Decimal
    free_margin: Decimal
    margin_level: Decimal | None
    unrealized_pnl: Decimal


class LedgerEntry(Struct, kw_only=True):
    id: str
    kind: Literal["deposit", "realized_pnl", "fee", "shortfall"]
    amount: Decimal
    balance_after: Decimal
    reference: str | None
    created_at: int


# --- bus requests (topic requests.trading, keyed by user id) ----------------------------------------------


class OpenCommand(Struct, kw_only=True):
    user_id: str
    order: PositionCreate


class CloseCommand(Struct, kw_only=True):
    user_id: str
    position_id: str
    qty: Decimal | None = None


class ModifyCommand(Struct, kw_only=True):
    user_id: str
    position_id: str
    update: PositionUpdate


class RiskCloseCommand(Struct, kw_only=True):
    """Issued by the risk engine: close a position at the price of the tick that hit its stop."""

    user_id: str
    position_id: str
    reason: Literal["stop_loss", "take_profit"]
    price: Decimal
    quote: Quote


class StopOutCommand(Struct, kw_only=True):
    """Issued by the risk engine: close positions in `order` (the book's, worst loser first) until the margin
    level recovers, at `quotes`."""

    user_id: str
    quotes: list[Quote]
    order: list[str] = []


class AccountQuery(Struct, kw_only=True):
    user_id: str


class PositionsQuery(Struct, kw_only=True):
    user_id: str | None  # None: every user's (operators)
    status: Literal["open", "closed"] | None = None
    limit: int = 200
    cursor: str | None = None  # `shared.paging`: the page after this one


class PositionQuery(Struct, kw_only=True):
    user_id: str
    position_id: str


class LedgerQuery(Struct, kw_only=True):
    user_id: str
    limit: int = 200
    cursor: str | None = None  # `shared.paging`: the page after this one


class DepositCommand(Struct, kw_only=True):
    user_id: str
    amount: Decimal


# --- account events (topic account-events, keyed by user id) -----------------------------------------------


class PositionEvent(Struct, tag_field="type", tag="position", kw_only=True):
    event: Literal["opened", "updated", "closed"]
    user_id: str
    position: Position
    balance: Decimal


class PositionMark(Struct, kw_only=True):
    """One open position marked to market: the price it would close at now, and its unrealised PnL."""

    id: str
    price: Decimal
    unrealized_pnl: Decimal


class AccountEvent(Struct, tag_field="type", tag="account", kw_only=True):
    """The account after a change (`snapshot`), marked to market (`mark`, with each position's PnL), a margin
    call, its clearing, or a stop-out. `resync` (between services only) says a command was answered from
    its stored reply: its events may never have gone out, so listeners reload that user's state."""

    event: Literal["snapshot", "mark", "margin_call", "margin_call_cleared", "stop_out", "resync"]
    user_id: str
    account: Account | None = None
    margin_level: Decimal | None = None
    marks: list[PositionMark] | None = None


Event = PositionEvent | AccountEvent


# --- operators ---------------------------------------------------------------------------------------------


class UserSummary(Struct, kw_only=True):
    id: str
    email: str
    name: str
    status: Literal["active", "disabled"]
    created_at: int
    balance: Decimal
    open_positions: int


class UsersQuery(Struct, kw_only=True):
    search: str | None = None  # an email, an id, or part of an email
    limit: int = 100


class SetDisabledCommand(Struct, kw_only=True):
    user_id: str
    disabled: bool


class DepositRequest(Struct, forbid_unknown_fields=True, kw_only=True):
    """POST /admin/users/{id}/deposit (a negative amount withdraws)."""

    amount: Amount


class MarketExposure(Struct, kw_only=True):
    """The broker is the counterparty: its position is the opposite of its clients' net position."""

    symbol: str
    long_qty: Decimal
    short_qty: Decimal
    net_client_qty: Decimal
    broker_net_qty: Decimal
    client_unrealized_pnl: Decimal
    broker_unrealized_pnl: Decimal
    open_positions: int


class ExposureQuery(Struct, kw_only=True):
    pass

