"""Every request one service makes of another over the bus, declared once.

An `Operation` names a request (its wire `type`), the request topic it travels on, the type of its body and the
type of its reply. The server calls `rpc.call(OPEN, body, key=user_id)` and gets a `Position` back (or the
dbproc's `CfdError`); the dbproc registers `responder.handle(OPEN, engine.open)` and its handler takes an
`OpenCommand` and returns a `Position`. Decoding, encoding and routing happen in `shared.bus.rpc`, nowhere else.

A command (`command=True`) changes state and is applied once per `command_id`. An operation whose `reply` is
None is one nobody waits on (the risk engine's closes, which the dbproc sends itself; the server's watch of an
account it marks), so no reply is published.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Generic, TypeVar

from shared.contracts.bus import (
    AccountEventsPage,
    AccountEventsQuery,
    AccountQuery,
    AccountStateQuery,
    AlertsQuery,
    AuditQuery,
    CancelOrderCommand,
    CandleHistory,
    CandlesQuery,
    CloseAllCommand,
    CloseCommand,
    Coverage,
    CoverageQuery,
    CreateAlertCommand,
    CreateKeyCommand,
    CreateUser,
    Credentials,
    CredentialsQuery,
    DeleteAlertCommand,
    DepositCommand,
    ExpireOrderCommand,
    ExposureQuery,
    FillOrderCommand,
    FinancingCommand,
    FireAlertCommand,
    HealthQuery,
    HealthReport,
    KeyQuery,
    KeyRecord,
    KeysQuery,
    LedgerQuery,
    MarginCallCommand,
    MarketsQuery,
    MarketsSettings,
    ModifyCommand,
    ModifyOrderCommand,
    OpenCommand,
    OrderQuery,
    OrdersQuery,
    PasswordRehashed,
    PlaceOrderCommand,
    PositionQuery,
    PositionsQuery,
    RehashPassword,
    ReplayStepCommand,
    ReplayStepped,
    ReplaySync,
    ReplaySynced,
    RevokeKeyCommand,
    RiskCloseCommand,
    SetDisabledCommand,
    SetMarketCommand,
    StopOutCommand,
    TrailCommand,
    UserExists,
    UserExistsQuery,
    UserQuery,
    UsersQuery,
    UserStatus,
    WatchAccount,
)
from shared.contracts.events import AccountState
from shared.contracts.rest import (
    Account,
    Alert,
    ApiKey,
    AuditEntry,
    ClosedAll,
    LedgerEntry,
    MarketExposure,
    Order,
    Position,
    User,
    UserSummary,
)
from shared.markets import MarketSettings

Req = TypeVar("Req")
Rep = TypeVar("Rep")


class Route(StrEnum):
    """The request topic an operation travels on, and so the consumer group that answers it."""

    USERS = "users"  # requests.users: the dbproc, keyed by email or user id
    TRADING = "trading"  # requests.trading: the dbproc, keyed by user id (one user's commands in order)
    CANDLES = "candles"  # requests.candles: the dbproc's candle consumer, keyed by symbol
    HEALTH = "health"  # requests.health: the dbproc, to tell that it answers and reaches its database
    REPLAY = "replay"  # requests.replay: the poller of a lockstep replay


@dataclass(frozen=True, slots=True, eq=False)
class Operation(Generic[Req, Rep]):
    """One kind of request: `name` on the wire, its `route`, and the types of its body and reply."""

    name: str
    route: Route
    request: type[Req]
    reply: Any  # type[Rep], or a generic alias such as list[Position]; None: nobody waits for a reply
    command: bool = False

    def __repr__(self) -> str:
        return f"Operation({self.name})"


# --- users (requests.users) ----------------------------------------------------------------------------------
USER_EXISTS: Operation[UserExistsQuery, UserExists] = Operation("user.exists", Route.USERS, UserExistsQuery, UserExists)
USER_CREATE: Operation[CreateUser, User] = Operation("user.create", Route.USERS, CreateUser, User, command=True)
USER_CREDENTIALS: Operation[CredentialsQuery, Credentials] = Operation(
    "user.credentials", Route.USERS, CredentialsQuery, Credentials)
USER_PROFILE: Operation[UserQuery, User] = Operation("user.profile", Route.USERS, UserQuery, User)
USER_REHASH: Operation[RehashPassword, PasswordRehashed] = Operation(
    "user.rehash", Route.USERS, RehashPassword, PasswordRehashed, command=True)

# --- trading (requests.trading) ------------------------------------------------------------------------------
OPEN: Operation[OpenCommand, Position] = Operation("position.open", Route.TRADING, OpenCommand, Position, command=True)
CLOSE: Operation[CloseCommand, Position] = Operation(
    "position.close", Route.TRADING, CloseCommand, Position, command=True)
MODIFY: Operation[ModifyCommand, Position] = Operation(
    "position.modify", Route.TRADING, ModifyCommand, Position, command=True)
DEPOSIT: Operation[DepositCommand, Account] = Operation(
    "account.deposit", Route.TRADING, DepositCommand, Account, command=True)
RISK_CLOSE: Operation[RiskCloseCommand, None] = Operation(
    "position.risk_close", Route.TRADING, RiskCloseCommand, None, command=True)
STOP_OUT: Operation[StopOutCommand, None] = Operation(
    "account.stop_out", Route.TRADING, StopOutCommand, None, command=True)
CLOSE_ALL: Operation[CloseAllCommand, ClosedAll] = Operation(
    "positions.close_all", Route.TRADING, CloseAllCommand, ClosedAll, command=True)
TRAIL: Operation[TrailCommand, None] = Operation("position.trail", Route.TRADING, TrailCommand, None, command=True)
MARGIN_CALL: Operation[MarginCallCommand, None] = Operation(
    "account.margin_call", Route.TRADING, MarginCallCommand, None, command=True)
ORDER_PLACE: Operation[PlaceOrderCommand, Order] = Operation(
    "order.place", Route.TRADING, PlaceOrderCommand, Order, command=True)
ORDER_MODIFY: Operation[ModifyOrderCommand, Order] = Operation(
    "order.modify", Route.TRADING, ModifyOrderCommand, Order, command=True)
ORDER_CANCEL: Operation[CancelOrderCommand, Order] = Operation(
    "order.cancel", Route.TRADING, CancelOrderCommand, Order, command=True)
ORDER_FILL: Operation[FillOrderCommand, None] = Operation(
    "order.fill", Route.TRADING, FillOrderCommand, None, command=True)
ORDER_EXPIRE: Operation[ExpireOrderCommand, None] = Operation(
    "order.expire", Route.TRADING, ExpireOrderCommand, None, command=True)
ORDERS: Operation[OrdersQuery, list[Order]] = Operation("orders.list", Route.TRADING, OrdersQuery, list[Order])
ORDER: Operation[OrderQuery, Order] = Operation("order.get", Route.TRADING, OrderQuery, Order)
WATCH_ACCOUNT: Operation[WatchAccount, None] = Operation("account.watch", Route.TRADING, WatchAccount, None)
FINANCING: Operation[FinancingCommand, None] = Operation(
    "account.financing", Route.TRADING, FinancingCommand, None, command=True)
ACCOUNT: Operation[AccountQuery, Account] = Operation("account.get", Route.TRADING, AccountQuery, Account)
POSITIONS: Operation[PositionsQuery, list[Position]] = Operation(
    "positions.list", Route.TRADING, PositionsQuery, list[Position])
POSITION: Operation[PositionQuery, Position] = Operation("position.get", Route.TRADING, PositionQuery, Position)
LEDGER: Operation[LedgerQuery, list[LedgerEntry]] = Operation(
    "ledger.list", Route.TRADING, LedgerQuery, list[LedgerEntry])
ACCOUNT_EVENTS: Operation[AccountEventsQuery, AccountEventsPage] = Operation(
    "account.events", Route.TRADING, AccountEventsQuery, AccountEventsPage)
ACCOUNT_STATE: Operation[AccountStateQuery, AccountState] = Operation(
    "account.state", Route.TRADING, AccountStateQuery, AccountState)

# --- alerts (requests.trading, keyed by the owner) -------------------------------------------------------------
ALERT_CREATE: Operation[CreateAlertCommand, Alert] = Operation(
    "alert.create", Route.TRADING, CreateAlertCommand, Alert, command=True)
ALERTS: Operation[AlertsQuery, list[Alert]] = Operation("alerts.list", Route.TRADING, AlertsQuery, list[Alert])
ALERT_DELETE: Operation[DeleteAlertCommand, Alert] = Operation(
    "alert.delete", Route.TRADING, DeleteAlertCommand, Alert, command=True)
ALERT_FIRE: Operation[FireAlertCommand, None] = Operation(
    "alert.fire", Route.TRADING, FireAlertCommand, None, command=True)

# --- API keys (requests.trading, keyed by the owner; a lookup by the key id) --------------------------------
KEY_CREATE: Operation[CreateKeyCommand, ApiKey] = Operation(
    "key.create", Route.TRADING, CreateKeyCommand, ApiKey, command=True)
KEYS: Operation[KeysQuery, list[ApiKey]] = Operation("keys.list", Route.TRADING, KeysQuery, list[ApiKey])
KEY_REVOKE: Operation[RevokeKeyCommand, ApiKey] = Operation(
    "key.revoke", Route.TRADING, RevokeKeyCommand, ApiKey, command=True)
KEY_LOOKUP: Operation[KeyQuery, KeyRecord] = Operation("key.lookup", Route.TRADING, KeyQuery, KeyRecord)

# --- operators (requests.trading, keyed "operator" or by the user concerned) ----------------------------------
USERS: Operation[UsersQuery, list[UserSummary]] = Operation(
    "operator.users", Route.TRADING, UsersQuery, list[UserSummary])
SET_DISABLED: Operation[SetDisabledCommand, UserStatus] = Operation(
    "operator.set_disabled", Route.TRADING, SetDisabledCommand, UserStatus, command=True)
EXPOSURE: Operation[ExposureQuery, list[MarketExposure]] = Operation(
    "operator.exposure", Route.TRADING, ExposureQuery, list[MarketExposure])
SET_MARKET: Operation[SetMarketCommand, MarketSettings] = Operation(
    "operator.set_market", Route.TRADING, SetMarketCommand, MarketSettings, command=True)
AUDIT: Operation[AuditQuery, list[AuditEntry]] = Operation("operator.audit", Route.TRADING, AuditQuery,
                                                            list[AuditEntry])
MARKET_SETTINGS: Operation[MarketsQuery, MarketsSettings] = Operation(
    "markets.settings", Route.TRADING, MarketsQuery, MarketsSettings)

# --- candles (requests.candles) ------------------------------------------------------------------------------
CANDLES_HISTORY: Operation[CandlesQuery, CandleHistory] = Operation(
    "candles.history", Route.CANDLES, CandlesQuery, CandleHistory)
CANDLES_COVERAGE: Operation[CoverageQuery, Coverage] = Operation(
    "candles.coverage", Route.CANDLES, CoverageQuery, Coverage)

# --- health (requests.health) --------------------------------------------------------------------------------
HEALTH: Operation[HealthQuery, HealthReport] = Operation("health.check", Route.HEALTH, HealthQuery, HealthReport)

# --- a lockstep replay (docs/bots.md, "Reproducible runs") -----------------------------------------------------
REPLAY_STEP: Operation[ReplayStepCommand, ReplayStepped] = Operation(
    "replay.step", Route.REPLAY, ReplayStepCommand, ReplayStepped, command=True)  # the poller, keyed "replay"
REPLAY_SYNC: Operation[ReplaySync, ReplaySynced] = Operation(
    "replay.sync", Route.TRADING, ReplaySync, ReplaySynced)  # the user's dbproc, keyed by the user

ALL: tuple[Operation[Any, Any], ...] = (
    USER_EXISTS, USER_CREATE, USER_CREDENTIALS, USER_PROFILE, USER_REHASH,
    OPEN, CLOSE, MODIFY, DEPOSIT, RISK_CLOSE, STOP_OUT, FINANCING, CLOSE_ALL, TRAIL, MARGIN_CALL, WATCH_ACCOUNT,
    ACCOUNT, POSITIONS, POSITION, LEDGER, ACCOUNT_EVENTS, ACCOUNT_STATE,
    ORDER_PLACE, ORDER_MODIFY, ORDER_CANCEL, ORDER_FILL, ORDER_EXPIRE, ORDERS, ORDER,
    ALERT_CREATE, ALERTS, ALERT_DELETE, ALERT_FIRE,
    KEY_CREATE, KEYS, KEY_REVOKE, KEY_LOOKUP,
    USERS, SET_DISABLED, EXPOSURE, SET_MARKET, AUDIT, MARKET_SETTINGS,
    CANDLES_HISTORY, CANDLES_COVERAGE,
    HEALTH,
    REPLAY_STEP, REPLAY_SYNC,
)
