"""The interface the TUI needs from a broker: `ApiClient` implements it over the network; the tests' `FakeBroker`
(`tests/fake_broker.py`) in memory, so tests and benchmarks can feed fixed ticks."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable
from decimal import Decimal
from typing import Any, Protocol

from msgspec import UnsetType

from cfd_client.feed import FeedEvent
from cfd_client.models import Account, FeedState, LedgerEntry, Order, Position, Side
from shared.contracts.rest import (
    AuthSession,
    Candle,
    InfoResponse,
    OrderStatus,
    OrderType,
    Price,
    SignupAccepted,
    User,
)
from shared.markets import Market


class Feed(Protocol):
    """A live subscription to the feed (see `FeedClient`)."""

    state: FeedState
    channels: list[str]

    async def start(self) -> None: ...

    async def stop(self) -> None: ...

    async def subscribe(self, channels: Iterable[str]) -> None: ...

    async def unsubscribe(self, channels: Iterable[str]) -> None: ...

    async def authenticate(self, token: str | None) -> None: ...

    def events(self) -> AsyncIterator[FeedEvent]: ...


class BrokerApi(Protocol):
    """Every REST endpoint, plus a way to open the feed (see `ApiClient` for what each does)."""

    base_url: str
    token: str | None

    async def aclose(self) -> None: ...

    async def signup(self, email: str) -> SignupAccepted: ...

    async def verify(self, email: str, otp: str, password: str, name: str) -> AuthSession: ...

    async def signin(self, email: str, password: str) -> AuthSession: ...

    async def logout(self) -> None: ...

    async def me(self) -> User: ...

    async def info(self) -> InfoResponse: ...

    async def markets(self) -> list[Market]: ...

    async def prices(self) -> list[Price]: ...

    async def price(self, symbol: str) -> Price: ...

    async def candles(self, symbol: str, interval: str = "1m", limit: int = 200) -> list[Candle]: ...

    async def account(self) -> Account: ...

    async def open_position(self, symbol: str, side: Side, qty: Decimal, leverage: int, *,
                            stop_loss: Decimal | None = None, take_profit: Decimal | None = None,
                            trailing_distance: Decimal | None = None, expected_price: Decimal | None = None,
                            max_deviation: Decimal | None = None, idempotency_key: str | None = None) -> Position: ...

    async def positions(self, status: str | None = "open", limit: int = 200) -> list[Position]: ...

    async def position(self, position_id: str) -> Position: ...

    async def modify_position(self, position_id: str, *, stop_loss: Decimal | UnsetType | None = ...,
                              take_profit: Decimal | UnsetType | None = ...,
                              trailing_distance: Decimal | UnsetType | None = ...) -> Position: ...

    async def close_position(self, position_id: str, qty: Decimal | None = None, *,
                             idempotency_key: str | None = None) -> Position: ...

    async def close_all(self, symbol: str | None = None, *, idempotency_key: str | None = None) -> list[Position]: ...

    async def place_order(self, symbol: str, side: Side, order_type: OrderType, qty: Decimal, price: Decimal,
                          leverage: int, *, stop_loss: Decimal | None = None, take_profit: Decimal | None = None,
                          trailing_distance: Decimal | None = None, expires_at: int | None = None,
                          idempotency_key: str | None = None) -> Order: ...

    async def orders(self, status: OrderStatus | None = "working", limit: int = 200) -> list[Order]: ...

    def all_orders(self, status: OrderStatus | None = None, page_size: int = 200) -> AsyncIterator[Order]: ...

    async def order(self, order_id: str) -> Order: ...

    async def modify_order(self, order_id: str, *, price: Decimal | UnsetType = ...,
                           qty: Decimal | UnsetType = ..., stop_loss: Decimal | UnsetType | None = ...,
                           take_profit: Decimal | UnsetType | None = ...,
                           trailing_distance: Decimal | UnsetType | None = ...,
                           expires_at: int | UnsetType | None = ...) -> Order: ...

    async def cancel_order(self, order_id: str) -> Order: ...

    async def ledger(self, limit: int = 200) -> list[LedgerEntry]: ...

    async def feed(self, channels: list[str] | tuple[str, ...] = ("prices.*",), **options: Any) -> Feed: ...
