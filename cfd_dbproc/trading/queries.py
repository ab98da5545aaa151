"""What traders read of their trading state: the account marked to market, positions, the ledger, the account
events they missed and the state to start again from."""

from __future__ import annotations

from decimal import Decimal

from cfd_dbproc.trading.engine import TradingEngine
from cfd_dbproc.trading.risk_runner import RiskRunner
from cfd_dbproc.trading.store import parse_id
from shared import operations as ops
from shared.bus.rpc import handles
from shared.contracts.bus import (
    AccountEventsPage,
    AccountEventsQuery,
    AccountQuery,
    AccountStateQuery,
    LedgerQuery,
    PositionQuery,
    PositionsQuery,
)
from shared.contracts.events import AccountState
from shared.contracts.rest import Account, LedgerEntry, Position
from shared.trading import Holdings, account_state

BOOK_WAIT_SECONDS = 0.2
"""How long `GET /account` waits for the risk book to hold a command just committed before reading the database."""


class TradingQueries:
    def __init__(self, engine: TradingEngine, risk: RiskRunner | None = None) -> None:
        """With `risk`, the account is read from the risk engine's book when it holds the user (see `account`)."""
        self.engine = engine
        self.store = engine.store
        self.risk = risk
        self.from_book = 0
        """Accounts answered from the book, not the database (a metric)."""

    @handles(ops.ACCOUNT)
    async def account(self, query: AccountQuery) -> Account:
        """The account marked to the latest quotes. The risk book of the dbproc that owns the user holds their
        balance and open positions in memory (it checks them on every tick); once it holds the events of every
        command this engine has committed for the user, the answer comes from there, with no query and the same
        arithmetic, whatever the positions held. Otherwise (a user the book does not hold, such as one with no
        position; a book behind for longer than `BOOK_WAIT_SECONDS`) from the database."""
        uid = parse_id(query.user_id, "account")
        holdings = await self._book_holdings(query.user_id)
        if holdings is None:
            return await self.engine.account_of(uid)
        self.from_book += 1
        balance, held = holdings
        return account_state(balance, held, self.engine.quotes.latest())

    async def _book_holdings(self, user_id: str) -> tuple[Decimal, Holdings] | None:
        if self.risk is None:
            return None
        committed = self.engine.committed.get(user_id)
        if committed is not None and not self.risk.applied.reached({user_id: committed}):
            try:
                await self.risk.applied.wait({user_id: committed}, BOOK_WAIT_SECONDS)
            except TimeoutError:
                return None
        return self.risk.book.holdings(user_id)

    @handles(ops.POSITIONS)
    async def positions(self, query: PositionsQuery) -> list[Position]:
        return await self.store.positions_page(query)

    @handles(ops.POSITION)
    async def position(self, query: PositionQuery) -> Position:
        return await self.store.position(parse_id(query.user_id, "account"), query.position_id)

    @handles(ops.LEDGER)
    async def ledger(self, query: LedgerQuery) -> list[LedgerEntry]:
        return await self.store.ledger_page(query)

    @handles(ops.ACCOUNT_EVENTS)
    async def account_events(self, query: AccountEventsQuery) -> AccountEventsPage:
        return await self.store.events_after(parse_id(query.user_id, "account"), query.since, query.limit)

    @handles(ops.ACCOUNT_STATE)
    async def account_state(self, query: AccountStateQuery) -> AccountState:
        """The account, its open positions and working orders as of its latest event: read with the account row
        held, so no command of the user commits in between and the events after `seq` are exactly what follows."""
        user_id = parse_id(query.user_id, "account")
        async with self.store.db.transaction():
            await self.store.lock_account(query.user_id)
            seq = await self.store.latest_seq(user_id)
            account = await self.engine.account_of(user_id)
            positions = await self.store.open_positions(user_id)
            orders = await self.store.working_orders_of(user_id)
        return AccountState(seq=seq, account=account, positions=positions, orders=orders)
