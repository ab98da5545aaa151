"""Trading costs: the commission of a fill and the overnight financing of an open position, and the daily
rollover at which financing is charged.

Pure functions on `Decimal`, shared by the dbproc (which books them) and clients (which preview them).
`commission` and `daily_financing` are exact; an amount is rounded to cents (`shared.trading.money`) where it is
booked, as its own ledger entry, and what rounding leaves is carried on the position to its next booking of the
same kind (`carried`), as a partial close carries its PnL: so a position's fees add up to the exact fees of its
fills, and its financing to the exact financing of its days, to within half a cent, however it is sliced.
"""

from __future__ import annotations

from decimal import Decimal

from shared.errors import Rejected
from shared.markets import Market
from shared.trading import Side, check_margin, money

DAYS_PER_YEAR = Decimal(365)
DAY_MS = 86_400_000


def commission(market: Market, qty: Decimal, price: Decimal) -> Decimal:
    """The commission of a fill of `qty` at `price`: the notional × the market's rate (exact; never negative)."""
    return qty * price * market.commission_rate


def carried(exact: Decimal, carry: Decimal) -> tuple[Decimal, Decimal]:
    """What to book of an `exact` amount plus the `carry` rounding left before: (the amount in cents, the
    sub-cent rest to carry to the next booking)."""
    booked = money(exact + carry)
    return booked, exact + carry - booked


def check_affordable(required_margin: Decimal, fee: Decimal, free_margin: Decimal, balance: Decimal) -> None:
    """Reject (422) an order whose margin and commission together are more than the free margin, or whose
    commission is more than the balance it is paid from."""
    if fee == 0:
        check_margin(required_margin, free_margin)
        return
    if required_margin + fee > free_margin:
        raise Rejected(f"This order needs {required_margin} of margin and {fee} of commission; the free margin is "
                       f"{free_margin}.", code="insufficient_margin",
                       details={"required_margin": str(required_margin), "commission": str(fee),
                                "free_margin": str(free_margin)})
    if fee > balance:
        raise Rejected(f"This order's commission of {fee} is more than the balance of {balance}.",
                       code="insufficient_balance", details={"commission": str(fee), "balance": str(balance)})


def financing_rate(market: Market, side: Side) -> Decimal:
    """The yearly rate a position of `side` pays (negative: it is credited)."""
    return market.financing_long_rate if side == "long" else market.financing_short_rate


def daily_financing(market: Market, side: Side, qty: Decimal, price: Decimal) -> Decimal:
    """What one rollover charges a position of `qty` valued at `price`: notional × yearly rate / 365 (exact).
    Positive is charged, negative credited."""
    return qty * price * financing_rate(market, side) / DAYS_PER_YEAR


def rollover_at(minute_of_day: int) -> int:
    """Milliseconds after 00:00 UTC of the rollover at `minute_of_day` (0 to 1439)."""
    if not 0 <= minute_of_day < 1440:
        raise ValueError(f"a rollover is a minute of the day, 0 to 1439, not {minute_of_day}")
    return minute_of_day * 60_000


def last_rollover(now_ms: int, minute_of_day: int) -> int:
    """The latest rollover at or before `now_ms` (epoch ms)."""
    offset = rollover_at(minute_of_day)
    return (now_ms - offset) // DAY_MS * DAY_MS + offset


def next_rollover(now_ms: int, minute_of_day: int) -> int:
    """The first rollover after `now_ms`."""
    return last_rollover(now_ms, minute_of_day) + DAY_MS


def rollovers_between(after_ms: int, through_ms: int, minute_of_day: int) -> list[int]:
    """Every rollover in (`after_ms`, `through_ms`], oldest first: those a position financed up to `after_ms`
    still owes when financing is settled up to `through_ms`."""
    last = last_rollover(through_ms, minute_of_day)
    first = last_rollover(after_ms, minute_of_day) + DAY_MS
    return list(range(first, last + 1, DAY_MS))
