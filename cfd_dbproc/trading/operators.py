"""What operators ask of the dbproc: users with their balances, disabling a user, the broker's exposure."""

from __future__ import annotations

import uuid
from decimal import Decimal

from piccolo.query import WhereRaw

from cfd_dbproc.commands import apply_once
from cfd_dbproc.db.tables import Users
from cfd_dbproc.directory import DirectoryKeeper
from cfd_dbproc.trading.quotes import QuoteCache
from cfd_dbproc.trading.store import TradingStore, parse_id
from shared import operations as ops
from shared.bus.rpc import handles
from shared.contracts.bus import ExposureQuery, SetDisabledCommand, UsersQuery, UserStatus
from shared.contracts.rest import MarketExposure, UserSummary
from shared.errors import NotFound
from shared.trading import close_price, money, plain, pnl


class OperatorHandlers:
    def __init__(self, store: TradingStore, quotes: QuoteCache, directory: DirectoryKeeper) -> None:
        self.store = store
        self.quotes = quotes
        self.directory = directory

    @handles(ops.USERS)
    async def users(self, query: UsersQuery) -> list[UserSummary]:
        select = Users.select(Users.id, Users.email, Users.name, Users.disabled, Users.created_at)
        if query.search:
            term = query.search.strip().lower()
            try:
                select = select.where(Users.id == uuid.UUID(term))
            except ValueError:
                literal = term.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")  # not wildcards
                select = select.where(WhereRaw("email LIKE {} ESCAPE '\\'", f"%{literal}%"))
        rows = await select.order_by(Users.created_at, ascending=False).limit(max(1, min(query.limit, 1000))).run()
        ids = [r["id"] for r in rows]
        balances = await self.store.balances(ids)
        counts = await self.store.open_counts(ids)
        return [UserSummary(id=str(r["id"]), email=r["email"], name=r["name"],
                            status="disabled" if r["disabled"] else "active", created_at=r["created_at"],
                            balance=money(balances.get(r["id"], Decimal(0))), open_positions=counts.get(r["id"], 0))
                for r in rows]

    @handles(ops.SET_DISABLED)
    async def set_disabled(self, command: SetDisabledCommand, command_id: str) -> UserStatus:
        user_id = parse_id(command.user_id, "user")

        async def apply() -> UserStatus:
            if not await Users.exists().where(Users.id == user_id).run():
                raise NotFound("No such user.", code="user_not_found")
            await Users.update({Users.disabled: command.disabled}).where(Users.id == user_id).run()
            return UserStatus(user_id=command.user_id, disabled=command.disabled)

        done = await apply_once(self.store.db, ops.SET_DISABLED, command_id, command.user_id, apply)
        await self.directory.changed(user_id)
        return done

    @handles(ops.EXPOSURE)
    async def exposure(self, query: ExposureQuery) -> list[MarketExposure]:
        """The broker is every client's counterparty: per market, the clients' long and short quantity, and the
        unrealised PnL at the latest quotes (the broker's is its opposite)."""
        quotes = self.quotes.latest()
        per: dict[str, dict] = {}
        for e in await self.store.open_exposures():
            m = per.setdefault(e.symbol, {"long": Decimal(0), "short": Decimal(0), "pnl": Decimal(0), "n": 0})
            m[e.side] += e.qty
            m["n"] += 1
            quote = quotes.get(e.symbol)
            if quote is not None:
                m["pnl"] += pnl(e.side, e.qty, e.entry_price, close_price(e.side, quote))
        return [
            MarketExposure(symbol=s, long_qty=plain(m["long"]), short_qty=plain(m["short"]),
                           net_client_qty=plain(m["long"] - m["short"]), broker_net_qty=plain(m["short"] - m["long"]),
                           client_unrealized_pnl=money(m["pnl"]), broker_unrealized_pnl=money(-m["pnl"]),
                           open_positions=m["n"])
            for s, m in sorted(per.items())
        ]
