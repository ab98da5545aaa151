"""Between the services, over the bus: the request envelope and its reply, the price ticks, and the body of
every request (`shared.operations` names which body goes with which request and reply)."""

from __future__ import annotations

from decimal import Decimal
from typing import Any, Literal

from msgspec import Raw, Struct

from shared.contracts.quote import Quote
from shared.contracts.rest import (
    AlertCreate,
    Candle,
    MarketUpdate,
    OrderCreate,
    OrderStatus,
    OrderUpdate,
    PositionCreate,
    PositionUpdate,
    User,
)
from shared.markets import MarketSettings


class ErrorBody(Struct, kw_only=True):
    status: int
    code: str
    message: str
    details: Any = None
    retry_after: int | None = None


class BusRequest(Struct, kw_only=True):
    """A command or query for the dbproc. `command_id` makes a write apply once."""

    type: str
    command_id: str
    correlation_id: str
    reply_to: str
    body: Raw
    sent_at_ms: int = 0
    request_id: str | None = None  # the REST request it was made for, for the logs (`shared.logs`)


class BusReply(Struct, kw_only=True):
    correlation_id: str
    reply_to: str
    body: Raw = Raw(b"null")
    error: ErrorBody | None = None


class PriceTick(Struct, kw_only=True, array_like=True):
    """One exchange top-of-book update, as the poller publishes it (times in microseconds)."""

    symbol: str
    bid: Decimal
    ask: Decimal
    exchange_time_us: int
    ingest_time_us: int
    update_id: int | None = None  # the exchange's book update id, when its feed gives one


class UserExistsQuery(Struct, kw_only=True):
    email: str


class UserExists(Struct, kw_only=True):
    exists: bool


class CreateUser(Struct, kw_only=True):
    email: str
    name: str
    password_hash: str


class CredentialsQuery(Struct, kw_only=True):
    email: str


class Credentials(Struct, kw_only=True):
    """What sign-in needs; `user` is None when the email is not registered."""

    user: User | None = None
    password_hash: str | None = None


class UserQuery(Struct, kw_only=True):
    user_id: str


class RehashPassword(Struct, kw_only=True):
    """Bus request `user.rehash`: store `new_hash` (the same password, hashed the current way) in place of
    `old_hash`, only if `old_hash` is still the user's hash."""

    user_id: str
    old_hash: str
    new_hash: str


class PasswordRehashed(Struct, kw_only=True):
    replaced: bool


class CandlesQuery(Struct, kw_only=True):
    """Bus request `candles.history`: the last `limit` candles of `interval` for `symbol` (those that start
    before `until`, when given); with `since`, the first `limit` that start at `since` or later instead."""

    symbol: str
    interval: str
    limit: int
    since: int | None = None
    until: int | None = None


class CandleHistory(Struct, kw_only=True):
    """The dbproc's answer to `candles.history`, oldest first; `more`: with `since`, more candles follow the
    last one (before `until`)."""

    candles: list[Candle]
    more: bool = False


class CoverageQuery(Struct, kw_only=True):
    """What is stored of each market's 1m candles in the minutes `[since, until)` (epoch ms)."""

    symbols: list[str]
    since: int
    until: int


class CandleGap(Struct, kw_only=True):
    """Minutes `[start, end)` with no stored candle; `before` is the close of the stored candle just before
    the gap and `after` the open of the one at its end, when there is one."""

    start: int
    end: int
    before: Decimal | None = None
    after: Decimal | None = None


class MarketCoverage(Struct, kw_only=True):
    """One market's stored history: its latest candle (the last stored price) and the gaps in the window."""

    symbol: str
    last_t: int | None = None
    last_close: Decimal | None = None
    gaps: list[CandleGap] = []


class Coverage(Struct, kw_only=True):
    """The dbproc's answer to `candles.coverage`."""

    markets: list[MarketCoverage]


class CandleHistoryBatch(Struct, kw_only=True):
    """1m candles of one market for minutes before the poller started (topic `candle-history`, keyed by
    symbol). The dbproc stores each where no candle is stored yet and leaves stored minutes alone."""

    symbol: str
    source: str
    candles: list[Candle]


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
    """Issued by the risk engine: close a position at the price of the tick that hit its stop. For a
    `trailing_stop`, `stop_loss` is the level the book had ratcheted it to (the stored one may lag behind)."""

    user_id: str
    position_id: str
    reason: Literal["stop_loss", "take_profit", "trailing_stop"]
    price: Decimal
    quote: Quote
    stop_loss: Decimal | None = None


class CloseAllCommand(Struct, kw_only=True):
    user_id: str
    symbol: str | None = None


class TrailLevel(Struct, kw_only=True):
    position_id: str
    stop_loss: Decimal


class TrailCommand(Struct, kw_only=True):
    """Issued by the risk engine: store the trailing stop-losses it ratcheted (each only if it is further in
    the position's favour than the stored one)."""

    user_id: str
    levels: list[TrailLevel]


class PlaceOrderCommand(Struct, kw_only=True):
    user_id: str
    order: OrderCreate


class ModifyOrderCommand(Struct, kw_only=True):
    user_id: str
    order_id: str
    update: OrderUpdate


class CancelOrderCommand(Struct, kw_only=True):
    user_id: str
    order_id: str


class FillOrderCommand(Struct, kw_only=True):
    """Issued by the risk engine: the order's trigger was reached by `quote`; fill it at that quote."""

    user_id: str
    order_id: str
    quote: Quote


class ExpireOrderCommand(Struct, kw_only=True):
    """Issued by the risk engine: the order's `expires_at` has passed."""

    user_id: str
    order_id: str


class OrdersQuery(Struct, kw_only=True):
    user_id: str | None  # None: every user's (operators)
    status: OrderStatus | None = None
    limit: int = 200
    cursor: str | None = None
    since: int | None = None  # created_at at or after (epoch ms)
    until: int | None = None  # created_at before (epoch ms)


class OrderQuery(Struct, kw_only=True):
    user_id: str
    order_id: str


class WatchAccount(Struct, kw_only=True):
    """From a server with a connection on the user's `account` channel: mark the account to market for the next
    `seconds` (a lease the server renews while the connection lasts)."""

    user_id: str
    seconds: float


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
    since: int | None = None  # the sort time (closed_at with status closed, else opened_at) at or after
    until: int | None = None  # the sort time before


class PositionQuery(Struct, kw_only=True):
    user_id: str
    position_id: str


class LedgerQuery(Struct, kw_only=True):
    user_id: str
    limit: int = 200
    cursor: str | None = None  # `shared.paging`: the page after this one
    since: int | None = None  # created_at at or after (epoch ms)
    until: int | None = None  # created_at before (epoch ms)


class AccountEventsQuery(Struct, kw_only=True):
    """The user's account events after event `since`, oldest first, at most `limit`."""

    user_id: str
    since: int
    limit: int = 200


class AccountEventsPage(Struct, kw_only=True):
    """The answer to `account.events`: the stored frames (each an encoded account event with its `seq`, as it
    went out), the user's latest `seq`, and `gap`: some events after `since` are no longer kept (or `since` is
    beyond the latest), so the client must rebuild from a fresh state instead."""

    events: list[Raw]
    latest: int
    gap: bool = False


class AccountStateQuery(Struct, kw_only=True):
    user_id: str


class MarginCallCommand(Struct, kw_only=True):
    """Issued by the risk engine when a user's margin level crosses 100 %: down (`margin_call`) or back up
    (`margin_call_cleared`). Applied once, and only when it changes the account's margin call state, so the
    trader hears each crossing once whichever dbproc saw it."""

    user_id: str
    event: Literal["margin_call", "margin_call_cleared"]
    margin_level: Decimal | None = None


class DepositCommand(Struct, kw_only=True):
    user_id: str
    amount: Decimal


class UsersQuery(Struct, kw_only=True):
    search: str | None = None  # an email, an id, or part of an email
    limit: int = 100


class SetDisabledCommand(Struct, kw_only=True):
    user_id: str
    disabled: bool


class ExposureQuery(Struct, kw_only=True):
    pass


class HealthQuery(Struct, kw_only=True):
    """`health.check` has no parameters."""


class HealthReport(Struct, kw_only=True):
    database: str
    instance_id: str


class UserStatus(Struct, kw_only=True):
    """The answer to `operator.set_disabled`."""

    user_id: str
    disabled: bool


class CreateKeyCommand(Struct, kw_only=True):
    """Store a new API key of `user_id`; the server made the secret and sends only its hash."""

    user_id: str
    key_id: str
    name: str
    scopes: list[str]
    secret_hash: str


class KeysQuery(Struct, kw_only=True):
    user_id: str


class RevokeKeyCommand(Struct, kw_only=True):
    user_id: str
    key_id: str


class KeyQuery(Struct, kw_only=True):
    """Who an API key belongs to (the server resolving a bearer key it has not cached)."""

    key_id: str


class KeyRecord(Struct, kw_only=True):
    """A key as the server checks it: its owner and scopes, the hash of its secret; `revoked` once revoked (or
    when no such key exists)."""

    key_id: str
    revoked: bool = False
    user: User | None = None
    scopes: list[str] = []
    secret_hash: str = ""


class CreateAlertCommand(Struct, kw_only=True):
    user_id: str
    alert: AlertCreate


class AlertsQuery(Struct, kw_only=True):
    user_id: str
    status: Literal["active", "triggered"] | None = None


class DeleteAlertCommand(Struct, kw_only=True):
    user_id: str
    alert_id: str


class FireAlertCommand(Struct, kw_only=True):
    """Issued by the risk engine: the alert's condition was met at `value` (the bid, or the margin level)."""

    user_id: str
    alert_id: str
    value: Decimal
# --- market controls and costs ----------------------------------------------------------------------------


class SetMarketCommand(Struct, kw_only=True):
    """An operator changes a market's terms (`PATCH /admin/markets/{symbol}`); `operator` and `address` are
    recorded in the audit table."""

    symbol: str
    update: MarketUpdate
    operator: str
    address: str | None = None


class MarketsQuery(Struct, kw_only=True):
    """`markets.settings`: every market's settings in force, with their revisions (a server's start)."""


class MarketsSettings(Struct, kw_only=True):
    markets: list[MarketSettings]


class AuditQuery(Struct, kw_only=True):
    subject: str | None = None  # one market (or other subject) only
    limit: int = 100
    cursor: str | None = None  # `shared.paging`: the page after this one


class FinancingCommand(Struct, kw_only=True):
    """Internal (the dbproc that owns the user's partition): charge or credit every open position of the user
    the financing of each rollover up to `through` (epoch ms) that it has not paid yet."""

    user_id: str
    through: int


class ReplayStepCommand(Struct, kw_only=True):
    """`replay.step`, to the poller of a lockstep replay: publish the next `count` ticks (applied once per command
    id: a redelivered or retried step plays nothing more and gets the same answer)."""

    count: int


class ReplayStepped(Struct, kw_only=True):
    """The ticks a step published (each market's in order), how many the replay has played in all, and whether
    the recording is over."""

    ticks: list[PriceTick]
    played: int
    ended: bool


class ReplaySync(Struct, kw_only=True):
    """`replay.sync`, keyed by the user: answered by the dbproc that owns the user's partition once its risk engine
    holds the user's latest account events and has checked, per market, the tick with exchange time
    `marks[symbol]` (and everything before it). What those ticks triggered for the user is on the user's
    partition by then, ahead of any request sent after the answer (`cfd_dbproc.trading.replay`)."""

    user_id: str
    marks: dict[str, int]


class ReplaySynced(Struct, kw_only=True):
    """The dbproc's quotes (what it fills at) of the markets asked about."""

    quotes: list[Quote]
