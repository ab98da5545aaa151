"""The public contract: what clients send and get over REST (and, inside frames and events, the same
models: a user, a quote, a candle, a position, an account, a ledger entry).

Money, prices and quantities are `Decimal` (decimal strings on the wire); times are epoch milliseconds. What a
client sends as a decimal is typed `Quantity`, `Price` or `Amount`: the grammar and range of `shared.numbers`.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Annotated, Any, Literal

from msgspec import UNSET, Meta, Struct, UnsetType, field

from shared import numbers
from shared.contracts.quote import BrokerPrice
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


class ForgotPasswordRequest(Struct, forbid_unknown_fields=True):
    email: Email


class ResetPasswordRequest(Struct, forbid_unknown_fields=True):
    email: Email
    otp: Otp
    password: Password


class ChangePasswordRequest(Struct, forbid_unknown_fields=True):
    current_password: Password
    new_password: Password


Scope = Literal["read", "trade"]
KeyName = Annotated[str, Meta(min_length=1, max_length=64)]


class ApiKeyCreate(Struct, forbid_unknown_fields=True, kw_only=True):
    """POST /api-keys: `scopes` is `["read"]` or `["read", "trade"]`."""

    name: KeyName
    scopes: Annotated[list[Scope], Meta(min_length=1, max_length=2)]


class ApiKey(Struct, kw_only=True):
    """An API key as listed (never with its secret)."""

    id: str
    name: str
    scopes: list[str]
    created_at: int
    last_used_at: int | None = None


class ApiKeyCreated(ApiKey, kw_only=True):
    """The answer to POST /api-keys: the only time `key` is shown."""

    key: str


class SignupAccepted(Struct):
    message: str


class Done(Struct):
    """An answer with nothing to return but what happened."""

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


class Price(BrokerPrice, kw_only=True):
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


Side = Literal["long", "short"]
CloseReason = Literal["manual", "stop_loss", "take_profit", "trailing_stop", "stop_out"]
OrderType = Literal["limit", "stop"]
OrderStatus = Literal["working", "filled", "cancelled", "expired", "rejected"]
ExpiresAt = Annotated[int, Meta(ge=0, le=10**14, description="Epoch milliseconds; absent: good till cancelled.")]


class PositionCreate(Struct, forbid_unknown_fields=True, kw_only=True):
    """POST /positions: a market order. `expected_price` with `max_deviation` refuses a fill worse than the
    expected price by more than that distance (422 `price_moved`)."""

    symbol: Symbol
    side: Side
    qty: Quantity
    leverage: Leverage = 1
    stop_loss: numbers.Price | None = None
    take_profit: numbers.Price | None = None
    trailing_distance: numbers.Price | None = None
    expected_price: numbers.Price | None = None
    max_deviation: numbers.Price | None = None


class PositionUpdate(Struct, forbid_unknown_fields=True, kw_only=True):
    """PATCH /positions/{id}: a field left out is kept, a null removes that stop (or stops the trailing)."""

    stop_loss: numbers.Price | UnsetType | None = UNSET
    take_profit: numbers.Price | UnsetType | None = UNSET
    trailing_distance: numbers.Price | UnsetType | None = UNSET


class CloseAll(Struct, forbid_unknown_fields=True, kw_only=True):
    """POST /positions/close-all: every open position, or those of one market."""

    symbol: Symbol | None = None


class OrderCreate(Struct, forbid_unknown_fields=True, kw_only=True):
    """POST /orders: a pending entry order (see docs/api.md, "Orders")."""

    symbol: Symbol
    side: Side
    type: OrderType
    qty: Quantity
    price: numbers.Price
    leverage: Leverage = 1
    stop_loss: numbers.Price | None = None
    take_profit: numbers.Price | None = None
    trailing_distance: numbers.Price | None = None
    expires_at: ExpiresAt | None = None


class OrderUpdate(Struct, forbid_unknown_fields=True, kw_only=True):
    """PATCH /orders/{id}: a field left out is kept; a null removes a stop, the trailing or the expiry."""

    price: numbers.Price | UnsetType = UNSET
    qty: Quantity | UnsetType = UNSET
    stop_loss: numbers.Price | UnsetType | None = UNSET
    take_profit: numbers.Price | UnsetType | None = UNSET
    trailing_distance: numbers.Price | UnsetType | None = UNSET
    expires_at: ExpiresAt | UnsetType | None = UNSET


AlertKind = Literal["price", "margin_level"]
Notify = Literal["ws", "mail"]
Note = Annotated[str, Meta(max_length=200)]


class AlertCreate(Struct, forbid_unknown_fields=True, kw_only=True):
    """POST /alerts: a price alert `{symbol, condition, price}`, or `{kind: "margin_level", below}` (a margin
    level in percent). `notify` is where it is told: the `account` channel (`ws`, always) and/or `mail`."""

    kind: AlertKind = "price"
    symbol: Symbol | None = None
    condition: Literal["above", "below"] | None = None
    price: numbers.Price | None = None
    below: numbers.Price | None = None  # a margin level, percent
    note: Note | None = None
    notify: Annotated[list[Notify], Meta(max_length=2)] = field(default_factory=lambda: ["ws"])


class Alert(Struct, kw_only=True):
    """An alert; `status` is `active` until it fires once (`triggered`, with the value that fired it)."""

    id: str
    kind: AlertKind
    symbol: str | None = None
    condition: Literal["above", "below"] | None = None
    price: Decimal | None = None
    below: Decimal | None = None
    note: str | None = None
    notify: list[str]
    status: Literal["active", "triggered"]
    created_at: int
    triggered_at: int | None = None
    triggered_value: Decimal | None = None  # the bid, or the margin level, that fired it


class Order(Struct, kw_only=True):
    """A pending order. `position_id` once filled; `reason` when rejected (why) or cancelled by the platform."""

    id: str
    symbol: str
    side: Side
    type: OrderType
    qty: Decimal
    price: Decimal
    leverage: int
    stop_loss: Decimal | None = None
    take_profit: Decimal | None = None
    trailing_distance: Decimal | None = None
    status: OrderStatus
    created_at: int
    updated_at: int
    expires_at: int | None = None
    position_id: str | None = None
    reason: str | None = None


class PositionClose(Struct, forbid_unknown_fields=True, kw_only=True):
    """POST /positions/{id}/close: without `qty` the whole position closes."""

    qty: Quantity | None = None


class FillReceipt(Struct, kw_only=True):
    """What a fill was priced from: the exchange's top of book at the tick (bid, ask, time, update id) and the
    market's spread in force. A buy fills at exchange_ask × (1 + spread_bps / 20,000) rounded up to the
    market's price tick, a sell at exchange_bid × (1 − spread_bps / 20,000) rounded down: half the spread on
    each side. `markup` is what that came to in price: price − exchange_ask (buy), exchange_bid − price (sell)."""

    side: Literal["buy", "sell"]
    price: Decimal
    exchange_bid: Decimal
    exchange_ask: Decimal
    exchange_time_us: int
    update_id: int | None = None
    spread_bps: Decimal
    markup: Decimal


class Position(Struct, kw_only=True):
    id: str
    symbol: str
    side: Side
    qty: Decimal
    entry_price: Decimal
    leverage: int
    margin: Decimal
    stop_loss: Decimal | None = None
    take_profit: Decimal | None = None
    trailing_distance: Decimal | None = None  # the stop-loss trails the price by this distance
    status: Literal["open", "closed"]
    opened_at: int
    updated_at: int
    closed_at: int | None = None
    close_price: Decimal | None = None
    realized_pnl: Decimal | None = None
    commission: Decimal = Decimal("0.00")  # paid so far: on opening, and on each close of this row
    financing: Decimal = Decimal("0.00")  # paid so far at the daily rollovers (negative: credited)
    close_reason: CloseReason | None = None
    parent_id: str | None = None
    order_id: str | None = None  # the pending order whose fill opened it
    open_receipt: FillReceipt | None = None  # what the opening fill was priced from
    close_receipt: FillReceipt | None = None  # what the closing fill was priced from
    user_id: str | None = None  # set for operators only


class ClosedAll(Struct, kw_only=True):
    """The answer to POST /positions/close-all: the positions it closed."""

    closed: list[Position]


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


MAX_REPLAY_STEP = 10_000
ReplayCount = Annotated[int, Meta(ge=1, le=MAX_REPLAY_STEP, description="How many ticks to play, 1 to 10,000.")]


class ReplayStepRequest(Struct, forbid_unknown_fields=True, kw_only=True):
    """POST /replay/step: play the next `count` ticks of a lockstep replay (one without a body)."""

    count: ReplayCount = 1


class ReplayStep(Struct, kw_only=True):
    """The answer to POST /replay/step, given once the ticks are published and your account has felt them: a
    market order sent now fills at these quotes, and what the ticks triggered in your account (stops, orders,
    alerts, margin calls) is applied before anything you send after this answer. `quotes` are the broker quotes
    of the markets the step moved, in catalogue order; `ticks` how many ticks it played, `played` how many the
    replay has played in all, `ended` whether the recording is over (a further step is refused, 409
    `replay_ended`)."""

    ticks: int
    played: int
    ended: bool
    quotes: list[Price]
