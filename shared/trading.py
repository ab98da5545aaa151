"""Trading maths: fills, margin, PnL, equity, margin level, the order rules and stop triggers.

Pure functions on `Decimal`, shared by the dbproc (which applies them), the risk engine and clients
(which preview them). Money is rounded to `MONEY_QUANTUM` only where it is booked.
"""

from __future__ import annotations

from collections.abc import Iterable
from decimal import ROUND_HALF_EVEN, Context, Decimal, DivisionByZero, Inexact, InvalidOperation, Overflow, localcontext
from typing import Literal, NamedTuple, Protocol, overload

import msgspec
from msgspec import Struct

from shared.contracts.quote import Quote
from shared.contracts.rest import Account, FillReceipt
from shared.errors import Rejected
from shared.markets import Market

Side = Literal["long", "short"]

CURRENCY = "USD"  # every account's currency: amounts are booked in its cents
MONEY_QUANTUM = Decimal("0.01")
MARGIN_CALL_LEVEL = Decimal(100)
STOP_OUT_LEVEL = Decimal(50)
HUNDRED = Decimal(100)


def is_multiple(value: Decimal, step: Decimal) -> bool:
    """Whether `value` is a whole number of `step`s (False for values too large to tell exactly)."""
    try:
        return value % step == 0
    except InvalidOperation:
        return False


def money(value: Decimal) -> Decimal:
    """Round an amount to the precision the ledger books (never "-0.00")."""
    rounded = value.quantize(MONEY_QUANTUM, rounding=ROUND_HALF_EVEN)
    return rounded.copy_abs() if rounded.is_zero() else rounded


@overload
def plain(value: Decimal) -> Decimal: ...
@overload
def plain(value: None) -> None: ...
@overload
def plain(value: Decimal | None) -> Decimal | None: ...
def plain(value: Decimal | None) -> Decimal | None:
    """Without trailing zeros and never in exponent form: 160.0000000000 → 160, 0.50 → 0.5."""
    if value is None:
        return None
    if value == value.to_integral_value():
        return value.quantize(Decimal(1))
    return value.normalize()


def open_price(side: Side, quote: Quote) -> Decimal:
    """Longs buy at the ask, shorts sell at the bid."""
    return quote.ask if side == "long" else quote.bid


def close_price(side: Side, quote: Quote) -> Decimal:
    """Longs sell at the bid, shorts buy back at the ask."""
    return quote.bid if side == "long" else quote.ask


def margin(qty: Decimal, entry: Decimal, leverage: int) -> Decimal:
    return money(qty * entry / leverage)


def pnl(side: Side, qty: Decimal, entry: Decimal, exit_price: Decimal) -> Decimal:
    """Profit of closing `qty` at `exit_price`: long (exit − entry) × qty, short (entry − exit) × qty."""
    return (exit_price - entry) * qty if side == "long" else (entry - exit_price) * qty


def unrealized_pnl(side: Side, qty: Decimal, entry: Decimal, quote: Quote) -> Decimal:
    return pnl(side, qty, entry, close_price(side, quote))


def fill_receipt(buy: bool, price: Decimal, quote: Quote) -> FillReceipt | None:
    """The receipt of a fill at `price` from `quote` (a buy at its ask, a sell at its bid): the exchange's top of
    book it was priced from and the markup. None for a quote that does not know its source."""
    source = quote.source
    if source is None:
        return None
    markup = price - source.exchange_ask if buy else source.exchange_bid - price
    return FillReceipt(side="buy" if buy else "sell", price=price, exchange_bid=source.exchange_bid,
                       exchange_ask=source.exchange_ask, exchange_time_us=source.exchange_time_us,
                       update_id=source.update_id, spread_bps=source.spread_bps, markup=plain(markup))


class Closing(NamedTuple):
    """What closing part (or all) of a position books, releases and carries."""

    realized: Decimal  # booked now, in cents
    unbooked: Decimal  # the sub-cent remainder the position carries to its next close
    released_margin: Decimal  # the closed part's margin
    remaining_margin: Decimal  # the margin the open rest keeps


def closing(side: Side, open_qty: Decimal, qty: Decimal, entry: Decimal, leverage: int, held_margin: Decimal,
            unbooked: Decimal, exit_price: Decimal) -> Closing:
    """Close `qty` of an open position of `open_qty` at `exit_price`.

    The PnL booked is the exact PnL of this fill plus what earlier partial closes left unbooked, rounded to
    cents; what rounding leaves is carried, never dropped, so a position closed in N slices books the exact
    PnL of its fills to within half a cent. The rest keeps the margin it would have been opened with
    (`margin(rest, entry, leverage)`) and the closed part releases the difference, so the parts' margins
    add up to the margin held and the rest's never drifts from its size, however many slices."""
    exact = pnl(side, qty, entry, exit_price) + unbooked
    realized = money(exact)
    rest = open_qty - qty
    remaining = min(held_margin, margin(rest, entry, leverage)) if rest > 0 else Decimal(0)
    return Closing(realized=realized, unbooked=exact - realized, released_margin=held_margin - remaining,
                   remaining_margin=remaining)


class Exposed(Protocol):
    """What the account maths needs of an open position: a `Position`, the risk book's `OpenPosition`, or the
    store's `Exposure` (the five columns, read cheaply) all qualify."""

    @property
    def symbol(self) -> str: ...
    @property
    def side(self) -> Side: ...
    @property
    def qty(self) -> Decimal: ...
    @property
    def entry_price(self) -> Decimal: ...
    @property
    def margin(self) -> Decimal: ...


class Exposure(Struct, frozen=True):
    """An open position read for the account maths alone (the store's cheap query)."""

    symbol: str
    side: Side
    qty: Decimal
    entry_price: Decimal
    margin: Decimal


EXACT = Context(prec=100, traps=[Inexact, InvalidOperation, DivisionByZero, Overflow])
"""Exact sums and products, or `decimal.Inexact` (catalogue quantities × prices fit many times over)."""
ZERO = Decimal(0)


class Net(Struct, gc=False):
    """One user's open positions in one market, netted: what their unrealised PnL needs (f_s in the risk book,
    pending positions included there). A long's PnL at the bid b is b × qty − qty × entry, so the sums of the
    quantities and of their costs (qty × entry) value them all at once."""

    long_qty: Decimal = ZERO
    long_cost: Decimal = ZERO
    short_qty: Decimal = ZERO
    short_cost: Decimal = ZERO
    count: int = 0

    def add(self, p: Exposed, sign: int) -> None:
        """Add (sign 1) or remove (sign −1) a position; exact, or `decimal.Inexact` with nothing changed."""
        qty = EXACT.multiply(p.qty, sign)
        cost = EXACT.multiply(qty, p.entry_price)
        if p.side == "long":
            self.long_qty, self.long_cost = EXACT.add(self.long_qty, qty), EXACT.add(self.long_cost, cost)
        else:
            self.short_qty, self.short_cost = EXACT.add(self.short_qty, qty), EXACT.add(self.short_cost, cost)
        self.count += sign

    @property
    def spread_dependent(self) -> bool:
        """Hedged but not flat: its keys bound the spread by the market's allowance."""
        return self.long_qty > 0 and self.short_qty > 0 and self.long_qty != self.short_qty

    @property
    def weight(self) -> Decimal:
        """The share of the slack this market gets: its gross notional at entry."""
        return EXACT.add(self.long_cost, self.short_cost)

    def value(self, quote: Quote | None) -> Decimal:
        """f_s: the unrealised PnL of these positions at `quote` (long on the bid, short on the ask); exact."""
        if quote is None:
            return ZERO
        longs = EXACT.subtract(EXACT.multiply(self.long_qty, quote.bid), self.long_cost)
        shorts = EXACT.subtract(self.short_cost, EXACT.multiply(self.short_qty, quote.ask))
        return EXACT.add(longs, shorts)


class Holdings:
    """Open positions netted per market (`Net`), with the margin they use: all `account_state` needs of them, in
    a size that does not grow with their number."""

    __slots__ = ("count", "margin", "nets")

    def __init__(self, positions: Iterable[Exposed] = ()) -> None:
        self.nets: dict[str, Net] = {}
        self.margin = ZERO
        self.count = 0
        for p in positions:
            self.add(p)

    @classmethod
    def summed(cls, nets: dict[str, Net], margin: Decimal, count: int) -> Holdings:
        """Holdings from nets kept elsewhere (the risk book's), copied; the margin used and the number of
        positions."""
        held = cls()
        held.nets = {symbol: msgspec.structs.replace(net) for symbol, net in nets.items()}
        held.margin, held.count = margin, count
        return held

    def add(self, p: Exposed, sign: int = 1) -> None:
        """Hold a position (sign 1) or let one go (sign −1)."""
        net = self.nets.get(p.symbol) or Net()
        net.add(p, sign)
        self.nets[p.symbol] = net
        self.margin = EXACT.add(self.margin, EXACT.multiply(p.margin, sign))
        self.count += sign

    @property
    def consistent(self) -> bool:
        """Nothing let go that was not held (no negative count, quantity or margin)."""
        return self.count >= 0 and self.margin >= 0 and all(
            net.long_qty >= 0 and net.short_qty >= 0 for net in self.nets.values())

    def copy(self) -> Holdings:
        return Holdings.summed(self.nets, self.margin, self.count)

    def unrealized(self, quotes: dict[str, Quote]) -> Decimal:
        """The unrealised PnL at `quotes`; a market without a quote counts as at its entry prices (none)."""
        total = ZERO
        for symbol, net in self.nets.items():
            total = EXACT.add(total, net.value(quotes.get(symbol)))
        return total


def account_state(balance: Decimal, positions: Iterable[Exposed] | Holdings, quotes: dict[str, Quote],
                  used_margin: Decimal | None = None) -> Account:
    """The account marked to `quotes`, as the risk book checks it and clients see it (`GET /account`, the feed's
    snapshots and marks).

    Equity = balance + Σ unrealised PnL; free margin = equity − used margin; level = equity / used × 100.
    Used margin is Σ the positions' margins unless `used_margin` says otherwise (the risk book's, where a
    position whose close is in flight no longer counts).

    A position whose market has no quote is valued at its entry price (no unrealised PnL)."""
    held = positions if isinstance(positions, Holdings) else Holdings(positions)
    used = held.margin if used_margin is None else used_margin
    unrealized = held.unrealized(quotes)
    equity = balance + unrealized
    with localcontext() as wide:
        wide.prec = 60  # a tiny margin under a huge equity must not overflow the quantize
        level = (equity / used * HUNDRED).quantize(Decimal("0.01")) if used > 0 else None
    return Account(currency=CURRENCY, balance=money(balance), equity=money(equity), used_margin=money(used),
                   free_margin=money(equity - used), margin_level=level, unrealized_pnl=money(unrealized))


def stop_out_price(side: Side, qty: Decimal, entry: Decimal, equity: Decimal, used_margin: Decimal) -> Decimal | None:
    """The close price of a position at which the account reaches the stop-out level, other prices fixed.

    `equity` is the account's equity with the position at `entry` (no PnL yet) and `used_margin` includes
    its margin: equity + pnl(p) = STOP_OUT_LEVEL% × used_margin. None when it can never happen."""
    if qty <= 0:
        return None
    cushion = (equity - used_margin * STOP_OUT_LEVEL / HUNDRED) / qty
    price = entry - cushion if side == "long" else entry + cushion
    return price if price > 0 else None


# --- order rules -----------------------------------------------------------------------------------------


def check_order(market: Market, side: str, qty: Decimal, leverage: int) -> None:
    """Reject (422, with a precise code) an order that breaks the market's contract terms."""
    if side not in ("long", "short"):
        raise Rejected("The side must be long or short.", code="invalid_side", details={"field": "side"})
    if not qty.is_finite() or qty <= 0:
        raise Rejected("The quantity must be positive.", code="invalid_quantity", details={"field": "qty"})
    if qty < market.min_qty:
        raise Rejected(f"The minimum quantity for {market.symbol} is {market.min_qty}.", code="quantity_too_small",
                       details={"field": "qty", "min_qty": str(market.min_qty)})
    if not is_multiple(qty, market.qty_step):
        raise Rejected(f"The quantity must be a multiple of {market.qty_step}.", code="invalid_quantity_step",
                       details={"field": "qty", "qty_step": str(market.qty_step)})
    if not 1 <= leverage <= market.max_leverage:
        raise Rejected(f"The leverage for {market.symbol} is 1 to {market.max_leverage}.", code="invalid_leverage",
                       details={"field": "leverage", "max_leverage": market.max_leverage})


def check_margin(required: Decimal, free_margin: Decimal) -> None:
    """Reject (422) an order whose margin is more than the account's free margin."""
    if required > free_margin:
        raise Rejected(f"This order needs {required} of margin; the free margin is {free_margin}.",
                       code="insufficient_margin",
                       details={"required_margin": str(required), "free_margin": str(free_margin)})


def check_close(market: Market, open_qty: Decimal, qty: Decimal) -> None:
    """Reject (422) closing `qty` of an open position of `open_qty`: above 0, at most all of it, whole steps,
    and never leaving less than the market's minimum open."""
    if not qty.is_finite() or qty <= 0 or qty > open_qty:
        raise Rejected(f"The quantity to close must be above 0 and at most {open_qty}.",
                       code="invalid_quantity", details={"field": "qty"})
    if not is_multiple(qty, market.qty_step):
        raise Rejected(f"The quantity must be a multiple of {market.qty_step}.", code="invalid_quantity_step",
                       details={"field": "qty"})
    if 0 < open_qty - qty < market.min_qty:
        raise Rejected(f"That would leave less than the minimum {market.min_qty}; close it all instead.",
                       code="quantity_too_small", details={"field": "qty"})


def check_stops(side: Side, reference: Decimal, stop_loss: Decimal | None, take_profit: Decimal | None,
                market: Market) -> None:
    """Stop-loss below and take-profit above a long's reference price (the other way round for a short)."""
    for name, value in (("stop_loss", stop_loss), ("take_profit", take_profit)):
        if value is None:
            continue
        if not value.is_finite() or value <= 0:
            raise Rejected(f"The {name.replace('_', '-')} must be a positive price.", code=f"invalid_{name}",
                           details={"field": name})
        if not is_multiple(value, market.price_tick):
            raise Rejected(f"Prices for {market.symbol} are multiples of {market.price_tick}.",
                           code=f"invalid_{name}", details={"field": name, "price_tick": str(market.price_tick)})
    if stop_loss is not None and (stop_loss >= reference if side == "long" else stop_loss <= reference):
        where = "below" if side == "long" else "above"
        raise Rejected(f"A {side}'s stop-loss must be {where} {reference}.", code="invalid_stop_loss",
                       details={"field": "stop_loss", "reference_price": str(reference)})
    if take_profit is not None and (take_profit <= reference if side == "long" else take_profit >= reference):
        where = "above" if side == "long" else "below"
        raise Rejected(f"A {side}'s take-profit must be {where} {reference}.", code="invalid_take_profit",
                       details={"field": "take_profit", "reference_price": str(reference)})


def stop_trigger(side: Side, stop_loss: Decimal | None, take_profit: Decimal | None,
                 quote: Quote) -> Literal["stop_loss", "take_profit"] | None:
    """Which stop a quote hits: a long is checked on the bid, a short on the ask; stop-loss first."""
    price = close_price(side, quote)
    if side == "long":
        if stop_loss is not None and price <= stop_loss:
            return "stop_loss"
        if take_profit is not None and price >= take_profit:
            return "take_profit"
    else:
        if stop_loss is not None and price >= stop_loss:
            return "stop_loss"
        if take_profit is not None and price <= take_profit:
            return "take_profit"
    return None


# --- pending orders, trailing stops, slippage ------------------------------------------------------------


def order_triggered(side: Side, order_type: Literal["limit", "stop"], price: Decimal, quote: Quote) -> bool:
    """Whether `quote` triggers a pending order: a long fills at the ask, so a long limit triggers once the ask
    is at or below its price and a long stop once it is at or above; a short fills at the bid, so a short limit
    triggers once the bid is at or above its price and a short stop once it is at or below."""
    fill = open_price(side, quote)
    buys_lower = (side == "long") == (order_type == "limit")
    return fill <= price if buys_lower else fill >= price


def check_order_price(price: Decimal, market: Market) -> None:
    """Reject (422) an order price off the market's tick. A price the market is already past is allowed: the
    order then triggers at the next quote, as MT5 and cTrader do for a stop placed through the market."""
    if not price.is_finite() or price <= 0:
        raise Rejected("The order price must be a positive price.", code="invalid_price", details={"field": "price"})
    if not is_multiple(price, market.price_tick):
        raise Rejected(f"Prices for {market.symbol} are multiples of {market.price_tick}.", code="invalid_price",
                       details={"field": "price", "price_tick": str(market.price_tick)})


def check_trailing(side: Side, distance: Decimal | None, reference: Decimal, market: Market) -> None:
    """Reject (422) a trailing distance that is not a positive whole number of ticks, or that would put a
    long's stop-loss at or below zero at `reference` (the price it would close at now)."""
    if distance is None:
        return
    if not distance.is_finite() or distance <= 0 or not is_multiple(distance, market.price_tick):
        raise Rejected(f"The trailing distance must be a positive multiple of {market.price_tick}.",
                       code="invalid_trailing_distance",
                       details={"field": "trailing_distance", "price_tick": str(market.price_tick)})
    if side == "long" and distance >= reference:
        raise Rejected(f"A long's trailing distance must be below the price it would close at ({reference}).",
                       code="invalid_trailing_distance",
                       details={"field": "trailing_distance", "reference_price": str(reference)})


def trailed_stop(side: Side, distance: Decimal, quote: Quote, stop_loss: Decimal | None) -> Decimal | None:
    """Where a trailing stop-loss goes at `quote`: `distance` behind the price it would close at (bid − d for a
    long, ask + d for a short), if that is further in the position's favour than `stop_loss`; else None."""
    if side == "long":
        level = quote.bid - distance
        return level if level > 0 and (stop_loss is None or level > stop_loss) else None
    level = quote.ask + distance
    return level if stop_loss is None or level < stop_loss else None


def further_stop(side: Side, one: Decimal | None, other: Decimal | None) -> Decimal | None:
    """Of two stop-losses of a position, the one further in its favour (higher for a long, lower for a short)."""
    if one is None or other is None:
        return other if one is None else one
    return max(one, other) if side == "long" else min(one, other)


def check_slippage(side: Side, fill: Decimal, expected: Decimal | None, deviation: Decimal | None) -> None:
    """Reject (422 `price_moved`) a fill worse than `expected` by more than `deviation` (a buy above it, a sell
    below it). Both or neither must be given."""
    if expected is None and deviation is None:
        return
    if expected is None or deviation is None:
        missing = "expected_price" if expected is None else "max_deviation"
        raise Rejected("Give expected_price and max_deviation together.", code="invalid_slippage",
                       details={"field": missing})
    if deviation < 0:
        raise Rejected("max_deviation must be zero or more.", code="invalid_slippage",
                       details={"field": "max_deviation"})
    worse_by = fill - expected if side == "long" else expected - fill
    if worse_by > deviation:
        raise Rejected(f"The price moved: it would fill at {fill}, {worse_by} worse than {expected} (at most "
                       f"{deviation} allowed). Check the price and send the order again.", code="price_moved",
                       details={"price": str(fill), "expected_price": str(expected),
                                "max_deviation": str(deviation)})
