"""What traders read of their trading state: the account marked to market, positions, the ledger."""

from __future__ import annotations

from cfd_dbproc.trading.engine import TradingEngine
from cfd_dbproc.trading.store import parse_id
from shared import operations as ops
from shared.bus.rpc import handles
from shared.contracts.bus import AccountQuery, LedgerQuery, PositionQuery, PositionsQuery
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
