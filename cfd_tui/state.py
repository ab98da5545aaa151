"""The client's view of the market and the account, kept apart from the widgets that draw it.

The feed worker applies every event here (cheap: a dict write), and marks what changed; the app's redraw
timer takes the changes at most ~20 times a second and hands them to the widgets. So 50 ticks/s cost 50
dict writes, not 50 redraws, and key presses stay responsive.

Nothing here grows with time: per market it keeps the latest quote and the mids its sparkline shows; of the
live candles, only those of the chart on screen; the portfolio holds the open positions and the working
orders only; the alert book, the alerts the platform keeps (at most 50 active, and the triggered ones until
the trader deletes them).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable
from decimal import Decimal

from msgspec import Struct

from cfd_client.models import Account, Alert, Order, Position, is_open
from shared.contracts.events import PositionMark
from shared.contracts.quote import Quote
from shared.contracts.rest import Candle, Price
from shared.contracts.ws import CandleFrame, PriceFrame
from shared.markets import MARKETS, Market

SPARKLINE_POINTS = 14  # mids kept per market: exactly what its sparkline shows (one character each)
FINISHED_ORDERS = 200  # ids of orders seen leaving the working list, so a late answer does not bring one back
FLASH_SECONDS = 0.6


class Ticker(Struct, kw_only=True):
    """One market's latest quote and what the watchlist shows about it."""

    symbol: str
    bid: Decimal
    ask: Decimal
    mid: Decimal
    ts: int
    received_at: float  # app clock (epoch seconds) when it arrived
    direction: int = 0  # +1 up-tick, -1 down-tick, 0 unchanged
    flash_until: float = 0.0
    reference: Decimal | None = None  # the price the change column compares with
    stale: bool = False

    def quote(self) -> Quote:
        return Quote(symbol=self.symbol, bid=self.bid, ask=self.ask, mid=self.mid, ts=self.ts)


class MarketBoard:
    """Latest quotes, recent mids and live candles of every market."""

    def __init__(self, markets: Iterable[Market] | None = None) -> None:
        self.markets: dict[str, Market] = {m.symbol: m for m in (markets or MARKETS.values())}
        self.tickers: dict[str, Ticker] = {}
        self.mids: dict[str, deque[Decimal]] = {s: deque(maxlen=SPARKLINE_POINTS) for s in self.markets}
        self.live_candles: dict[tuple[str, str], CandleFrame] = {}  # of the followed chart only
        self.followed_candles: tuple[str, str] | None = None  # (symbol, interval) of the chart on screen
        self._dirty: set[str] = set()
        self._dirty_candles: set[tuple[str, str]] = set()
        self._references: dict[str, Decimal] = {}  # what the change column compares with

    @property
    def symbols(self) -> list[str]:
        return list(self.markets)

    def set_markets(self, markets: Iterable[Market]) -> None:
        """Replace the catalogue with the server's."""
        self.markets = {m.symbol: m for m in markets}
        for symbol in self.markets:
            self.mids.setdefault(symbol, deque(maxlen=SPARKLINE_POINTS))
        self._dirty.update(self.markets)

    def seed(self, symbol: str, candles: list[Candle]) -> None:
        """Start the sparkline and the change reference from candle history (oldest first)."""
        if symbol not in self.mids or not candles:
            return
        mids = self.mids[symbol]
        live = list(mids)
        mids.clear()
        mids.extend(c.c for c in candles)
        mids.extend(live)
        ticker = self.tickers.get(symbol)
        if ticker is not None:
            ticker.reference = candles[0].o
        self._references[symbol] = candles[0].o
        self._dirty.add(symbol)

    def apply_price(self, frame: PriceFrame | Price, now: float, flash: bool = True) -> None:
        """Take one quote (feed frame or REST answer)."""
        previous = self.tickers.get(frame.symbol)
        direction = 0
        if previous is not None:
            direction = (frame.mid > previous.mid) - (frame.mid < previous.mid)
        reference = previous.reference if previous else self._reference(frame.symbol, frame.mid)
        ticker = Ticker(symbol=frame.symbol, bid=frame.bid, ask=frame.ask, mid=frame.mid, ts=frame.ts,
                        received_at=now, direction=direction or (previous.direction if previous else 0),
                        flash_until=now + FLASH_SECONDS if direction and flash else
                        (previous.flash_until if previous else 0.0),
                        reference=reference, stale=bool(getattr(frame, "stale", False)))
        self.tickers[frame.symbol] = ticker
        self.mids.setdefault(frame.symbol, deque(maxlen=SPARKLINE_POINTS)).append(frame.mid)
        self._dirty.add(frame.symbol)

    def _reference(self, symbol: str, mid: Decimal) -> Decimal:
        return self._references.setdefault(symbol, mid)

    def follow_candles(self, symbol: str, interval: str) -> None:
        """Keep the live candles of `symbol` at `interval` from now on, and forget the others."""
        key = (symbol, interval)
        self.followed_candles = key
        self.live_candles = {k: v for k, v in self.live_candles.items() if k == key}
        self._dirty_candles &= {key}

    def apply_candle(self, frame: CandleFrame) -> None:
        """Take a live candle frame (one of a chart no longer followed, still in flight, is dropped)."""
        key = (frame.symbol, frame.interval)
        if self.followed_candles is not None and key != self.followed_candles:
            return
        self.live_candles[key] = frame
        self._dirty_candles.add(key)

    def mark_stale(self, now: float, after: float) -> None:
        """Flag markets whose last quote is older than `after` seconds (and clear the flag on fresh ones)."""
        for ticker in self.tickers.values():
            stale = now - ticker.received_at > after
            if stale != ticker.stale:
                ticker.stale = stale
                self._dirty.add(ticker.symbol)

    def expire_flashes(self, now: float) -> None:
        """Redraw rows whose up/down flash just ended."""
        for ticker in self.tickers.values():
            if ticker.flash_until and ticker.flash_until <= now:
                ticker.flash_until = 0.0
                self._dirty.add(ticker.symbol)

    def stale_symbols(self) -> list[str]:
        return [s for s, t in self.tickers.items() if t.stale]

    def quotes(self) -> dict[str, Quote]:
        return {s: t.quote() for s, t in self.tickers.items()}

    def take_changes(self) -> tuple[set[str], set[tuple[str, str]]]:
        """The markets and candles changed since the last call (and forget them)."""
        dirty, candles = self._dirty, self._dirty_candles
        self._dirty, self._dirty_candles = set(), set()
        return dirty, candles


class Portfolio:
    """The signed-in trader's open positions, working orders and account, marked to market by the platform.

    The dbproc that holds the account marks it (`mark` frames on the `account` channel: equity, margin level,
    and each position's close price and unrealised PnL); the terminal shows those figures as they come, and
    computes none of its own."""

    def __init__(self) -> None:
        self.positions: dict[str, Position] = {}
        self.orders: dict[str, Order] = {}  # the working orders, by id
        self.marks: dict[str, PositionMark] = {}  # by position id, from the latest mark frame
        self.account: Account | None = None
        self.available: bool | None = None  # None: not asked yet; False: the server has no trading endpoints
        self.orders_available: bool | None = None  # False: the server has no order endpoints
        self._finished: deque[str] = deque(maxlen=FINISHED_ORDERS)

    def reset(self) -> None:
        self.positions.clear()
        self.orders.clear()
        self._finished.clear()
        self.marks.clear()
        self.account = None
        self.available = None
        self.orders_available = None

    def set_positions(self, positions: Iterable[Position]) -> None:
        self.positions = {p.id: p for p in positions if is_open(p)}

    def set_orders(self, orders: Iterable[Order]) -> None:
        self.orders = {o.id: o for o in orders if o.status == "working" and o.id not in self._finished}

    def apply_order(self, order: Order) -> None:
        """A placed, modified, filled, cancelled, expired or rejected order (from the feed or a REST answer):
        only a working one stays listed. An order already seen filled, cancelled, expired or rejected stays
        gone: the answer that placed it may be read after the feed said it filled."""
        if order.status == "working":
            if order.id not in self._finished:
                self.orders[order.id] = order
        else:
            self.orders.pop(order.id, None)
            self._finished.append(order.id)

    def apply_position(self, position: Position) -> None:
        """An opened, updated or closed position (from the feed or a REST answer)."""
        if is_open(position):
            self.positions[position.id] = position
        else:  # a partial close reports its closed part under a new id; the rest comes as "updated"
            self.positions.pop(position.id, None)
            self.marks.pop(position.id, None)

    def apply_account(self, account: Account | None, marks: Iterable[PositionMark] | None = None) -> None:
        """The account from a snapshot or a mark frame, and the positions' marks that came with it (a mark frame
        marks every open position, so it replaces the last one's)."""
        if account is not None:
            self.account = account
        if marks is not None:
            self.marks = {m.id: m for m in marks}

    def pnl(self, position: Position) -> Decimal | None:
        """Unrealised PnL at the latest mark (None before the first one)."""
        mark = self.marks.get(position.id)
        return None if mark is None else mark.unrealized_pnl

    def stop_out_price(self, position: Position) -> Decimal | None:
        """The price the position would close at when the account is stopped out, every other price as it is (the
        latest mark's; None before the first, or where no price of its market gets there)."""
        mark = self.marks.get(position.id)
        return None if mark is None else mark.stop_out_price

    def mark_price(self, position: Position) -> Decimal | None:
        """The price the position would close at, as of the latest mark (None before the first one)."""
        mark = self.marks.get(position.id)
        return None if mark is None else mark.price


class AlertBook:
    """The trader's alerts, active and triggered, by id: loaded over REST by the alerts screen, kept up to date
    by the `account` channel's `alert` frames and by what this terminal creates and deletes."""

    def __init__(self) -> None:
        self.alerts: dict[str, Alert] = {}
        self.loaded = False  # the whole list came from the server at least once

    def reset(self) -> None:
        self.alerts.clear()
        self.loaded = False

    def set_all(self, alerts: Iterable[Alert]) -> None:
        self.alerts = {a.id: a for a in alerts}
        self.loaded = True

    def apply(self, alert: Alert) -> None:
        """A created or triggered alert (a `triggered` one never goes back to `active`)."""
        known = self.alerts.get(alert.id)
        if known is not None and known.status == "triggered" and alert.status == "active":
            return
        self.alerts[alert.id] = alert

    def remove(self, alert_id: str) -> None:
        self.alerts.pop(alert_id, None)

    def ordered(self) -> list[Alert]:
        """The active alerts, newest first, then the triggered ones, the latest to fire first."""
        active = sorted((a for a in self.alerts.values() if a.status == "active"),
                        key=lambda a: (a.created_at, a.id), reverse=True)
        fired = sorted((a for a in self.alerts.values() if a.status != "active"),
                       key=lambda a: (a.triggered_at or 0, a.id), reverse=True)
        return active + fired
