"""`FakeBroker`: an in-memory broker with the `BrokerApi` interface, for tests, snapshots and benchmarks (a test
helper: the product never ships it).

Prices move only when told (`push_price`), times come from a settable clock (`set_time`, which also expires
pending orders), candles are generated from a seed, so a screen drawn from it is the same on every run.
`trading=False` answers the trading endpoints with 404, like a server that does not have them yet.

The account's other endpoints are kept too: API keys (the secret shown once), alerts (a price alert fires on
the first pushed bid that reaches it, a margin-level alert on the first mark under its level, each once, with
its `alert` frame), and the password's change, reset (with `otp`) and signing out everywhere.

It quotes and trades with the platform's own maths, so a test sees the prices and figures the platform
would give: a pushed price is the exchange's, quoted with the broker's markup (`shared.markets.broker_quote`);
orders, closes, stops, margin, PnL, commissions, the ledger's bookings and the account come from
`shared.trading` and `shared.costs`, in the order the dbproc's trading engine applies them (no rollover passes
in it, so nothing pays financing). On each pushed price, as the risk engine does: trailing stop-losses
ratchet, stops close (a trailing one as `trailing_stop`), then pending orders trigger (a fill opens the
position at that quote, or the order is rejected with the reason). What it keeps of its own is storage and
the events.
"""

from __future__ import annotations

import asyncio
import random
import uuid
from collections.abc import AsyncIterator, Iterable
from decimal import Decimal
from typing import Any, NoReturn

import msgspec
from msgspec import UNSET, UnsetType

from cfd_client.errors import BadInput, ClientError, Conflict, NotFound, NotSignedIn, Rejected
from cfd_client.feed import ACCOUNT_CHANNEL, FEED_BUFFER, FeedEvent
from cfd_client.models import (
    Account,
    AccountFrame,
    Alert,
    AlertFrame,
    FeedState,
    LedgerEntry,
    Order,
    OrderFrame,
    Position,
    PositionFrame,
    Side,
    StateChanged,
    is_open,
)
from cfd_dbproc.risk.book import RiskBook
from cfd_dbproc.trading.risk_runner import open_position
from cfd_poller.simulation import SIMULATION
from shared.candles import INTERVALS, bucket_start
from shared.contracts.quote import Quote
from shared.contracts.rest import (
    ApiKey,
    ApiKeyCreated,
    AuthSession,
    Candle,
    Done,
    InfoResponse,
    OrderStatus,
    OrderType,
    Price,
    Scope,
    SignupAccepted,
    User,
)
from shared.contracts.ws import CandleFrame, PriceFrame
from shared.costs import carried, check_affordable, commission
from shared.errors import CfdError
from shared.markets import MARKETS, Market, broker_quote
from shared.trading import (
    account_state,
    check_close,
    check_order,
    check_order_price,
    check_slippage,
    check_stops,
    check_trailing,
    close_price,
    closing,
    fill_receipt,
    margin,
    money,
    open_price,
    order_triggered,
    plain,
    stop_trigger,
    trailed_stop,
)

FIXED_NOW_MS = 1_767_225_600_000  # 2026-01-01 00:00:00 UTC
FAKE_OTP = "123456"
MAX_WORKING_ORDERS = 100  # as the platform's dbproc


def default_quotes() -> dict[str, tuple[Decimal, Decimal]]:
    """An exchange bid/ask per market near the simulator's prices (the broker quote is wider)."""
    return {s: (SIMULATION[s].price - m.price_tick * 5, SIMULATION[s].price + m.price_tick * 5)
            for s, m in MARKETS.items()}


class FakeFeed:
    """The `Feed` of a `FakeBroker`: events are whatever the broker pushes."""

    def __init__(self, broker: FakeBroker, channels: Iterable[str], token: str | None) -> None:
        self.broker = broker
        self.channels = list(dict.fromkeys(channels))
        self.token = token
        self.state = FeedState.CLOSED
        self._queue: asyncio.Queue[FeedEvent | None] = asyncio.Queue(maxsize=FEED_BUFFER)

    async def start(self) -> None:
        self.broker.feeds.append(self)
        self.emit(StateChanged(state=FeedState.CONNECTING))
        self.set_state(self.broker.feed_state)
        for symbol, quote in self.broker.quotes.items():
            if self.wants_price(symbol):
                self.emit(_price_frame(quote))
        self._watch_account()

    def _watch_account(self) -> None:
        """On `account`, the first mark of the account comes without waiting for a price, as on the platform."""
        user = self.broker.sessions.get(self.token or "")
        if (self.broker.trading and ACCOUNT_CHANNEL in self.channels and user is not None
                and user.id in self.broker.balances):
            self.emit(self.broker.mark_frame(user.id))

    async def stop(self) -> None:
        if self in self.broker.feeds:
            self.broker.feeds.remove(self)
        self.set_state(FeedState.CLOSED)
        self.emit(None)  # the end of the events

    async def subscribe(self, channels: Iterable[str]) -> None:
        new = [c for c in channels if c not in self.channels]
        self.channels.extend(new)
        for channel in new:
            if channel.startswith("candles."):
                _, interval, symbol = channel.split(".")
                history = self.broker.candle_series(symbol, interval)
                if history:
                    self.emit(_candle_frame(symbol, interval, history[-1]))
        if ACCOUNT_CHANNEL in new:
            self._watch_account()

    async def unsubscribe(self, channels: Iterable[str]) -> None:
        self.channels = [c for c in self.channels if c not in set(channels)]

    async def authenticate(self, token: str | None) -> None:
        self.token = token
        self._watch_account()

    async def events(self) -> AsyncIterator[FeedEvent]:
        while True:
            event = await self._queue.get()
            if event is None:
                return
            yield event

    def wants_price(self, symbol: str) -> bool:
        return "prices.*" in self.channels or f"prices.{symbol}" in self.channels

    def set_state(self, state: FeedState, detail: str = "") -> None:
        if state is not self.state:
            self.state = state
            self.emit(StateChanged(state=state, detail=detail))

    def emit(self, event: FeedEvent | None) -> None:
        if self._queue.full():  # as `FeedClient`: a reader that fell behind loses the oldest events, not memory
            self._queue.get_nowait()
        self._queue.put_nowait(event)


class FakeBroker:
    """In-memory stand-in for `ApiClient` (see the module docstring)."""

    def __init__(self, *, quotes: dict[str, tuple[Decimal, Decimal]] | None = None, now_ms: int = FIXED_NOW_MS,
                 trading: bool = True, deposit: Decimal = Decimal(10_000), seed: int = 7,
                 otp: str = FAKE_OTP) -> None:
        self.base_url = "http://fake.invalid/api/v1"
        self.token: str | None = None
        self.now_ms = now_ms
        self.trading = trading
        self.deposit = deposit
        self.seed = seed
        self.otp = otp
        self.exchange: dict[str, tuple[Decimal, Decimal]] = {}  # the exchange's last bid/ask per market
        self.quotes: dict[str, Quote] = {}  # the broker's quote per market: what trades and what is shown
        for symbol, (bid, ask) in (quotes or default_quotes()).items():
            self._quote(symbol, Decimal(bid), Decimal(ask), now_ms)
        self.users: dict[str, tuple[User, str]] = {}  # email -> (user, password)
        self.sessions: dict[str, User] = {}  # token -> user
        self.balances: dict[str, Decimal] = {}
        self.positions_by_id: dict[str, tuple[str, Position]] = {}  # id -> (user id, position)
        self.orders_by_id: dict[str, tuple[str, Order]] = {}  # id -> (user id, order)
        self.ledgers: dict[str, list[LedgerEntry]] = {}
        self.unbooked: dict[str, Decimal] = {}  # position id -> PnL that rounding to cents has not booked yet
        self.unbooked_fees: dict[str, Decimal] = {}  # position id -> commission rounding has not booked yet
        self.api_keys_by_id: dict[str, tuple[str, ApiKey]] = {}  # id -> (user id, key as listed)
        self.alerts_by_id: dict[str, tuple[str, Alert]] = {}  # id -> (user id, alert)
        self.feeds: list[FakeFeed] = []
        self.feed_state = FeedState.LIVE
        self.signups: list[str] = []
        self.requests: list[str] = []  # the name of every call, in order (tests check that nothing was sent)
        self.failures: dict[str, ClientError] = {}  # call name -> the error its next call raises
        self._candles: dict[tuple[str, str], list[Candle]] = {}
        self._ids = 0

    # --- test controls ------------------------------------------------------------------------------------

    def add_user(self, email: str, password: str = "correct horse battery", name: str = "Ada Trader") -> User:
        """Register a user directly (with the demo deposit)."""
        self._ids += 1
        user = User(id=f"00000000-0000-4000-8000-{self._ids:012d}", email=email, name=name,
                    created_at=self.now_ms)
        self.users[email] = (user, password)
        self.balances[user.id] = self.deposit
        self.ledgers[user.id] = [LedgerEntry(id=self._next_id(), kind="deposit", amount=self.deposit,
                                             balance_after=self.deposit, reference="demo", created_at=self.now_ms)]
        return user

    def sign_in_as(self, email: str) -> str:
        """A token for a registered user, as if they had signed in."""
        token = f"token-{len(self.sessions) + 1}"
        self.sessions[token] = self.users[email][0]
        self.token = token
        return token

    def push_price(self, symbol: str, bid: Decimal | str, ask: Decimal | str, ts: int | None = None) -> None:
        """A new exchange bid/ask: its broker quote goes to every feed on its channel, then, as the risk engine
        does, trailing stop-losses ratchet, stops are checked and pending orders trigger."""
        quote = self._quote(symbol, Decimal(bid), Decimal(ask), self.now_ms if ts is None else ts)
        for feed in list(self.feeds):
            if feed.wants_price(symbol):
                feed.emit(_price_frame(quote))
        self._trail(quote)
        self._check_stops(quote)
        self._check_orders(quote)
        self._check_alerts(quote)
        for user_id in {uid for uid, p in self.positions_by_id.values() if is_open(p) and p.symbol == symbol}:
            self._emit_mark(user_id)

    def set_time(self, now_ms: int) -> None:
        """Move the clock; working orders whose `expires_at` has come expire, as the platform's within a second."""
        self.now_ms = now_ms
        for user_id, order in list(self.orders_by_id.values()):
            if order.status == "working" and order.expires_at is not None and order.expires_at <= now_ms:
                self._set_order(user_id, order, "expired", status="expired")

    def push_candle(self, symbol: str, interval: str, candle: Candle, closed: bool = False) -> None:
        """A live candle frame to every feed on `candles.<interval>.<symbol>`."""
        for feed in list(self.feeds):
            if f"candles.{interval}.{symbol}" in feed.channels:
                feed.emit(_candle_frame(symbol, interval, candle, closed))

    def fail_next(self, call: str, error: ClientError) -> None:
        """Make the next call of `call` (e.g. "signup", "open_position") raise `error`."""
        self.failures[call] = error

    def set_feed_state(self, state: FeedState, detail: str = "") -> None:
        """Make every feed report `state` (e.g. RECONNECTING) as a real one would."""
        self.feed_state = state
        for feed in list(self.feeds):
            feed.set_state(state, detail)

    # --- auth ---------------------------------------------------------------------------------------------

    async def aclose(self) -> None:
        for feed in list(self.feeds):
            await feed.stop()

    async def signup(self, email: str) -> SignupAccepted:
        self._call("signup")
        self.signups.append(email)
        return SignupAccepted(message="If the address can receive mail, a 6-digit code is on its way.")

    async def verify(self, email: str, otp: str, password: str, name: str) -> AuthSession:
        self._call("verify")
        if otp != self.otp:
            raise BadInput(400, "invalid_code", "That code is not right; check the mail and try again.",
                           {"field": "otp"})
        if email not in self.users:
            self.add_user(email, password, name)
        return self._session(email)

    async def signin(self, email: str, password: str) -> AuthSession:
        self._call("signin")
        entry = self.users.get(email.strip().lower())
        if entry is None or entry[1] != password:
            raise NotSignedIn(401, "invalid_credentials", "The email or the password is wrong.")
        return self._session(entry[0].email)

    async def logout(self) -> None:
        self._call("logout")
        if self.token:
            self.sessions.pop(self.token, None)
        self.token = None

    async def me(self) -> User:
        self._call("me")
        return self._user_or_401()

    async def logout_all(self) -> None:
        self._call("logout_all")
        user = self._user_or_401()
        for token in [t for t, u in self.sessions.items() if u.id == user.id]:
            del self.sessions[token]
        self.token = None

    async def change_password(self, current_password: str, new_password: str) -> Done:
        self._call("change_password")
        user = self._user_or_401()
        if self.users[user.email][1] != current_password:
            raise BadInput(400, "wrong_password", "The current password is wrong.", {"field": "current_password"})
        if new_password == current_password:
            raise BadInput(400, "weak_password", "The new password is the current one; choose another.",
                           {"field": "new_password"})
        self.users[user.email] = (user, new_password)
        for token in [t for t, u in self.sessions.items() if u.id == user.id and t != self.token]:
            del self.sessions[token]
        return Done(message="The password is changed; every other session of this account ended.")

    async def forgot_password(self, email: str) -> SignupAccepted:
        self._call("forgot_password")
        self.signups.append(email)
        return SignupAccepted(message="If an account has this address, a 6-digit code to reset its password is on "
                              "its way. It is valid for 10 minutes.")

    async def reset_password(self, email: str, otp: str, password: str) -> Done:
        self._call("reset_password")
        entry = self.users.get(email)
        if otp != self.otp or entry is None:
            raise BadInput(400, "invalid_code", "That code is wrong, expired or was never sent; check it, or ask "
                           "for a new one.", {"field": "otp"})
        self.users[email] = (entry[0], password)
        for token in [t for t, u in self.sessions.items() if u.id == entry[0].id]:
            del self.sessions[token]
        return Done(message="The password is changed and every session ended; sign in with the new password.")

    # --- API keys -----------------------------------------------------------------------------------------

    async def api_keys(self) -> list[ApiKey]:
        self._call("api_keys")
        user = self._user_or_401()
        return sorted((k for uid, k in self.api_keys_by_id.values() if uid == user.id),
                      key=lambda k: (k.created_at, k.id), reverse=True)

    async def create_api_key(self, name: str, scopes: list[Scope]) -> ApiKeyCreated:
        self._call("create_api_key")
        user = self._user_or_401()
        self._ids += 1
        key_id = f"{self._ids:016x}"
        key = ApiKey(id=key_id, name=name, scopes=list(scopes), created_at=self.now_ms)
        self.api_keys_by_id[key_id] = (user.id, key)
        secret = uuid.uuid5(uuid.NAMESPACE_URL, f"fake-broker/key/{self.seed}/{key_id}").hex
        return ApiKeyCreated(id=key_id, name=name, scopes=list(scopes), created_at=self.now_ms,
                             key=f"cfdk_{key_id}_{secret}{secret[:11]}")

    async def revoke_api_key(self, key_id: str) -> None:
        self._call("revoke_api_key")
        user = self._user_or_401()
        entry = self.api_keys_by_id.get(key_id)
        if entry is not None and entry[0] != user.id:
            raise NotFound(404, "key_not_found", "No such API key.")
        self.api_keys_by_id.pop(key_id, None)

    # --- alerts -------------------------------------------------------------------------------------------

    async def alerts(self, status: str | None = None) -> list[Alert]:
        self._call("alerts")
        user = self._user_or_401()
        return sorted((a for uid, a in self.alerts_by_id.values() if uid == user.id and status in (None, a.status)),
                      key=lambda a: (a.created_at, a.id), reverse=True)

    async def create_alert(self, symbol: str, condition: str, price: Decimal, *, note: str | None = None,
                           mail: bool = False) -> Alert:
        self._call("create_alert")
        user = self._user_or_401()
        market = MARKETS.get(symbol) or self._unknown_market(symbol)
        if price <= 0 or price % market.price_tick:
            raise Rejected(422, "invalid_alert", f"A price alert needs a positive price, a multiple of "
                           f"{market.price_tick}.", {"field": "price"})
        return self._add_alert(user.id, Alert(id=self._next_id(), kind="price", symbol=symbol,
                                              condition="above" if condition == "above" else "below",
                                              price=plain(price), note=note, notify=["ws", "mail"] if mail else ["ws"],
                                              status="active", created_at=self.now_ms))

    async def create_margin_alert(self, below: Decimal, *, note: str | None = None, mail: bool = False) -> Alert:
        self._call("create_alert")
        user = self._user_or_401()
        return self._add_alert(user.id, Alert(id=self._next_id(), kind="margin_level", below=plain(below), note=note,
                                              notify=["ws", "mail"] if mail else ["ws"], status="active",
                                              created_at=self.now_ms))

    async def delete_alert(self, alert_id: str) -> None:
        self._call("delete_alert")
        user = self._user_or_401()
        entry = self.alerts_by_id.get(alert_id)
        if entry is None or entry[0] != user.id:
            raise NotFound(404, "alert_not_found", "No such alert.")
        del self.alerts_by_id[alert_id]
        self._emit(AlertFrame(event="deleted", alert=entry[1]))

    def _add_alert(self, user_id: str, alert: Alert) -> Alert:
        self.alerts_by_id[alert.id] = (user_id, alert)
        self._emit(AlertFrame(event="created", alert=alert))
        return alert

    def _fire(self, user_id: str, alert: Alert, value: Decimal) -> None:
        fired = msgspec.structs.replace(alert, status="triggered", triggered_at=self.now_ms, triggered_value=value)
        self.alerts_by_id[alert.id] = (user_id, fired)
        self._emit(AlertFrame(event="triggered", alert=fired, price=value))

    def _check_alerts(self, quote: Quote) -> None:
        """The active price alerts of the market this quote reaches fire, each once (on the broker bid)."""
        for user_id, alert in list(self.alerts_by_id.values()):
            if alert.status == "active" and alert.symbol == quote.symbol and alert.price is not None and (
                    quote.bid >= alert.price if alert.condition == "above" else quote.bid <= alert.price):
                self._fire(user_id, alert, quote.bid)

    # --- markets ------------------------------------------------------------------------------------------

    async def info(self) -> InfoResponse:
        return InfoResponse(version="fake", ws_url="ws://fake.invalid/ws", server_time=self.now_ms)

    async def markets(self) -> list[Market]:
        self._call("markets")
        return list(MARKETS.values())

    async def prices(self) -> list[Price]:
        self._call("prices")
        return [Price(symbol=q.symbol, bid=q.bid, ask=q.ask, mid=q.mid, ts=q.ts) for q in self.quotes.values()]

    async def price(self, symbol: str) -> Price:
        q = self.quotes[symbol]
        return Price(symbol=q.symbol, bid=q.bid, ask=q.ask, mid=q.mid, ts=q.ts)

    async def candles(self, symbol: str, interval: str = "1m", limit: int = 200) -> list[Candle]:
        self._call(f"candles {symbol} {interval}")
        return self.candle_series(symbol, interval)[-limit:]

    def candle_series(self, symbol: str, interval: str, count: int = 120) -> list[Candle]:
        """A seeded random walk of `count` candles ending at the current bucket."""
        key = (symbol, interval)
        if key not in self._candles:
            market = MARKETS[symbol]
            rng = random.Random(f"{self.seed}:{symbol}:{interval}")
            length = INTERVALS[interval]
            end = bucket_start(self.now_ms, length)
            close = self.quotes[symbol].mid.quantize(market.price_tick)
            step = max(market.price_tick, (close / 1000).quantize(market.price_tick))
            series: list[Candle] = []
            for i in range(count):  # walk backwards from the current price, so the chart ends where it is
                c = close
                o = c - step * rng.randint(-4, 4)
                h = max(o, c) + step * rng.randint(0, 2)
                low = min(o, c) - step * rng.randint(0, 2)
                series.append(Candle(t=end - i * length, o=o, h=h, l=low, c=c, n=rng.randint(5, 60)))
                close = o
            series.reverse()
            self._candles[key] = series
        return self._candles[key]

    # --- trading ------------------------------------------------------------------------------------------

    async def account(self) -> Account:
        self._call("account")
        user = self._trading_user()
        return self._account(user.id)

    async def open_position(self, symbol: str, side: Side, qty: Decimal, leverage: int, *,
                            stop_loss: Decimal | None = None, take_profit: Decimal | None = None,
                            trailing_distance: Decimal | None = None, expected_price: Decimal | None = None,
                            max_deviation: Decimal | None = None, idempotency_key: str | None = None) -> Position:
        self._call("open_position")
        user = self._trading_user()
        try:
            position = self._open_at(user.id, symbol, side, qty, leverage, self.quotes[symbol], stop_loss=stop_loss,
                                     take_profit=take_profit, trailing_distance=trailing_distance,
                                     expected_price=expected_price, max_deviation=max_deviation)
        except CfdError as exc:
            raise Rejected(422, exc.code, exc.message, exc.details) from None
        self._emit_mark(user.id)
        return position

    async def positions(self, status: str | None = "open", limit: int = 200) -> list[Position]:
        self._call(f"positions {status}")
        user = self._trading_user()
        found = [p for uid, p in self.positions_by_id.values() if uid == user.id and (status is None or
                                                                                      p.status == status)]
        return sorted(found, key=lambda p: (p.closed_at or p.opened_at, p.id), reverse=True)[:limit]

    async def position(self, position_id: str) -> Position:
        user = self._trading_user()
        return self._own(user.id, position_id)

    async def modify_position(self, position_id: str, *, stop_loss: Decimal | UnsetType | None = UNSET,
                              take_profit: Decimal | UnsetType | None = UNSET,
                              trailing_distance: Decimal | UnsetType | None = UNSET) -> Position:
        self._call("modify_position")
        user = self._trading_user()
        position = self._own(user.id, position_id)
        if not is_open(position):
            raise Conflict(409, "position_closed", "This position is already closed.")
        sl = position.stop_loss if stop_loss is UNSET else stop_loss
        tp = position.take_profit if take_profit is UNSET else take_profit
        trailing = position.trailing_distance if trailing_distance is UNSET else trailing_distance
        quote = self.quotes[position.symbol]
        now = close_price(position.side, quote)
        try:  # as the engine's `modify`
            check_stops(position.side, now, sl, tp, MARKETS[position.symbol])
            check_trailing(position.side, trailing, now, MARKETS[position.symbol])
        except CfdError as exc:
            raise Rejected(422, exc.code, exc.message, exc.details) from None
        if trailing is not None and stop_loss is UNSET:
            sl = trailed_stop(position.side, trailing, quote, sl) or sl
        position = msgspec.structs.replace(position, stop_loss=plain(sl), take_profit=plain(tp),
                                           trailing_distance=plain(trailing), updated_at=self.now_ms)
        self.positions_by_id[position.id] = (user.id, position)
        self._emit(PositionFrame(event="updated", position=position, balance=self.balances[user.id]))
        return position

    async def close_position(self, position_id: str, qty: Decimal | None = None, *,
                             idempotency_key: str | None = None) -> Position:
        self._call("close_position")
        user = self._trading_user()
        position = self._own(user.id, position_id)
        if not is_open(position):
            raise Conflict(409, "position_closed", "This position is already closed.")
        qty = position.qty if qty is None else qty
        try:
            check_close(MARKETS[position.symbol], position.qty, qty)
        except CfdError as exc:
            raise Rejected(422, exc.code, exc.message, exc.details) from None
        return self._close(user.id, position, qty, close_price(position.side, self.quotes[position.symbol]),
                           "manual")

    async def close_all(self, symbol: str | None = None, *, idempotency_key: str | None = None) -> list[Position]:
        self._call("close_all")
        user = self._trading_user()
        if symbol is not None and symbol not in MARKETS:
            self._unknown_market(symbol)
        closed = [self._close(user.id, p, p.qty, close_price(p.side, self.quotes[p.symbol]), "manual")
                  for p in sorted(self._open(user.id), key=lambda p: (p.opened_at, p.id))
                  if symbol is None or p.symbol == symbol]
        return closed

    # --- pending orders -----------------------------------------------------------------------------------

    async def place_order(self, symbol: str, side: Side, order_type: OrderType, qty: Decimal, price: Decimal,
                          leverage: int, *, stop_loss: Decimal | None = None, take_profit: Decimal | None = None,
                          trailing_distance: Decimal | None = None, expires_at: int | None = None,
                          idempotency_key: str | None = None) -> Order:
        self._call("place_order")
        user = self._trading_user()
        if symbol not in MARKETS:
            self._unknown_market(symbol)
        order = Order(id=self._next_id(), symbol=symbol, side=side, type=order_type, qty=qty, price=price,
                      leverage=leverage, stop_loss=stop_loss, take_profit=take_profit,
                      trailing_distance=trailing_distance, status="working", created_at=self.now_ms,
                      updated_at=self.now_ms, expires_at=expires_at)
        self._check_pending(order)  # as sent, so that a refusal quotes the prices as the trader wrote them
        order = msgspec.structs.replace(order, qty=plain(qty), price=plain(price), stop_loss=plain(stop_loss),
                                        take_profit=plain(take_profit), trailing_distance=plain(trailing_distance))
        working = sum(1 for uid, o in self.orders_by_id.values() if uid == user.id and o.status == "working")
        if working >= MAX_WORKING_ORDERS:
            raise Rejected(422, "too_many_orders", f"An account may have {MAX_WORKING_ORDERS} working orders at "
                           "most; cancel one first.", {"limit": MAX_WORKING_ORDERS})
        self.orders_by_id[order.id] = (user.id, order)
        self._emit(OrderFrame(event="accepted", order=order))
        return order

    async def orders(self, status: OrderStatus | None = "working", limit: int = 200) -> list[Order]:
        self._call(f"orders {status}")
        user = self._trading_user()
        found = [o for uid, o in self.orders_by_id.values() if uid == user.id and (status is None or
                                                                                   o.status == status)]
        return sorted(found, key=lambda o: (o.created_at, o.id), reverse=True)[:limit]

    async def all_orders(self, status: OrderStatus | None = None, page_size: int = 200) -> AsyncIterator[Order]:
        for order in await self.orders(status, limit=len(self.orders_by_id)):
            yield order

    async def order(self, order_id: str) -> Order:
        user = self._trading_user()
        return self._own_order(user.id, order_id)

    async def modify_order(self, order_id: str, *, price: Decimal | UnsetType = UNSET,
                           qty: Decimal | UnsetType = UNSET, stop_loss: Decimal | UnsetType | None = UNSET,
                           take_profit: Decimal | UnsetType | None = UNSET,
                           trailing_distance: Decimal | UnsetType | None = UNSET,
                           expires_at: int | UnsetType | None = UNSET) -> Order:
        self._call("modify_order")
        user = self._trading_user()
        order = self._working_order(user.id, order_id)
        given = {"price": price, "qty": qty, "stop_loss": stop_loss, "take_profit": take_profit,
                 "trailing_distance": trailing_distance, "expires_at": expires_at}
        fields = {name: value for name, value in given.items() if value is not UNSET}
        self._check_pending(msgspec.structs.replace(order, **fields))
        return self._set_order(user.id, order, "modified", **{
            name: plain(value) if isinstance(value, Decimal) else value for name, value in fields.items()})

    async def cancel_order(self, order_id: str) -> Order:
        self._call("cancel_order")
        user = self._trading_user()
        order = self._working_order(user.id, order_id)
        return self._set_order(user.id, order, "cancelled", status="cancelled")

    async def ledger(self, limit: int = 200) -> list[LedgerEntry]:
        self._call("ledger")
        user = self._trading_user()
        return list(reversed(self.ledgers[user.id]))[:limit]

    async def feed(self, channels: list[str] | tuple[str, ...] = ("prices.*",), **options: Any) -> FakeFeed:
        return FakeFeed(self, channels, self.token)

    # --- internals ----------------------------------------------------------------------------------------

    def _call(self, name: str) -> None:
        self.requests.append(name)
        failure = self.failures.pop(name.split()[0], None)
        if failure is not None:
            raise failure

    def _next_id(self) -> str:
        self._ids += 1
        return str(uuid.uuid5(uuid.NAMESPACE_URL, f"fake-broker/{self.seed}/{self._ids}"))

    def _session(self, email: str) -> AuthSession:
        token = self.sign_in_as(email)
        return AuthSession(user=self.users[email][0], access_token=token, expires_in=3600)

    def _user_or_401(self) -> User:
        user = self.sessions.get(self.token or "")
        if user is None:
            raise NotSignedIn(401, "session_expired", "This session has ended; please sign in again.")
        return user

    def _trading_user(self) -> User:
        if not self.trading:
            raise NotFound(404, "not_found", "No endpoint at this path; see /schema for the API.")
        return self._user_or_401()

    def _own(self, user_id: str, position_id: str) -> Position:
        entry = self.positions_by_id.get(position_id)
        if entry is None or entry[0] != user_id:
            raise NotFound(404, "position_not_found", "No such position.")
        return entry[1]

    @staticmethod
    def _unknown_market(symbol: str) -> NoReturn:
        raise NotFound(404, "unknown_market", f"There is no market {symbol!r}; see GET /markets.",
                       {"markets": list(MARKETS), "field": "symbol"})

    def _own_order(self, user_id: str, order_id: str) -> Order:
        entry = self.orders_by_id.get(order_id)
        if entry is None or entry[0] != user_id:
            raise NotFound(404, "order_not_found", "No such order.")
        return entry[1]

    def _working_order(self, user_id: str, order_id: str) -> Order:
        order = self._own_order(user_id, order_id)
        if order.status != "working":
            raise Conflict(409, "order_not_working", f"This order is {order.status}; only a working order can "
                           "change.", {"status": order.status})
        return order

    def _check_pending(self, order: Order) -> None:
        """The platform's checks of a pending order (the dbproc's `check_pending`), as a 422."""
        market = MARKETS[order.symbol]
        try:
            check_order(market, order.side, order.qty, order.leverage)
            check_order_price(order.price, market)
            check_stops(order.side, order.price, order.stop_loss, order.take_profit, market)
            check_trailing(order.side, order.trailing_distance, order.price, market)
        except CfdError as exc:
            raise Rejected(422, exc.code, exc.message, exc.details) from None
        if order.expires_at is not None and order.expires_at <= self.now_ms:
            raise Rejected(422, "invalid_expiry", "expires_at must be in the future (epoch milliseconds), or left "
                           "out for good till cancelled.", {"field": "expires_at", "server_time": self.now_ms})

    def _set_order(self, user_id: str, order: Order, event: str, **fields: Any) -> Order:
        """Change an order and say so on the account channel (as the dbproc's `_set`)."""
        changed = msgspec.structs.replace(order, updated_at=self.now_ms, **fields)
        self.orders_by_id[order.id] = (user_id, changed)
        self._emit(OrderFrame(event=event, order=changed))
        return changed

    def _open_at(self, user_id: str, symbol: str, side: Side, qty: Decimal, leverage: int, quote: Quote, *,
                 stop_loss: Decimal | None = None, take_profit: Decimal | None = None,
                 trailing_distance: Decimal | None = None, expected_price: Decimal | None = None,
                 max_deviation: Decimal | None = None, order_id: str | None = None) -> Position:
        """Open a position at `quote`, as the engine's `open_at`: the market's rules, the slippage guard, the
        stops and the trailing distance, the margin; a trailing stop without a stop-loss starts behind the
        price. Raises `CfdError` when refused."""
        market = MARKETS[symbol]
        check_order(market, side, qty, leverage)
        fill = open_price(side, quote)
        check_slippage(side, fill, expected_price, max_deviation)
        check_stops(side, fill, stop_loss, take_profit, market)
        check_trailing(side, trailing_distance, close_price(side, quote), market)
        if trailing_distance is not None:
            stop_loss = trailed_stop(side, trailing_distance, quote, stop_loss) or stop_loss
        need = margin(qty, fill, leverage)
        fee, fee_carry = carried(commission(market, qty, fill), Decimal(0))
        check_affordable(need, fee, self._account(user_id).free_margin, self.balances[user_id])
        position = Position(id=self._next_id(), symbol=symbol, side=side, qty=plain(qty), entry_price=fill,
                            leverage=leverage, margin=need, stop_loss=plain(stop_loss),
                            take_profit=plain(take_profit), trailing_distance=plain(trailing_distance),
                            status="open", opened_at=self.now_ms, updated_at=self.now_ms, order_id=order_id,
                            commission=fee, open_receipt=fill_receipt(side == "long", fill, quote))
        self.positions_by_id[position.id] = (user_id, position)
        self.unbooked_fees[position.id] = fee_carry
        if fee:
            self._book(user_id, "commission", -fee, position.id)
        self._emit(PositionFrame(event="opened", position=position, balance=self.balances[user_id]))
        self._emit(AccountFrame(event="snapshot", account=self._account(user_id)))
        return position

    def _open(self, user_id: str) -> list[Position]:
        return [p for uid, p in self.positions_by_id.values() if uid == user_id and is_open(p)]

    def _account(self, user_id: str) -> Account:
        return account_state(self.balances[user_id], self._open(user_id), self.quotes)

    def mark_frame(self, user_id: str) -> AccountFrame:
        """The account and its positions marked at the latest quotes, as the platform's owning dbproc sends it."""
        open_now = self._open(user_id)
        if not open_now:
            return AccountFrame(event="mark", account=self._account(user_id), marks=[])
        book = RiskBook()  # the platform's own marks: prices, PnL and the stop-out and margin call prices
        book.add_accounts([open_position(user_id, p) for p in open_now], {user_id: self.balances[user_id]})
        for quote in self.quotes.values():
            book.on_quote(quote)
        marked = book.marked(user_id)
        assert marked is not None
        account, marks = marked
        return AccountFrame(event="mark", account=account, marks=marks)

    def _emit_mark(self, user_id: str) -> None:
        frame = self.mark_frame(user_id)
        self._emit(frame)
        level = frame.account.margin_level if frame.account is not None else None
        for uid, alert in list(self.alerts_by_id.values()):
            if (uid == user_id and alert.kind == "margin_level" and alert.status == "active" and level is not None
                    and alert.below is not None and level < alert.below):
                self._fire(uid, alert, level)

    def _book(self, user_id: str, kind: str, amount: Decimal, reference: str) -> Decimal:
        """A ledger entry and the balance it leaves (as the engine's `_book`)."""
        balance = money(self.balances[user_id] + amount)
        self.balances[user_id] = balance
        self.ledgers[user_id].append(LedgerEntry(id=self._next_id(), kind=kind, amount=money(amount),
                                                 balance_after=balance, reference=reference, created_at=self.now_ms))
        return balance

    def _close(self, user_id: str, position: Position, qty: Decimal, price: Decimal, reason: str) -> Position:
        """Close `qty` (already checked) at `price`, as the engine's `_close`: the closed part books its PnL and
        its commission (a loss beyond the balance is a shortfall entry), a partial close leaves the rest open."""
        whole = qty == position.qty
        closed_id = position.id if whole else self._next_id()
        done = closing(position.side, position.qty, qty, position.entry_price, position.leverage, position.margin,
                       self.unbooked.pop(position.id, Decimal(0)), price)
        balance = self._book(user_id, "realized_pnl", done.realized, closed_id)
        fee, fee_carry = carried(commission(MARKETS[position.symbol], qty, price),
                                 self.unbooked_fees.pop(position.id, Decimal(0)))
        if fee:
            balance = self._book(user_id, "commission", -fee, closed_id)
        if balance < 0:
            balance = self._book(user_id, "shortfall", -balance, closed_id)
        closed = msgspec.structs.replace(position, id=closed_id, qty=qty, margin=done.released_margin,
                                         status="closed", updated_at=self.now_ms, closed_at=self.now_ms,
                                         close_price=price, realized_pnl=done.realized, close_reason=reason,
                                         close_receipt=fill_receipt(position.side == "short", price,
                                                                    self.quotes[position.symbol]),
                                         parent_id=None if whole else position.id,
                                         commission=position.commission + fee if whole else fee,
                                         financing=position.financing if whole else Decimal("0.00"))
        self.positions_by_id[closed.id] = (user_id, closed)
        self._emit(PositionFrame(event="closed", position=closed, balance=balance))
        if not whole:
            rest = msgspec.structs.replace(position, qty=position.qty - qty, margin=done.remaining_margin,
                                           updated_at=self.now_ms)
            self.positions_by_id[rest.id] = (user_id, rest)
            self.unbooked[rest.id] = done.unbooked
            self.unbooked_fees[rest.id] = fee_carry
            self._emit(PositionFrame(event="updated", position=rest, balance=balance))
        self._emit(AccountFrame(event="snapshot", account=self._account(user_id)))
        self._emit_mark(user_id)
        return closed

    def _trail(self, quote: Quote) -> None:
        """Ratchet the trailing stop-losses of the market after the price (the risk book's `_trail`); each move
        is the position's `updated` event."""
        for user_id, position in list(self.positions_by_id.values()):
            if is_open(position) and position.symbol == quote.symbol and position.trailing_distance is not None:
                level = trailed_stop(position.side, position.trailing_distance, quote, position.stop_loss)
                if level is not None:
                    position = msgspec.structs.replace(position, stop_loss=level, updated_at=self.now_ms)
                    self.positions_by_id[position.id] = (user_id, position)
                    self._emit(PositionFrame(event="updated", position=position, balance=self.balances[user_id]))

    def _check_stops(self, quote: Quote) -> None:
        for user_id, position in list(self.positions_by_id.values()):
            if is_open(position) and position.symbol == quote.symbol:
                reason: str | None = stop_trigger(position.side, position.stop_loss, position.take_profit, quote)
                if reason == "stop_loss" and position.trailing_distance is not None:
                    reason = "trailing_stop"
                if reason is not None:
                    self._close(user_id, position, position.qty, close_price(position.side, quote), reason)

    def _check_orders(self, quote: Quote) -> None:
        """The working orders of the market this quote reaches: each fills at this quote, through the market
        order's path, or is rejected with the reason (the dbproc's `fill`); one past its expiry expires."""
        working = sorted((entry for entry in self.orders_by_id.values()
                          if entry[1].status == "working" and entry[1].symbol == quote.symbol),
                         key=lambda entry: (entry[1].created_at, entry[1].id))
        for user_id, order in working:
            if not order_triggered(order.side, order.type, order.price, quote):
                continue
            if order.expires_at is not None and order.expires_at <= self.now_ms:
                self._set_order(user_id, order, "expired", status="expired")
                continue
            try:
                position = self._open_at(user_id, order.symbol, order.side, order.qty, order.leverage, quote,
                                         stop_loss=order.stop_loss, take_profit=order.take_profit,
                                         trailing_distance=order.trailing_distance, order_id=order.id)
            except CfdError as exc:  # judged when it triggers: refused now, with the reason
                self._set_order(user_id, order, "rejected", status="rejected",
                                reason=f"{exc.code}: {exc.message}"[:200])
                continue
            self._set_order(user_id, order, "filled", status="filled", position_id=position.id)

    def _quote(self, symbol: str, bid: Decimal, ask: Decimal, ts: int) -> Quote:
        """The broker's quote of an exchange bid/ask, kept as the latest (refused as the platform refuses it)."""
        market = MARKETS.get(symbol)
        if market is None or not 0 < bid <= ask:
            raise ValueError(f"the platform refuses this tick: {symbol} {bid}/{ask}")
        self.exchange[symbol] = (bid, ask)
        self.quotes[symbol] = quote = broker_quote(market, bid, ask, ts)
        return quote

    def _emit(self, frame: PositionFrame | OrderFrame | AlertFrame | AccountFrame) -> None:
        for feed in list(self.feeds):
            if ACCOUNT_CHANNEL in feed.channels and feed.token in self.sessions:
                feed.emit(frame)


def _price_frame(q: Quote) -> PriceFrame:
    return PriceFrame(symbol=q.symbol, bid=q.bid, ask=q.ask, mid=q.mid, ts=q.ts)


def _candle_frame(symbol: str, interval: str, c: Candle, closed: bool = False) -> CandleFrame:
    return CandleFrame(symbol=symbol, interval=interval, t=c.t, o=c.o, h=c.h, l=c.l, c=c.c, n=c.n, closed=closed)
