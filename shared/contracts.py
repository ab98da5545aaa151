"""Wire contracts: the msgspec Structs that travel over HTTP, the bus and the WebSocket.

Money, prices and quantities are `Decimal` (a decimal string on the wire); times are epoch milliseconds
unless a field name says otherwise.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Annotated, Any, Literal

import msgspec
from msgspec import Meta, Raw, Struct

Email = Annotated[str, Meta(min_length=3, max_length=254)]
Password = Annotated[str, Meta(max_length=1024)]
Name = Annotated[str, Meta(max_length=200)]
Otp = Annotated[str, Meta(max_length=64)]


# --- users and auth --------------------------------------------------------------------------------------


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


# --- bus requests to the dbproc ---------------------------------------------------------------------------


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


# --- bus envelopes ---------------------------------------------------------------------------------------


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


class BusReply(Struct, kw_only=True):
    correlation_id: str
    reply_to: str
    body: Raw = Raw(b"null")
    error: ErrorBody | None = None


# --- prices ----------------------------------------------------------------------------------------------


class PriceTick(Struct, kw_only=True, array_like=True):
    """One exchange top-of-book update, as the poller publishes it (times in microseconds)."""

    symbol: str
    bid: Decimal
    ask: Decimal
    exchange_time_us: int
    ingest_time_us: int


class Quote(Struct, kw_only=True):
    """A broker quote: the exchange bid/ask widened by the market's markup."""

    symbol: str
    bid: Decimal
    ask: Decimal
    mid: Decimal
    ts: int


def encode(value: Any) -> bytes:
    """JSON-encode any contract (Decimals become strings)."""
    return _encoder.encode(value)


_encoder = msgspec.json.Encoder(decimal_format="string")


# --- markets, prices and candles -------------------------------------------------------------------------


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


class CandlesQuery(Struct, kw_only=True):
    """Bus request `candles.history`: the last `limit` candles of `interval` for `symbol`."""

    symbol: str
    interval: str
    limit: int


class CandleHistory(Struct, kw_only=True):
    """The dbproc's answer to `candles.history`, oldest first."""

    candles: list[Candle]


# --- the WebSocket feed: client operations ----------------------------------------------------------------

WsId = Annotated[int, Meta(ge=-(2**53), le=2**53)] | Annotated[str, Meta(max_length=64)] | None


class SubscribeOp(Struct, tag_field="op", tag="subscribe", forbid_unknown_fields=True):
    channels: list[str]


class UnsubscribeOp(Struct, tag_field="op", tag="unsubscribe", forbid_unknown_fields=True):
    channels: list[str]


class AuthOp(Struct, tag_field="op", tag="auth", forbid_unknown_fields=True):
    token: str


class PingOp(Struct, tag_field="op", tag="ping", forbid_unknown_fields=True):
    id: WsId = None


WsOp = SubscribeOp | UnsubscribeOp | AuthOp | PingOp


# --- the WebSocket feed: server frames --------------------------------------------------------------------


class WelcomeFrame(Struct, tag_field="type", tag="welcome", kw_only=True):
    """The first frame on every connection: what this server is and the limits it enforces."""

    version: str
    server_time: int
    max_frame_bytes: int
    max_subscriptions: int


class SubscribedFrame(Struct, tag_field="type", tag="subscribed", kw_only=True):
    channels: list[str]


class UnsubscribedFrame(Struct, tag_field="type", tag="unsubscribed", kw_only=True):
    channels: list[str]


class AuthenticatedFrame(Struct, tag_field="type", tag="authenticated", kw_only=True):
    user_id: str


class PriceFrame(Quote, tag_field="type", tag="price", kw_only=True):
    """A broker quote on the `prices.<SYMBOL>` channels."""


class CandleFrame(Struct, tag_field="type", tag="candle", kw_only=True):
    """A live candle: sent as it changes (`closed` false), and once more when its bucket ends."""

    symbol: str
    interval: str
    t: int
    o: Decimal
    h: Decimal
    l: Decimal  # noqa: E741 - the wire name every charting client expects
    c: Decimal
    n: int
    closed: bool


class PongFrame(Struct, tag_field="type", tag="pong", kw_only=True):
    id: WsId = None
    server_time: int


class ErrorFrame(Struct, tag_field="type", tag="error", kw_only=True):
    code: str
    message: str


# --- candle history: the poller hands the dbproc stored-price history (see docs/prices.md) -----------------

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
