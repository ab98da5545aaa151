"""The WebSocket feed (`/ws`): the operations a client sends and the frames the server sends."""

from __future__ import annotations

from decimal import Decimal
from typing import Annotated

from msgspec import Meta, Struct

from shared.contracts.quote import BrokerPrice

WsId = Annotated[int, Meta(ge=-(2**53), le=2**53)] | Annotated[str, Meta(max_length=64)] | None


Seq = Annotated[int, Meta(ge=0, le=2**63 - 1)]


class SubscribeOp(Struct, tag_field="op", tag="subscribe", forbid_unknown_fields=True):
    """`since` (with `account` only): the client has the account events up to this `seq`; the ones after it are
    sent first, then the live ones."""

    channels: list[str]
    since: Seq | None = None


class UnsubscribeOp(Struct, tag_field="op", tag="unsubscribe", forbid_unknown_fields=True):
    channels: list[str]


class AuthOp(Struct, tag_field="op", tag="auth", forbid_unknown_fields=True):
    token: str


class PingOp(Struct, tag_field="op", tag="ping", forbid_unknown_fields=True):
    id: WsId = None


WsOp = SubscribeOp | UnsubscribeOp | AuthOp | PingOp


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


class PriceFrame(BrokerPrice, tag_field="type", tag="price", kw_only=True):
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
