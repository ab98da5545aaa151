"""What traders read of their trading state: the account marked to market, positions, the ledger, the account
events they missed and the state to start again from."""

from __future__ import annotations

from cfd_dbproc.trading.engine import TradingEngine
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


class TradingQueries:
    def __init__(self, engine: TradingEngine) -> None:
        self.engine = engine
        self.store = engine.store

    @handles(ops.ACCOUNT)
    async def account(self, query: AccountQuery) -> Account:
        return await self.engine.account_of(parse_id(query.user_id, "account"))

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
