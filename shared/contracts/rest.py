"""The public contract: what clients send and get over REST (and, inside frames and events, the same
models: a user, a quote, a candle, a position, an account, a ledger entry).

Money, prices and quantities are `Decimal` (decimal strings on the wire); times are epoch milliseconds. What a
client sends as a decimal is typed `Quantity`, `Price` or `Amount`: the grammar and range of `shared.numbers`.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Annotated, Any, Literal

from msgspec import UNSET, Meta, Struct, UnsetType

from shared import numbers
from shared.contracts.quote import Quote
from shared.markets import MARKETS, MarketStatus
from shared.numbers import Amount, Quantity, Rate, Spread

Email = Annotated[str, Meta(min_length=3, max_length=254)]
Password = Annotated[str, Meta(max_length=1024)]
Name = Annotated[str, Meta(max_length=200)]
Otp = Annotated[str, Meta(max_length=64)]


class User(Struct, kw_only=True):
    """A registered trader as clients see them."""

    id: str
    email: str
    name: str
    status: Literal["active", "disabled"] = "active"
    created_at: int


class SignupRequest(Struct, forbid_unknown_fields=True):
    email: Email


class VerifyRequest(Struct, forbid_unknown_fields=True):
    email: Email
    otp: Otp
    password: Password
    name: Name


class SigninRequest(Struct, forbid_unknown_fields=True):
    email: Email
    password: Password


class SignupAccepted(Struct):
    message: str


class AuthSession(Struct, kw_only=True):
    """The answer to a successful verify or sign-in."""

    user: User
    access_token: str
    token_type: str = "bearer"
    expires_in: int


class MeResponse(Struct):
    user: User


class InfoResponse(Struct, kw_only=True):
    version: str
    ws_url: str
    server_time: int


class Price(Quote, kw_only=True):
    """The latest broker quote of a market (`GET /prices`); `stale` when its feed has gone quiet."""

    stale: bool = False


class Candle(Struct, kw_only=True):
    """OHLC of the broker mid over the bucket starting at `t` (epoch ms); `n` counts the quotes in it."""

    t: int
    o: Decimal
    h: Decimal
    l: Decimal  # noqa: E741 - the wire name every charting client expects
    c: Decimal
    n: int


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
    stop_loss: numbers.Price | None = None
    take_profit: numbers.Price | None = None


class PositionUpdate(Struct, forbid_unknown_fields=True, kw_only=True):
    """PATCH /positions/{id}: a field left out is kept, a null removes that stop."""

    stop_loss: numbers.Price | UnsetType | None = UNSET
    take_profit: numbers.Price | UnsetType | None = UNSET


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
    commission: Decimal = Decimal("0.00")  # paid so far: on opening, and on each close of this row
    financing: Decimal = Decimal("0.00")  # paid so far at the daily rollovers (negative: credited)
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
    kind: Literal["deposit", "realized_pnl", "commission", "financing", "fee", "shortfall"]
    amount: Decimal
    balance_after: Decimal
    reference: str | None
    created_at: int


class UserSummary(Struct, kw_only=True):
    id: str
    email: str
    name: str
    status: Literal["active", "disabled"]
    created_at: int
    balance: Decimal
    open_positions: int


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


class MarketUpdate(Struct, forbid_unknown_fields=True, kw_only=True):
    """PATCH /admin/markets/{symbol}: the terms to change; a field left out is kept."""

    status: MarketStatus | UnsetType = UNSET
    spread_bps: Spread | UnsetType = UNSET
    commission_rate: Rate | UnsetType = UNSET
    financing_long_rate: Rate | UnsetType = UNSET
    financing_short_rate: Rate | UnsetType = UNSET
    max_leverage: Leverage | UnsetType = UNSET


class AuditEntry(Struct, kw_only=True):
    """One change an operator made (`GET /admin/audit`): who, from where, when, to what, and the values before
    and after."""

    id: str
    at: int
    operator: str
    address: str | None = None
    action: str
    subject: str
    before: dict[str, Any]
    after: dict[str, Any]
