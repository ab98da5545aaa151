"""The market catalogue, what operators may change of a market at run time, and the broker quote, computed here
and nowhere else.

`MARKETS` is the catalogue: each market's contract terms as the platform ships them. The terms an operator
changes (`MarketSettings`: status, spread, commission, financing, maximum leverage) are stored by the dbproc
and published on the bus; every service keeps the current terms in its own `MarketBook`, which starts from
the catalogue and takes each newer revision it hears of.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from decimal import ROUND_CEILING, ROUND_FLOOR, Decimal
from typing import Literal

import msgspec
from msgspec import Struct

from shared.contracts.quote import Quote, QuoteSource
from shared.errors import NotFound, Rejected

BPS = Decimal(10_000)

MarketStatus = Literal["open", "close_only", "halted"]
STATUSES: tuple[MarketStatus, ...] = ("open", "close_only", "halted")

MAX_SPREAD_BPS = Decimal(1000)  # a 10 % markup: beyond it a quote is not a market any more
MAX_COMMISSION_RATE = Decimal("0.05")  # 5 % of the notional per side
MAX_FINANCING_RATE = Decimal(1)  # 100 % a year, charged or (negative) credited


class Market(Struct, frozen=True, kw_only=True):
    """A tradable market and its contract terms (`GET /markets`).

    `spread_bps` is the broker's total markup. `commission_rate` is a fraction of the notional, charged on
    opening and on closing. `financing_long_rate` and `financing_short_rate` are yearly rates a position pays
    at each daily rollover (notional × rate / 365); a negative rate is credited. `status`: `open`,
    `close_only` (no opening) or `halted` (nothing trades; stops wait)."""

    symbol: str
    base: str
    quote: str
    max_leverage: int
    min_qty: Decimal
    qty_step: Decimal
    price_tick: Decimal
    spread_bps: Decimal
    commission_rate: Decimal
    financing_long_rate: Decimal
    financing_short_rate: Decimal
    status: MarketStatus = "open"


class MarketSettings(Struct, frozen=True, kw_only=True):
    """What operators change of a market (`PATCH /admin/markets/{symbol}`), as stored and as published on the
    bus. `revision` counts the changes (0: the catalogue's terms, never changed); a service applies a
    revision only when it is newer than the one it holds."""

    symbol: str
    status: MarketStatus
    spread_bps: Decimal
    commission_rate: Decimal
    financing_long_rate: Decimal
    financing_short_rate: Decimal
    max_leverage: int
    revision: int = 0
    updated_at: int = 0


SETTING_FIELDS = ("status", "spread_bps", "commission_rate", "financing_long_rate", "financing_short_rate",
                  "max_leverage")
"""The terms of a market an operator can change."""


def _market(symbol: str, base: str, *, max_leverage: int, min_qty: str, price_tick: str, spread_bps: str,
            commission_rate: str, financing_long_rate: str, financing_short_rate: str) -> Market:
    return Market(symbol=symbol, base=base, quote="USDC", max_leverage=max_leverage, min_qty=Decimal(min_qty),
                  qty_step=Decimal(min_qty), price_tick=Decimal(price_tick), spread_bps=Decimal(spread_bps),
                  commission_rate=Decimal(commission_rate), financing_long_rate=Decimal(financing_long_rate),
                  financing_short_rate=Decimal(financing_short_rate))


# Costs, as crypto CFD brokers charge them (docs/api.md, "Costs"): a commission of 0.05 % a side on the two
# deepest markets and 0.1 % on the others; overnight financing of 20-25 % a year for a long, the price of
# borrowing the notional, and a small credit (or nothing) for a short.
MARKETS: dict[str, Market] = {
    m.symbol: m
    for m in (
        _market("BTC_USDC", "BTC", max_leverage=50, min_qty="0.0001", price_tick="0.1", spread_bps="4",
                commission_rate="0.0005", financing_long_rate="0.2", financing_short_rate="-0.05"),
        _market("ETH_USDC", "ETH", max_leverage=50, min_qty="0.001", price_tick="0.01", spread_bps="5",
                commission_rate="0.0005", financing_long_rate="0.22", financing_short_rate="-0.05"),
        _market("SOL_USDC", "SOL", max_leverage=20, min_qty="0.01", price_tick="0.01", spread_bps="6",
                commission_rate="0.001", financing_long_rate="0.25", financing_short_rate="-0.02"),
        _market("BNB_USDC", "BNB", max_leverage=20, min_qty="0.001", price_tick="0.01", spread_bps="6",
                commission_rate="0.001", financing_long_rate="0.25", financing_short_rate="-0.02"),
        _market("DOGE_USDC", "DOGE", max_leverage=10, min_qty="1", price_tick="0.00001", spread_bps="10",
                commission_rate="0.001", financing_long_rate="0.25", financing_short_rate="0"),
    )
}
"""The catalogue: every market's terms as shipped (operators change some of them at run time)."""

SYMBOLS: tuple[str, ...] = tuple(MARKETS)


def broker_quote(market: Market, bid: Decimal, ask: Decimal, ts_ms: int, *, exchange_time_us: int | None = None,
                 update_id: int | None = None) -> Quote:
    """Widen the exchange's bid/ask by half the market's markup on each side, rounded away from the mid. The
    quote keeps its source (the exchange's bid, ask, time and update id, and the spread applied) for receipts."""
    half = market.spread_bps / 2 / BPS
    broker_bid = (bid * (1 - half)).quantize(market.price_tick, rounding=ROUND_FLOOR)
    broker_ask = (ask * (1 + half)).quantize(market.price_tick, rounding=ROUND_CEILING)
    mid = ((broker_bid + broker_ask) / 2).quantize(market.price_tick / 10)
    source = QuoteSource(exchange_bid=bid, exchange_ask=ask, update_id=update_id, spread_bps=market.spread_bps,
                         exchange_time_us=ts_ms * 1000 if exchange_time_us is None else exchange_time_us)
    return Quote(symbol=market.symbol, bid=broker_bid, ask=broker_ask, mid=mid, ts=ts_ms, source=source)


def market_of(symbol: str, *, field: str | None = None) -> Market:
    """The catalogue's market `symbol` names; otherwise 404 `unknown_market` (the same everywhere: a path, a body
    field or a bus request), listing the markets, and naming the `field` when the symbol came in one.
    For the terms in force now, ask a `MarketBook`."""
    market = MARKETS.get(symbol)
    if market is None:
        details: dict[str, object] = {"markets": list(MARKETS)}
        if field is not None:
            details["field"] = field
        raise NotFound(f"There is no market {symbol!r}; see GET /markets.", code="unknown_market", details=details)
    return market


# --- the terms in force ---------------------------------------------------------------------------------------


def settings_of(market: Market, revision: int = 0, updated_at: int = 0) -> MarketSettings:
    return MarketSettings(symbol=market.symbol, revision=revision, updated_at=updated_at,
                          **{name: getattr(market, name) for name in SETTING_FIELDS})


def with_settings(market: Market, settings: MarketSettings) -> Market:
    """The market with an operator's settings in place of its own."""
    return msgspec.structs.replace(market, **{name: getattr(settings, name) for name in SETTING_FIELDS})


MarketListener = Callable[[Market, Market], None]
"""Called with (the market before, the market after) when a newer revision changes it."""


class MarketBook:
    """The terms in force of every market in one service: the catalogue's, replaced by each newer revision of
    an operator's settings (`apply`). Lives in one event loop."""

    def __init__(self, markets: Iterable[Market] | None = None) -> None:
        self._markets: dict[str, Market] = {m.symbol: m for m in (MARKETS.values() if markets is None else markets)}
        self._revisions: dict[str, int] = dict.fromkeys(self._markets, 0)
        self._listeners: list[MarketListener] = []

    def on_change(self, listener: MarketListener) -> None:
        self._listeners.append(listener)

    def __contains__(self, symbol: object) -> bool:
        return symbol in self._markets

    def get(self, symbol: str) -> Market | None:
        return self._markets.get(symbol)

    def market_of(self, symbol: str, *, field: str | None = None) -> Market:
        """The market `symbol` names, as `market_of`, with the terms in force."""
        market = self._markets.get(symbol)
        return market if market is not None else market_of(symbol, field=field)

    def all(self) -> list[Market]:
        """Every market, in catalogue order."""
        return list(self._markets.values())

    def revision(self, symbol: str) -> int:
        return self._revisions.get(symbol, 0)

    def settings(self) -> list[MarketSettings]:
        """What this book holds of every market, with the revision of each."""
        return [settings_of(m, self._revisions[m.symbol]) for m in self._markets.values()]

    def apply(self, settings: MarketSettings) -> bool:
        """Take `settings` if they are newer than what the book holds of the market; True when taken. An
        unknown market, or a revision already held, changes nothing (settings arrive more than once: from the
        bus, and from the dbproc's answer at start)."""
        before = self._markets.get(settings.symbol)
        if before is None or settings.revision <= self._revisions[settings.symbol]:
            return False
        after = with_settings(before, settings)
        self._markets[settings.symbol] = after
        self._revisions[settings.symbol] = settings.revision
        if after != before:
            for listener in self._listeners:
                listener(before, after)
        return True


# --- rules ----------------------------------------------------------------------------------------------------


def check_trading(market: Market, action: Literal["open", "close"]) -> None:
    """Reject (422) trading in a market whose status forbids it: a `close_only` market takes no opening, a
    `halted` one nothing at all."""
    if market.status == "halted":
        raise Rejected(f"{market.symbol} is halted: nothing trades until it reopens.", code="market_halted",
                       details={"symbol": market.symbol, "status": market.status})
    if market.status == "close_only" and action == "open":
        raise Rejected(f"{market.symbol} is close-only: positions can be closed, not opened.",
                       code="market_close_only", details={"symbol": market.symbol, "status": market.status})


def check_settings(settings: MarketSettings) -> None:
    """Reject (422, naming the field) settings outside what a market can trade on."""
    if not Decimal(0) <= settings.spread_bps <= MAX_SPREAD_BPS:
        _refuse("spread_bps", f"The spread is 0 to {MAX_SPREAD_BPS} basis points.", MAX_SPREAD_BPS)
    if not Decimal(0) <= settings.commission_rate <= MAX_COMMISSION_RATE:
        _refuse("commission_rate", f"The commission rate is a fraction of the notional from 0 to "
                f"{MAX_COMMISSION_RATE} (5 %).", MAX_COMMISSION_RATE)
    for name in ("financing_long_rate", "financing_short_rate"):
        if not -MAX_FINANCING_RATE <= getattr(settings, name) <= MAX_FINANCING_RATE:
            _refuse(name, "A financing rate is a yearly fraction from -1 to 1 (a negative rate is credited).",
                    MAX_FINANCING_RATE)
    if settings.status not in STATUSES:
        raise Rejected(f"The status is one of {', '.join(STATUSES)}.", code="invalid_status",
                       details={"field": "status"})
    if settings.max_leverage < 1:
        raise Rejected("The maximum leverage is at least 1.", code="invalid_leverage",
                       details={"field": "max_leverage"})


def _refuse(field: str, message: str, limit: Decimal) -> None:
    raise Rejected(message, code=f"invalid_{field}", details={"field": field, "max": str(limit)})
