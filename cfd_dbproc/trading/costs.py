"""Booking trading costs: the commission of each fill and the overnight financing of each open position.

Each is a ledger entry referencing the position row it was charged to, written in the transaction of the
command that charged it, and added to what that row has paid (`positions.commission`, `positions.financing`).
Amounts are booked in cents; what rounding leaves is carried on the row to its next booking of the same kind
(`shared.costs.carried`), so nothing is gained by slicing.

Financing is settled per rollover: a position pays every rollover it was open at, once, because the row keeps
the last rollover it paid for (`financed_until`). The financing job settles every open position after each
rollover (`cfd_dbproc/trading/financing.py`); a close settles what its position still owes first, so a position
closed between a rollover and the job still pays it.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from decimal import Decimal

import msgspec

from cfd_dbproc.trading.quotes import QuoteCache
from cfd_dbproc.trading.store import TradingStore
from shared.clock import now_ms
from shared.contracts.rest import Position
from shared.costs import carried, commission, daily_financing, last_rollover, rollovers_between
from shared.markets import Market
from shared.trading import money


class Costs:
    def __init__(self, store: TradingStore, quotes: QuoteCache, rollover_minute: int,
                 clock: Callable[[], int] = now_ms) -> None:
        self.store = store
        self.quotes = quotes
        self.rollover_minute = rollover_minute
        self.clock = clock

    def due(self) -> int:
        """The latest rollover by this dbproc's clock: what every open position should have paid up to."""
        return last_rollover(self.clock(), self.rollover_minute)

    @staticmethod
    def opening(market: Market, qty: Decimal, price: Decimal) -> tuple[Decimal, Decimal]:
        """The commission an opening books, in cents, and the rest its position carries."""
        return carried(commission(market, qty, price), Decimal(0))

    async def closing(self, position: Position, qty: Decimal, price: Decimal) -> tuple[Decimal, Decimal]:
        """The commission closing `qty` of `position` at `price` books, with what the position carried, in
        cents; and the rest left to carry."""
        carries = await self.store.cost_carries(position.id)
        market = self.quotes.markets.market_of(position.symbol)
        return carried(commission(market, qty, price), carries.commission)

    async def charge(self, user_id: uuid.UUID, position_id: str, fee: Decimal, balance: Decimal, command_id: str,
                     at: int) -> Decimal:
        """Book a commission of `fee` (in cents) charged to the row `position_id`; returns the new balance
        (which may be below zero: a close books its shortfall after its commission)."""
        if fee == 0:
            return balance
        return await self.store.book(user_id, "commission", -fee, balance, position_id, command_id, at)

    async def settle_financing(self, user_id: uuid.UUID, position: Position, balance: Decimal, command_id: str,
                               through: int | None = None) -> tuple[Position, Decimal]:
        """Charge (or credit) `position` the financing of every rollover after the last one it paid for, up to
        `through` (default: the latest one): one ledger entry per rollover, on the position's notional at the
        mid of the latest quote of its market (its entry price while there is none). A charge that takes the
        balance below zero is made good by a shortfall entry, as a loss is. Returns the position (its
        `financing` updated) and the balance."""
        through = self.due() if through is None else through
        carries = await self.store.cost_carries(position.id)
        days = rollovers_between(carries.financed_until, through, self.rollover_minute)
        if not days:
            return position, balance
        market = self.quotes.markets.market_of(position.symbol)
        quote = self.quotes.latest().get(position.symbol)
        price = quote.mid if quote is not None else position.entry_price
        per_day = daily_financing(market, position.side, position.qty, price)
        at = self.clock()
        paid, carry = Decimal(0), carries.financing
        for _ in days:
            amount, carry = carried(per_day, carry)
            if amount != 0:
                balance = await self.store.book(user_id, "financing", -amount, balance, position.id, command_id, at)
                paid += amount
        if balance < 0:
            balance = await self.store.book(user_id, "shortfall", -balance, balance, position.id, command_id, at)
        financing = money(position.financing + paid)
        await self.store.update(position.id, financing=financing, unbooked_financing=carry, financed_until=days[-1])
        return msgspec.structs.replace(position, financing=financing), balance
