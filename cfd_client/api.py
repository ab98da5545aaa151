"""`ApiClient`: the REST API of CFD Broker as typed async methods (httpx), for the TUI, scripts and bots.

    async with ApiClient("http://127.0.0.1:8000") as api:
        await api.signin("ada@example.com", "correct horse battery")
        for price in await api.prices():
            print(price.symbol, price.bid, price.ask)
        feed = await api.feed(["prices.*", "account"])

Answers decode into msgspec Structs (Decimal for money); error answers raise `ApiError` subclasses and
network failures `ConnectionLost` (see `cfd_client.errors`).
"""

from __future__ import annotations

import asyncio
import re
import time
import uuid
from collections.abc import AsyncIterator, Callable, Sequence
from decimal import Decimal
from typing import Any, Literal, TypeVar
from urllib.parse import parse_qs, urlsplit

import httpx
import msgspec
from msgspec import UNSET, UnsetType

from cfd_client.errors import ConnectionLost, UnexpectedResponse, error_from_response
from cfd_client.feed import FeedClient
from cfd_client.models import (
    Account,
    AccountFrame,
    AlertFrame,
    LedgerEntry,
    OrderFrame,
    Position,
    PositionClose,
    PositionCreate,
    PositionFrame,
    PositionUpdate,
    Side,
)
from shared.contracts.rest import (
    Alert,
    AlertCreate,
    ApiKey,
    ApiKeyCreate,
    ApiKeyCreated,
    AuthSession,
    Candle,
    ChangePasswordRequest,
    CloseAll,
    ClosedAll,
    Done,
    ForgotPasswordRequest,
    InfoResponse,
    MeResponse,
    Order,
    OrderCreate,
    OrderStatus,
    OrderType,
    OrderUpdate,
    Price,
    ReplayStep,
    ReplayStepRequest,
    ResetPasswordRequest,
    Scope,
    SigninRequest,
    SignupAccepted,
    SignupRequest,
    User,
    VerifyRequest,
)
from shared.markets import Market

T = TypeVar("T")
AccountEvent = PositionFrame | OrderFrame | AlertFrame | AccountFrame
"""An account event as `GET /account/events` and the `account` channel give it."""

API_PREFIX = "/api/v1"
DEFAULT_TIMEOUT = 10.0

_encoder = msgspec.json.Encoder(decimal_format="string")


def api_root(url: str) -> str:
    """`http://host:8000`, `http://host:8000/` or `http://host:8000/api/v1` → `http://host:8000/api/v1`."""
    url = url.strip().rstrip("/")
    if "://" not in url:
        url = "http://" + url
    return url if url.endswith(API_PREFIX) else url + API_PREFIX


class RatePacer:
    """Paces requests by the server's `RateLimit` headers: once a class has nothing left to send at once (`r=0`),
    the next request of that class waits the `t` seconds until it has, instead of being refused; a 429 is
    waited out (its `Retry-After`, up to `max_wait` seconds) and sent once more."""

    _ITEM = re.compile(r'"(?P<name>[^"]+)";r=(?P<r>\d+);t=(?P<t>\d+)')

    def __init__(self, max_wait: float = 30.0, clock: Callable[[], float] = time.monotonic) -> None:
        self.max_wait = max_wait
        self.clock = clock
        self._empty_until: dict[str, float] = {}  # class → when its window resets, once nothing is left

    @staticmethod
    def kind(method: str, path: str = "") -> str:
        """The server's rate-limit class of a request: a lockstep replay's steps have their own."""
        if path.rstrip("/").endswith("/replay/step"):
            return "replay"
        return "reads" if method in ("GET", "HEAD") else "trading"

    def wait_before(self, method: str, path: str = "") -> float:
        until = self._empty_until.get(self.kind(method, path), 0.0)
        return max(0.0, min(until - self.clock(), self.max_wait))

    def saw(self, response: httpx.Response) -> None:
        match = self._ITEM.match(response.headers.get("ratelimit", ""))
        if match is None:
            return
        if int(match["r"]) == 0:
            self._empty_until[match["name"]] = self.clock() + int(match["t"])
        else:
            self._empty_until.pop(match["name"], None)

    def retry_after(self, response: httpx.Response) -> float | None:
        """Seconds to wait before sending a refused (429) request again; None when it is not worth waiting."""
        if response.status_code != 429:
            return None
        try:
            wait = float(response.headers.get("retry-after", ""))
        except ValueError:
            return None
        return wait if 0 <= wait <= self.max_wait else None


class ApiClient:
    """Typed access to every REST endpoint. Holds the bearer token once signed in (`token`), or an API key.

    With `pace=True` (the default) it keeps to the server's rate limits (see `RatePacer`)."""

    def __init__(self, base_url: str, *, token: str | None = None, timeout: float = DEFAULT_TIMEOUT,
                 transport: httpx.AsyncBaseTransport | None = None, pace: bool = True) -> None:
        self.base_url = api_root(base_url)
        self.token = token
        self.pacer = RatePacer() if pace else None
        self._http = httpx.AsyncClient(base_url=self.base_url, timeout=timeout, transport=transport,
                                       headers={"Accept": "application/json"})

    async def __aenter__(self) -> ApiClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close the connection pool."""
        await self._http.aclose()

    # --- plumbing -----------------------------------------------------------------------------------------

    async def request(self, method: str, path: str, *, body: Any = None, params: dict[str, Any] | None = None,
                      headers: dict[str, str] | None = None, auth: bool = True) -> httpx.Response:
        """Send one request; raise `ApiError` for an error status, `ConnectionLost` if there is no answer."""
        all_headers = dict(headers or {})
        if auth and self.token:
            all_headers["Authorization"] = f"Bearer {self.token}"
        content = None
        if body is not None:
            content = _encoder.encode(body)
            all_headers["Content-Type"] = "application/json"
        for attempt in (1, 2):
            if self.pacer is not None and (wait := self.pacer.wait_before(method, path)) > 0:
                await asyncio.sleep(wait)
            try:
                response = await self._http.request(method, path, content=content, params=params,
                                                    headers=all_headers)
            except httpx.TimeoutException as exc:
                raise ConnectionLost(f"The server did not answer in time ({method} {path}).", cause=exc) from exc
            except httpx.TransportError as exc:
                raise ConnectionLost(f"Cannot reach the server at {self.base_url}: {exc or type(exc).__name__}.",
                                     cause=exc) from exc
            if self.pacer is None:
                break
            self.pacer.saw(response)
            retry = self.pacer.retry_after(response) if attempt == 1 else None
            if retry is None:
                break
            await asyncio.sleep(retry)  # a refused request did nothing: sending it again is safe
        if response.status_code >= 400:
            raise error_from_response(response)
        return response

    async def _get(self, path: str, kind: type[T], params: dict[str, Any] | None = None) -> T:
        return _decode(await self.request("GET", path, params=params), kind)

    async def _walk(self, path: str, kind: type[list[T]], params: dict[str, Any]) -> AsyncIterator[T]:
        """Every row of a paged list, page by page, following the server's `Link: <...>; rel="next"`."""
        while True:
            response = await self.request("GET", path, params=params)
            for row in _decode(response, kind):
                yield row
            cursor = parse_qs(urlsplit(response.links.get("next", {}).get("url", "")).query).get("cursor")
            if not cursor:
                return
            params = {**params, "cursor": cursor[0]}

    # --- auth ---------------------------------------------------------------------------------------------

    async def signup(self, email: str) -> SignupAccepted:
        """Ask for a one-time code by mail (202; the same answer whether or not the email is registered)."""
        response = await self.request("POST", "/auth/signup", body=SignupRequest(email=email), auth=False)
        return _decode(response, SignupAccepted)

    async def verify(self, email: str, otp: str, password: str, name: str) -> AuthSession:
        """Create the account with the mailed code; signs this client in."""
        response = await self.request("POST", "/auth/verify", auth=False,
                                      body=VerifyRequest(email=email, otp=otp, password=password, name=name))
        session = _decode(response, AuthSession)
        self.token = session.access_token
        return session

    async def signin(self, email: str, password: str) -> AuthSession:
        """Sign in with email and password; signs this client in."""
        response = await self.request("POST", "/auth/signin", body=SigninRequest(email=email, password=password),
                                      auth=False)
        session = _decode(response, AuthSession)
        self.token = session.access_token
        return session

    async def logout(self) -> None:
        """Revoke the session on the server and forget the token (forgotten even if the server is away)."""
        try:
            if self.token:
                await self.request("POST", "/auth/logout")
        finally:
            self.token = None

    async def me(self) -> User:
        """The signed-in user (raises `NotSignedIn` when the token is missing, expired or revoked)."""
        return (await self._get("/auth/me", MeResponse)).user

    async def logout_all(self) -> None:
        """End every session of the account, this one included, and forget the token (API keys stay valid)."""
        await self.request("POST", "/auth/logout-all")
        self.token = None

    async def change_password(self, current_password: str, new_password: str) -> Done:
        """Change the password; every other session of the account ends, this one stays signed in."""
        body = ChangePasswordRequest(current_password=current_password, new_password=new_password)
        return _decode(await self.request("POST", "/auth/password/change", body=body), Done)

    async def forgot_password(self, email: str) -> SignupAccepted:
        """Ask for a password reset code by mail (202; the same answer whether or not the email is registered)."""
        response = await self.request("POST", "/auth/password/forgot", body=ForgotPasswordRequest(email=email),
                                      auth=False)
        return _decode(response, SignupAccepted)

    async def reset_password(self, email: str, otp: str, password: str) -> Done:
        """Set a new password with the mailed code; every session of the account ends (sign in again)."""
        body = ResetPasswordRequest(email=email, otp=otp, password=password)
        return _decode(await self.request("POST", "/auth/password/reset", body=body, auth=False), Done)

    # --- API keys -----------------------------------------------------------------------------------------

    async def api_keys(self) -> list[ApiKey]:
        """The live API keys of the signed-in trader (never their secrets)."""
        return await self._get("/api-keys", list[ApiKey])

    async def create_api_key(self, name: str, scopes: Sequence[Scope] = ("read", "trade")) -> ApiKeyCreated:
        """A new API key, `["read"]` or `["read", "trade"]`, of the signed-in person (not an API key); its `key`
        (the secret) is in this answer only."""
        body = ApiKeyCreate(name=name, scopes=list(scopes))
        return _decode(await self.request("POST", "/api-keys", body=body), ApiKeyCreated)

    async def revoke_api_key(self, key_id: str) -> None:
        """Revoke an API key, at once (revoking it again is no error)."""
        await self.request("DELETE", f"/api-keys/{key_id}")

    # --- markets ------------------------------------------------------------------------------------------

    async def info(self) -> InfoResponse:
        """The server's version, clock and WebSocket URL."""
        return await self._get("/info", InfoResponse)

    async def markets(self) -> list[Market]:
        """The tradable markets and their contract terms."""
        return await self._get("/markets", list[Market])

    async def prices(self) -> list[Price]:
        """The latest broker quote of every market that has one."""
        return await self._get("/prices", list[Price])

    async def price(self, symbol: str) -> Price:
        """The latest broker quote of one market (`ServiceUnavailable` while it is stale)."""
        return await self._get(f"/prices/{symbol}", Price)

    async def candles(self, symbol: str, interval: str = "1m", limit: int = 200, *,
                      since: int | None = None) -> list[Candle]:
        """Candles on the broker mid, oldest first: the latest `limit` (the last is the bucket in progress), or
        with `since` (epoch ms) the first `limit` that start at or after it."""
        params: dict[str, Any] = {"interval": interval, "limit": limit}
        if since is not None:
            params["since"] = since
        return await self._get(f"/candles/{symbol}", list[Candle], params)

    # --- trading ------------------------------------------------------------------------------------------

    async def account(self) -> Account:
        """Balance, equity and margin of the signed-in trader."""
        return await self._get("/account", Account)

    async def open_position(self, symbol: str, side: Side, qty: Decimal, leverage: int, *,
                            stop_loss: Decimal | None = None, take_profit: Decimal | None = None,
                            trailing_distance: Decimal | None = None, expected_price: Decimal | None = None,
                            max_deviation: Decimal | None = None, idempotency_key: str | None = None) -> Position:
        """Open a position at the current broker quote. With `expected_price` and `max_deviation`, a fill worse
        than that raises `Rejected` (`price_moved`). The `Idempotency-Key` (a fresh one unless given) makes a
        retried request open one position, not two."""
        body = PositionCreate(symbol=symbol, side=side, qty=qty, leverage=leverage, stop_loss=stop_loss,
                              take_profit=take_profit, trailing_distance=trailing_distance,
                              expected_price=expected_price, max_deviation=max_deviation)
        key = idempotency_key or uuid.uuid4().hex
        return _decode(await self.request("POST", "/positions", body=body, headers={"Idempotency-Key": key}),
                       Position)

    async def positions(self, status: str | None = "open", limit: int = 200) -> list[Position]:
        """The trader's newest positions (one page): `open`, `closed`, or every one (`status=None`)."""
        params: dict[str, Any] = {"limit": limit}
        if status is not None:
            params["status"] = status
        return await self._get("/positions", list[Position], params)

    def all_positions(self, status: str | None = "closed", page_size: int = 200) -> AsyncIterator[Position]:
        """Every position with `status` (every one with None), newest first, fetched a page at a time: each
        is seen once, even while new ones open or close during the walk (they are newer than the walk)."""
        params: dict[str, Any] = {"limit": page_size}
        if status is not None:
            params["status"] = status
        return self._walk("/positions", list[Position], params)

    async def position(self, position_id: str) -> Position:
        """One position by id."""
        return await self._get(f"/positions/{position_id}", Position)

    async def modify_position(self, position_id: str, *, stop_loss: Decimal | UnsetType | None = UNSET,
                              take_profit: Decimal | UnsetType | None = UNSET,
                              trailing_distance: Decimal | UnsetType | None = UNSET) -> Position:
        """Change the stops of an open position; pass None to remove one, leave a field out to keep it."""
        body = PositionUpdate(stop_loss=stop_loss, take_profit=take_profit, trailing_distance=trailing_distance)
        return _decode(await self.request("PATCH", f"/positions/{position_id}", body=body), Position)

    async def close_position(self, position_id: str, qty: Decimal | None = None, *,
                             idempotency_key: str | None = None) -> Position:
        """Close a position at the current quote, or only `qty` of it (a partial close)."""
        key = idempotency_key or uuid.uuid4().hex
        return _decode(await self.request("POST", f"/positions/{position_id}/close",
                                          body=PositionClose(qty=qty), headers={"Idempotency-Key": key}),
                       Position)

    async def close_all(self, symbol: str | None = None, *, idempotency_key: str | None = None) -> list[Position]:
        """Close every open position (of one market with `symbol`) at the current quotes; returns what closed."""
        key = idempotency_key or uuid.uuid4().hex
        answer = await self.request("POST", "/positions/close-all", body=CloseAll(symbol=symbol),
                                    headers={"Idempotency-Key": key})
        return _decode(answer, ClosedAll).closed

    # --- pending orders -----------------------------------------------------------------------------------

    async def place_order(self, symbol: str, side: Side, order_type: OrderType, qty: Decimal, price: Decimal,
                          leverage: int, *, stop_loss: Decimal | None = None, take_profit: Decimal | None = None,
                          trailing_distance: Decimal | None = None, expires_at: int | None = None,
                          idempotency_key: str | None = None) -> Order:
        """Place a limit or stop order: it opens a position when the broker's quote reaches `price` (a long on
        the ask, a short on the bid), until cancelled or `expires_at` (epoch ms)."""
        body = OrderCreate(symbol=symbol, side=side, type=order_type, qty=qty, price=price, leverage=leverage,
                           stop_loss=stop_loss, take_profit=take_profit, trailing_distance=trailing_distance,
                           expires_at=expires_at)
        key = idempotency_key or uuid.uuid4().hex
        return _decode(await self.request("POST", "/orders", body=body, headers={"Idempotency-Key": key}), Order)

    async def orders(self, status: OrderStatus | None = "working", limit: int = 200) -> list[Order]:
        """The trader's newest orders (one page): `working`, another status, or every one (`status=None`)."""
        params: dict[str, Any] = {"limit": limit}
        if status is not None:
            params["status"] = status
        return await self._get("/orders", list[Order], params)

    def all_orders(self, status: OrderStatus | None = None, page_size: int = 200) -> AsyncIterator[Order]:
        """Every order with `status` (every one with None), newest first, a page at a time."""
        params: dict[str, Any] = {"limit": page_size}
        if status is not None:
            params["status"] = status
        return self._walk("/orders", list[Order], params)

    async def order(self, order_id: str) -> Order:
        """One order by id."""
        return await self._get(f"/orders/{order_id}", Order)

    async def modify_order(self, order_id: str, *, price: Decimal | UnsetType = UNSET,
                           qty: Decimal | UnsetType = UNSET, stop_loss: Decimal | UnsetType | None = UNSET,
                           take_profit: Decimal | UnsetType | None = UNSET,
                           trailing_distance: Decimal | UnsetType | None = UNSET,
                           expires_at: int | UnsetType | None = UNSET) -> Order:
        """Change a working order; a field left out is kept, None removes a stop, the trailing or the expiry."""
        body = OrderUpdate(price=price, qty=qty, stop_loss=stop_loss, take_profit=take_profit,
                           trailing_distance=trailing_distance, expires_at=expires_at)
        return _decode(await self.request("PATCH", f"/orders/{order_id}", body=body), Order)

    async def cancel_order(self, order_id: str) -> Order:
        """Cancel a working order (`Conflict`, `order_not_working`, once it filled, expired or was cancelled)."""
        return _decode(await self.request("DELETE", f"/orders/{order_id}"), Order)

    # --- a lockstep replay ---------------------------------------------------------------------------------

    async def replay_step(self, count: int = 1, *, idempotency_key: str | None = None) -> ReplayStep:
        """Play the next `count` ticks of the platform's lockstep replay (`cfd up --replay FILE --seed N`). It
        answers once your account has felt them: an order sent now fills at `quotes`, and the stops, orders and
        alerts the ticks triggered are applied before anything you send next. `ended` says the recording is over
        (a further step raises `Conflict`, `replay_ended`); without a lockstep replay it raises `NotFound`
        (`replay_not_running`) or `Conflict` (`replay_not_lockstep`). With an `idempotency_key`, a retried step
        plays nothing more."""
        headers = {"Idempotency-Key": idempotency_key} if idempotency_key else None
        return _decode(await self.request("POST", "/replay/step", body=ReplayStepRequest(count=count),
                                          headers=headers), ReplayStep)

    async def ledger(self, limit: int = 200) -> list[LedgerEntry]:
        """The newest balance changes (deposits, realised PnL, fees), one page."""
        return await self._get("/ledger", list[LedgerEntry], {"limit": limit})

    def all_ledger(self, page_size: int = 200) -> AsyncIterator[LedgerEntry]:
        """Every balance change since the account opened, newest first, fetched a page at a time."""
        return self._walk("/ledger", list[LedgerEntry], {"limit": page_size})

    # --- alerts -------------------------------------------------------------------------------------------

    async def alerts(self, status: Literal["active", "triggered"] | None = None) -> list[Alert]:
        """The trader's alerts, newest first: `active`, `triggered`, or every one (`status=None`)."""
        return await self._get("/alerts", list[Alert], {"status": status} if status else None)

    async def create_alert(self, symbol: str, condition: Literal["above", "below"], price: Decimal, *,
                           note: str | None = None, mail: bool = False) -> Alert:
        """A price alert: fires once when the market's broker bid is at or `above` (or `below`) `price`, on the
        `account` channel, and by mail with `mail`."""
        body = AlertCreate(symbol=symbol, condition=condition, price=price, note=note,
                           notify=["ws", "mail"] if mail else ["ws"])
        return _decode(await self.request("POST", "/alerts", body=body), Alert)

    async def create_margin_alert(self, below: Decimal, *, note: str | None = None, mail: bool = False) -> Alert:
        """A margin-level alert: fires once when the account's margin level (percent) falls below `below`."""
        body = AlertCreate(kind="margin_level", below=below, note=note, notify=["ws", "mail"] if mail else ["ws"])
        return _decode(await self.request("POST", "/alerts", body=body), Alert)

    async def delete_alert(self, alert_id: str) -> None:
        """Delete an alert (active or triggered)."""
        await self.request("DELETE", f"/alerts/{alert_id}")

    async def account_events(self, since: int, limit: int = 200) -> list[AccountEvent]:
        """The account events after `since` (a `seq`; 0 for the first kept), oldest first, one page: ask again
        `since` the last one's `seq` for the next. A `ClientSideError` with code `resume_gap` (410) when they are
        no longer kept: reload the account, positions and orders, then follow from `details["latest_seq"]`."""
        return await self._get("/account/events", list[AccountEvent], {"since": since, "limit": limit})

    # --- the feed -----------------------------------------------------------------------------------------

    async def feed(self, channels: list[str] | tuple[str, ...] = ("prices.*",), **options: Any) -> FeedClient:
        """A `FeedClient` for the WebSocket URL this server advertises, authenticated with this client's
        token (if any); `start()` it, or use it as an async context manager."""
        ws_url = (await self.info()).ws_url
        return FeedClient(ws_url, channels=channels, token=self.token, **options)


def _decode(response: httpx.Response, kind: type[T]) -> T:
    try:
        return msgspec.json.decode(response.content, type=kind, strict=False)
    except msgspec.ValidationError as exc:
        raise UnexpectedResponse(f"The server's answer to {response.request.method} "
                                 f"{response.request.url.path} was not understood: {exc}.") from exc
