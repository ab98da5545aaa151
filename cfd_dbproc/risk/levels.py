"""The maths behind the account index: per-market net exposure, safety budgets and threshold keys.

A user's equity is the balance plus, per market s, f_s = Lq·bid − Lc + Sc − Sq·ask (Lq, Lc: the quantity
and Σ qty × entry of the longs; Sq, Sc of the shorts), or 0 while s has no quote. Each f_s is linear in the
market's prices, so "the account reaches level λ" splits into one threshold per market (see docs/risk.md):
the current slack (equity − λ·used, or the reverse when watching a recovery) is shared out as budgets
b_s ≥ 0 with Σ b_s ≤ slack, and market s fires once f_s has moved by b_s against the watch. If no market
fired, Σ (f_s − f_s,ref) stayed within the slack, so the account did not reach λ: no false negatives.

Sums and products here are exact: the `EXACT` context has 100 significant digits and traps `Inexact`, so
a result that would need rounding raises instead (the book then refuses the input, or watches that user on
every tick). Each division rounds the way that makes the key fire earlier, never later.
"""

from __future__ import annotations

from decimal import ROUND_CEILING, ROUND_FLOOR, Context, Decimal
from typing import NamedTuple

from cfd_dbproc.risk.ladder import Series
from cfd_dbproc.risk.models import OpenPosition
from shared.contracts.quote import Quote
from shared.markets import MARKETS
from shared.trading import EXACT, ZERO, Net, plain

_EARLIER_UP = Context(prec=34, rounding=ROUND_CEILING)
_EARLIER_DOWN = Context(prec=34, rounding=ROUND_FLOOR)
HUNDRED = Decimal(100)
ALWAYS: tuple[Series, bool, Decimal] = ("bid", True, Decimal("-Infinity"))
"""A watch that fires on every tick of its market (bid ≥ −∞)."""


class Holding(NamedTuple):
    """One market of a user, as `thresholds` needs it."""

    symbol: str
    net: Net
    value: Decimal  # f_s at the market's current quote
    spread_lo: Decimal  # the spread allowance the keys may assume
    spread_hi: Decimal


Key = tuple[str, Series, bool, Decimal]
"""(symbol, series, fires when rising, key)."""


def thresholds(balance: Decimal, used: Decimal, markets: list[Holding], watches: list[tuple[Decimal, bool]],
               verified: bool) -> list[Key] | None:
    """The keys that watch a user's account: per watched (level %, rising), one key per market.

    A watch whose slack is already negative (the exact level is past it) gives None when `verified` is
    False (the user must be checked exactly first) and otherwise keys that fire on every tick of the user's
    markets (the rounded level is still on the safe side). `used` must be positive. Raises
    `decimal.Inexact` if the numbers do not fit the exact arithmetic."""
    ctx = EXACT
    equity = balance
    for m in markets:
        equity = ctx.add(equity, m.value)
    weights = [m.net.weight for m in markets]
    keys: list[Key] = []
    for level, rising in watches:
        boundary = ctx.divide(ctx.multiply(used, level), HUNDRED)
        slack = ctx.subtract(boundary, equity) if rising else ctx.subtract(equity, boundary)
        if slack < 0:
            if not verified:
                return None
            keys += [(m.symbol, *ALWAYS) for m in markets]
            continue
        for m, budget in zip(markets, split(slack, weights), strict=True):
            target = ctx.add(m.value, budget) if rising else ctx.subtract(m.value, budget)
            keys.append((m.symbol, *watch_key(m.net, target, rising, m.spread_lo, m.spread_hi)))
    return keys


def split(slack: Decimal, weights: list[Decimal]) -> list[Decimal]:
    """Budgets ≥ 0 in proportion to `weights`, rounded down so that they never add up to more than `slack`."""
    total = ZERO
    for w in weights:
        total = EXACT.add(total, w)
    if total <= 0:
        weights, total = [Decimal(1)] * len(weights), Decimal(len(weights))
    return [_EARLIER_DOWN.divide(EXACT.multiply(slack, w), total) for w in weights]


def watch_key(net: Net, target: Decimal, rising: bool, spread_lo: Decimal,
              spread_hi: Decimal) -> tuple[Series, bool, Decimal]:
    """Where to index "f_s may have reached `target`": (series, fires when rising, key).

    `rising` watches f_s ≥ target (a recovery), else f_s ≤ target (a fall). The key is a superset of the
    exact condition for every quote whose spread lies in [spread_lo, spread_hi]:
    net long  (Δ = Lq − Sq > 0): f = Δ·bid − Sq·spread + c, keyed on the bid;
    net short (Δ < 0):           f = −|Δ|·ask − Lq·spread + c, keyed on the ask;
    flat      (Δ = 0):           f = −Lq·spread + c, keyed on the spread, exactly.
    """
    ctx = EXACT
    c = ctx.subtract(net.short_cost, net.long_cost)
    delta = ctx.subtract(net.long_qty, net.short_qty)
    if delta > 0:
        allowance = spread_lo if rising else spread_hi
        num = ctx.add(ctx.subtract(target, c), ctx.multiply(net.short_qty, allowance))
        return "bid", rising, (_EARLIER_DOWN if rising else _EARLIER_UP).divide(num, delta)
    if delta < 0:
        allowance = spread_lo if rising else spread_hi
        num = ctx.subtract(ctx.subtract(c, target), ctx.multiply(net.long_qty, allowance))
        return "ask", not rising, (_EARLIER_UP if rising else _EARLIER_DOWN).divide(num, -delta)
    num = ctx.subtract(c, target)
    return "spread", not rising, (_EARLIER_UP if rising else _EARLIER_DOWN).divide(num, net.long_qty)


def level_price(side: str, net: Net, quote: Quote, equity: Decimal, used: Decimal, level: Decimal) -> Decimal | None:
    """The price a position of `side` in the market of `net` would close at when the account's margin level
    reached `level` % by that market's move alone (its spread and every other price as they are now).

    The account's equity moves with the market's prices through f_s alone: Δ·bid for a market held net long
    (Δ = Lq − Sq), −|Δ|·ask net short. So the bid (net long) falls, or the ask (net short) rises, by
    (equity − level·used) / |Δ|; a position closing on the other side of the book is that ± the spread. Given
    on the market's price tick: the first tick there at which the account is at or past the level. None when no
    price of the market gets there: held flat, no margin used, or a price at or below zero."""
    delta = net.long_qty - net.short_qty
    if delta == 0 or used <= 0:
        return None
    slack = equity - used * level / HUNDRED
    spread = quote.ask - quote.bid
    if delta > 0:
        bid = quote.bid - slack / delta
        price = bid if side == "long" else bid + spread
        rounding = ROUND_FLOOR
    else:
        ask = quote.ask + slack / -delta
        price = ask if side == "short" else ask - spread
        rounding = ROUND_CEILING
    market = MARKETS.get(quote.symbol)
    if market is not None:
        price = price.quantize(market.price_tick, rounding=rounding)
    return plain(price) if price > 0 else None


def stop_keys(p: OpenPosition) -> list[tuple[Series, bool, Decimal]]:
    """The stop-loss and take-profit of a position as crossing keys, exactly as `stop_trigger` reads them."""
    keys: list[tuple[Series, bool, Decimal]] = []
    if p.side == "long":  # closes at the bid: stop-loss when bid ≤ SL, take-profit when bid ≥ TP
        if p.stop_loss is not None:
            keys.append(("bid", False, p.stop_loss))
        if p.take_profit is not None:
            keys.append(("bid", True, p.take_profit))
    else:  # closes at the ask: stop-loss when ask ≥ SL, take-profit when ask ≤ TP
        if p.stop_loss is not None:
            keys.append(("ask", True, p.stop_loss))
        if p.take_profit is not None:
            keys.append(("ask", False, p.take_profit))
    return keys


def trail_key(p: OpenPosition) -> tuple[Series, bool, Decimal] | None:
    """Where a trailing stop-loss moves next: once the price it closes at is its distance past the stop (a
    long's bid ≥ stop + distance, a short's ask ≤ stop − distance). None for a position that does not trail."""
    if p.trailing_distance is None or p.stop_loss is None:
        return None
    if p.side == "long":
        return "bid", True, EXACT.add(p.stop_loss, p.trailing_distance)
    return "ask", False, EXACT.subtract(p.stop_loss, p.trailing_distance)
