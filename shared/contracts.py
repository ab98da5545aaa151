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


# --- bus envelopes ---------------------------------------------------------------------------------------


class ErrorBody(Struct, kw_only=True):
    status: int
    code: str
    message: str
    details: Any = None


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


class RequestType:
    """The `type` of each request the dbproc answers."""

    USER_EXISTS = "user.exists"
    USER_CREATE = "user.create"
    USER_CREDENTIALS = "user.credentials"
    USER_PROFILE = "user.profile"
    HEALTH = "health.check"


class HealthReport(Struct, kw_only=True):
    database: str
    instance_id: str
