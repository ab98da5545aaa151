"""The trading engine: open, close, modify, risk closes and stop-out, each one transaction, applied once.

Requests arrive keyed by user, so one consumer applies one user's commands in order: the margin check of
an open cannot race another open of the same user. During a consumer-group rebalance two consumers can
briefly hold one partition, so each command also locks the user's account row for its whole transaction.
Every balance change is a ledger entry written in the same transaction; events go out after the commit.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Awaitable, Callable
from decimal import Decimal

import msgspec
from piccolo.query import WhereRaw

from cfd_dbproc.commands import apply_once, now_ms
from cfd_dbproc.directory import DirectoryKeeper
from cfd_dbproc.trading.quotes import QuoteCache
from shared.bus import Bus
from shared.contracts import BusRequest, encode
from shared.contracts_trading import (
    Account,
    AccountEvent,
    AccountQuery,
    CloseCommand,
    DepositCommand,
    LedgerEntry,
    LedgerQuery,
    MarketExposure,
    ModifyCommand,
    OpenCommand,
    Position,
    PositionEvent,
    PositionQuery,
    PositionsQuery,
    RiskCloseCommand,
    SetDisabledCommand,
    StopOutCommand,
    UsersQuery,
    UserSummary,
)
from shared.db import Database
from shared.db.tables import Accounts, LedgerEntries, Positions, Users
from shared.errors import BackendDown, Conflict, NotFound, Rejected
from shared.numbers import MAX_BALANCE
from shared.outage import Outage
from shared.paging import MAX_PAGE, Cursor, decode_cursor
from shared.trading import (
    MONEY_QUANTUM,
    STOP_OUT_LEVEL,
    Exposure,
    account_snapshot,
    check_close,
    check_margin,
    check_order,
    check_stops,
    close_price,
    closing,
    exposure_of,
    is_multiple,
    margin,
    money,
    open_price,
    plain,
    pnl,
    stop_trigger,
)

log = logging.getLogger(__name__)


def position_from_row(row: dict, *, with_user: bool = False) -> Position:
    return Position(
        id=str(row["id"]), symbol=row["symbol"], side=row["side"], qty=plain(row["qty"]),
        entry_price=plain(row["entry_price"]), leverage=row["leverage"], margin=money(row["margin"]),
        stop_loss=plain(row["stop_loss"]), take_profit=plain(row["take_profit"]), status=row["status"],
        opened_at=row["opened_at"], updated_at=row["updated_at"], closed_at=row["closed_at"],
        close_price=plain(row["close_price"]),
        realized_pnl=None if row["realized_pnl"] is None else money(row["realized_pnl"]),
        close_reason=row["close_reason"],
        parent_id=str(row["parent_id"]) if row["parent_id"] else None,
        user_id=str(row["user_id"]) if with_user else None,
    )


def _uuid(value: str, what: str) -> uuid.UUID:
    try:
        return uuid.UUID(value)
    except ValueError:
        raise NotFound(f"No such {what}.", code=f"{what}_not_found") from None


class TradingEngine:
    def __init__(self, db: Database, bus: Bus, events_topic: str, quotes: QuoteCache) -> None:
        self.db = db
        self.bus = bus
        self.events_topic = events_topic
        self.quotes = quotes
        self.events_lost = Outage("account events cannot be published (the state is committed; clients see it at "
                                  "their next snapshot)", log)

    # --- reading state inside a transaction ---------------------------------------------------------------

    async def _balance(self, user_id: uuid.UUID) -> Decimal:
        row = await Accounts.select(Accounts.balance).where(Accounts.user_id == user_id).first().run()
        if row is None:
            raise NotFound("No trading account for this user.", code="account_not_found")
        return money(row["balance"])

    async def _open_positions(self, user_id: uuid.UUID) -> list[Position]:
        rows = await Positions.select().where(
            (Positions.user_id == user_id) & (Positions.status == "open")
        ).order_by(Positions.opened_at).run()
        return [position_from_row(r) for r in rows]

    async def _position(self, user_id: uuid.UUID, position_id: str) -> Position:
        pid = _uuid(position_id, "position")
        row = await Positions.select().where((Positions.id == pid) & (Positions.user_id == user_id)).first().run()
        if row is None:  # another user's position is "not found", never "forbidden"
            raise NotFound("No such position.", code="position_not_found")
        return position_from_row(row)

    async def _exposures(self, user_id: uuid.UUID) -> list[Exposure]:
        """Just what the margin maths needs of the user's open positions (cheaper than whole rows)."""
        rows = await Positions.select(Positions.symbol, Positions.side, Positions.qty, Positions.entry_price,
                                      Positions.margin).where(
            (Positions.user_id == user_id) & (Positions.status == "open")).run()
        return [Exposure(r["symbol"], r["side"], r["qty"], r["entry_price"], r["margin"]) for r in rows]

    async def _lock_account(self, user_id: str) -> None:
        """Hold the user's account row until the command commits (`SELECT ... FOR UPDATE`).

        One partition orders one user's commands, but during a consumer-group rebalance two dbprocs can hold
        it at once: the second one's command then waits here and reads the balance the first one wrote,
        instead of overwriting it with one it read before. SQLite needs no lock: its transactions are
        exclusive from their start (`BEGIN IMMEDIATE`, see `Database.transaction`)."""
        if not self.db.is_sqlite:
            await Accounts.select(Accounts.id).where(Accounts.user_id == _uuid(user_id, "account")).lock_rows().run()

    async def _book(self, user_id: uuid.UUID, kind: str, amount: Decimal, balance: Decimal, reference: str,
                    command_id: str, at: int) -> Decimal:
        """Add a ledger entry and move the balance; returns the new balance."""
        new_balance = money(balance + amount)
        await LedgerEntries.insert(LedgerEntries(
            id=uuid.uuid4(), user_id=user_id, kind=kind, amount=money(amount), balance_after=new_balance,
            reference=reference, command_id=command_id, created_at=at,
        )).run()
        await Accounts.update({Accounts.balance: new_balance}).where(Accounts.user_id == user_id).run()
        return new_balance

    async def _realize(self, user_id: uuid.UUID, realized: Decimal, balance: Decimal, reference: str,
                       command_id: str, at: int) -> Decimal:
        """Book a realised PnL; a loss beyond the balance is a shortfall entry, so the balance never goes below
        zero. Returns the new balance."""
        balance = await self._book(user_id, "realized_pnl", realized, balance, reference, command_id, at)
        if balance < 0:
            balance = await self._book(user_id, "shortfall", -balance, balance, reference, command_id, at)
        return balance

    async def _unbooked_pnl(self, position_id: str) -> Decimal:
        row = await Positions.select(Positions.unbooked_pnl).where(Positions.id == uuid.UUID(position_id)).first().run()
        return Decimal(0) if row is None or row["unbooked_pnl"] is None else row["unbooked_pnl"]

    async def _close(self, user_id: uuid.UUID, position: Position, qty: Decimal, price: Decimal, reason: str,
                     balance: Decimal, command_id: str) -> tuple[Position, Decimal]:
        at = now_ms()
        whole = qty == position.qty
        closed_id = position.id if whole else str(uuid.uuid4())
        done = closing(position.side, position.qty, qty, position.entry_price, position.leverage, position.margin,
                       await self._unbooked_pnl(position.id), price)
        balance = await self._realize(user_id, done.realized, balance, closed_id, command_id, at)
        closed_fields = {"status": "closed", "closed_at": at, "close_price": price, "realized_pnl": done.realized,
                         "close_reason": reason, "updated_at": at}
        if whole:
            await Positions.update({**{getattr(Positions, k): v for k, v in closed_fields.items()},
                                    Positions.unbooked_pnl: done.unbooked}).where(
                Positions.id == uuid.UUID(position.id)).run()
            return msgspec.structs.replace(position, **closed_fields), balance
        # A partial close: the closed part becomes its own closed row; the open one shrinks and carries what
        # rounding the PnL to cents did not book.
        part = msgspec.structs.replace(position, id=closed_id, qty=qty, margin=done.released_margin,
                                       parent_id=position.id, **closed_fields)
        await Positions.insert(Positions(
            id=uuid.UUID(part.id), user_id=user_id, symbol=part.symbol, side=part.side, qty=part.qty,
            entry_price=part.entry_price, leverage=part.leverage, margin=part.margin, stop_loss=part.stop_loss,
            take_profit=part.take_profit, status="closed", opened_at=part.opened_at, updated_at=at, closed_at=at,
            close_price=price, realized_pnl=done.realized, close_reason=reason, parent_id=uuid.UUID(position.id),
            unbooked_pnl=Decimal(0),
        )).run()
        await Positions.update({Positions.qty: position.qty - qty, Positions.margin: done.remaining_margin,
                                Positions.unbooked_pnl: done.unbooked, Positions.updated_at: at}).where(
            Positions.id == uuid.UUID(position.id)).run()
        return part, balance

    async def _emit(self, user_id: str, *events: PositionEvent | AccountEvent) -> None:
        for event in events:
            try:
                await self.bus.publish(self.events_topic, encode(event), key=user_id.encode(), wait=False)
            except Exception as exc:  # events are notifications; the state is already committed
                self.events_lost.failed(exc.details.get("reason", exc) if isinstance(exc, BackendDown) else exc)

    async def _snapshot_event(self, user_id: str, balance: Decimal) -> AccountEvent:
        positions = await self._exposures(uuid.UUID(user_id))
        return AccountEvent(event="snapshot", user_id=user_id,
                            account=account_snapshot(balance, positions, self.quotes.latest()))

    async def _open_position(self, user_id: uuid.UUID, position_id: str) -> Position:
        position = await self._position(user_id, position_id)
        if position.status != "open":
            raise Conflict("This position is already closed.", code="position_closed")
        return position

    async def _apply(self, request: BusRequest, user_id: str, apply: Callable[[list], Awaitable[bytes]]) -> bytes:
        """Apply a command once (one transaction); its events go out after the commit."""
        events: list[PositionEvent | AccountEvent] = []
        replayed = True

        async def first_time() -> bytes:
            nonlocal replayed
            replayed = False
            return await apply(events)

        reply = await apply_once(self.db, request, user_id, first_time, lock=lambda: self._lock_account(user_id))
        if replayed:  # the first attempt may have died between its commit and its events
            events = [AccountEvent(event="resync", user_id=user_id)]
        await self._emit(user_id, *events)
        return reply

    # --- commands -----------------------------------------------------------------------------------------

    async def open(self, request: BusRequest) -> bytes:
        command = msgspec.json.decode(request.body, type=OpenCommand)
        order = command.order
        user_id = _uuid(command.user_id, "account")

        async def apply(events: list) -> bytes:
            market, quote = self.quotes.quote(order.symbol)
            check_order(market, order.side, order.qty, order.leverage)
            fill = open_price(order.side, quote)
            check_stops(order.side, fill, order.stop_loss, order.take_profit, market)
            balance = await self._balance(user_id)
            positions = await self._exposures(user_id)
            account = account_snapshot(balance, positions, self.quotes.latest())
            needed = margin(order.qty, fill, order.leverage)
            check_margin(needed, account.free_margin)
            at = now_ms()
            position = Position(
                id=str(uuid.uuid4()), symbol=order.symbol, side=order.side, qty=plain(order.qty), entry_price=fill,
                leverage=order.leverage, margin=needed, stop_loss=plain(order.stop_loss),
                take_profit=plain(order.take_profit),
                status="open", opened_at=at, updated_at=at,
            )
            await Positions.insert(Positions(
                id=uuid.UUID(position.id), user_id=user_id, symbol=position.symbol, side=position.side,
                qty=position.qty, entry_price=fill, leverage=position.leverage, margin=needed,
                stop_loss=position.stop_loss, take_profit=position.take_profit, status="open", opened_at=at,
                updated_at=at,
            )).run()
            events.append(PositionEvent(event="opened", user_id=command.user_id, position=position, balance=balance))
            events.append(AccountEvent(event="snapshot", user_id=command.user_id,
                                       account=account_snapshot(balance, [*positions, exposure_of(position)],
                                                             self.quotes.latest())))
            return encode(position)

        return await self._apply(request, command.user_id, apply)

    async def close(self, request: BusRequest) -> bytes:
        command = msgspec.json.decode(request.body, type=CloseCommand)
        user_id = _uuid(command.user_id, "account")

        async def apply(events: list) -> bytes:
            position = await self._open_position(user_id, command.position_id)
            market, quote = self.quotes.quote(position.symbol)
            qty = position.qty if command.qty is None else command.qty
            check_close(market, position.qty, qty)
            balance = await self._balance(user_id)
            closed, balance = await self._close(user_id, position, qty, close_price(position.side, quote), "manual",
                                                balance, request.command_id)
            events.append(PositionEvent(event="closed", user_id=command.user_id, position=closed, balance=balance))
            if closed.id != position.id:
                remaining = await self._position(user_id, position.id)
                events.append(PositionEvent(event="updated", user_id=command.user_id, position=remaining,
                                            balance=balance))
            events.append(await self._snapshot_event(command.user_id, balance))
            return encode(closed)

        return await self._apply(request, command.user_id, apply)

    async def modify(self, request: BusRequest) -> bytes:
        command = msgspec.json.decode(request.body, type=ModifyCommand)
        user_id = _uuid(command.user_id, "account")

        async def apply(events: list) -> bytes:
            position = await self._open_position(user_id, command.position_id)
            market, quote = self.quotes.quote(position.symbol)
            update = command.update
            stop_loss = position.stop_loss if update.stop_loss is msgspec.UNSET else update.stop_loss
            take_profit = position.take_profit if update.take_profit is msgspec.UNSET else update.take_profit
            check_stops(position.side, close_price(position.side, quote), stop_loss, take_profit, market)
            at = now_ms()
            await Positions.update({Positions.stop_loss: stop_loss, Positions.take_profit: take_profit,
                                    Positions.updated_at: at}).where(Positions.id == uuid.UUID(position.id)).run()
            updated = msgspec.structs.replace(position, stop_loss=stop_loss, take_profit=take_profit, updated_at=at)
            events.append(PositionEvent(event="updated", user_id=command.user_id, position=updated,
                                        balance=await self._balance(user_id)))
            return encode(updated)

        return await self._apply(request, command.user_id, apply)

    async def risk_close(self, request: BusRequest) -> bytes:
        """A stop-loss or take-profit hit: close at the triggering tick's price, if still open."""
        command = msgspec.json.decode(request.body, type=RiskCloseCommand)
        user_id = _uuid(command.user_id, "account")

        async def apply(events: list) -> bytes:
            position = await self._position(user_id, command.position_id)
            if position.status != "open" or stop_trigger(position.side, position.stop_loss, position.take_profit,
                                                         command.quote) != command.reason:
                return encode(position)  # closed meanwhile, or its stops were moved since the tick
            balance = await self._balance(user_id)
            closed, balance = await self._close(user_id, position, position.qty, command.price, command.reason,
                                                balance, request.command_id)
            events.append(PositionEvent(event="closed", user_id=command.user_id, position=closed, balance=balance))
            events.append(await self._snapshot_event(command.user_id, balance))
            return encode(closed)

        return await self._apply(request, command.user_id, apply)

    async def stop_out(self, request: BusRequest) -> bytes:
        """Close the worst losing position first until the margin level is back at the stop-out level."""
        command = msgspec.json.decode(request.body, type=StopOutCommand)
        user_id = _uuid(command.user_id, "account")
        quotes = {q.symbol: q for q in command.quotes}

        async def apply(events: list) -> bytes:
            balance = await self._balance(user_id)
            positions = await self._open_positions(user_id)
            closed_ids: list[str] = []
            while positions:
                account = account_snapshot(balance, [exposure_of(p) for p in positions], quotes)
                if account.margin_level is None or account.margin_level >= STOP_OUT_LEVEL:
                    break
                priced = [p for p in positions if p.symbol in quotes]
                if not priced:
                    break
                worst = min(priced, key=lambda p: pnl(p.side, p.qty, p.entry_price,
                                                      close_price(p.side, quotes[p.symbol])))
                closed, balance = await self._close(user_id, worst, worst.qty,
                                                    close_price(worst.side, quotes[worst.symbol]), "stop_out",
                                                    balance, request.command_id)
                positions.remove(worst)
                closed_ids.append(closed.id)
                events.append(PositionEvent(event="closed", user_id=command.user_id, position=closed, balance=balance))
            if closed_ids:
                events.append(AccountEvent(event="stop_out", user_id=command.user_id,
                                           account=account_snapshot(balance, [exposure_of(p) for p in positions],
                                                                 quotes)))
            return encode({"closed": closed_ids})

        return await self._apply(request, command.user_id, apply)

    async def deposit(self, request: BusRequest) -> bytes:
        """An operator's deposit (or, negative, a withdrawal that cannot take the balance below zero)."""
        command = msgspec.json.decode(request.body, type=DepositCommand)
        user_id = _uuid(command.user_id, "account")

        async def apply(events: list) -> bytes:
            balance = await self._balance(user_id)
            amount = command.amount
            if not amount.is_finite() or amount == 0 or not is_multiple(amount, MONEY_QUANTUM):
                raise Rejected(f"The amount must be a non-zero number of whole cents (like 2500 or 99.50), not "
                               f"{amount}.", code="invalid_amount", details={"field": "amount"})
            if not 0 <= balance + amount <= MAX_BALANCE:
                limit = "below 0" if balance + amount < 0 else f"above {MAX_BALANCE:,f}"
                raise Rejected(f"This would take the balance of {money(balance)} {limit}.", code="invalid_amount",
                               details={"field": "amount", "balance": str(money(balance))})
            balance = await self._book(user_id, "deposit", command.amount, balance, "operator", request.command_id,
                                       now_ms())
            events.append(await self._snapshot_event(command.user_id, balance))
            return encode(await self._account_of(user_id, balance))

        return await self._apply(request, command.user_id, apply)

    # --- queries ------------------------------------------------------------------------------------------

    async def _account_of(self, user_id: uuid.UUID, balance: Decimal | None = None) -> Account:
        balance = await self._balance(user_id) if balance is None else balance
        return account_snapshot(balance, await self._exposures(user_id), self.quotes.latest())

    async def account(self, request: BusRequest) -> bytes:
        query = msgspec.json.decode(request.body, type=AccountQuery)
        return encode(await self._account_of(_uuid(query.user_id, "account")))

    async def positions(self, request: BusRequest) -> bytes:
        query = msgspec.json.decode(request.body, type=PositionsQuery)
        conditions = []
        if query.user_id is not None:
            conditions.append(Positions.user_id == _uuid(query.user_id, "account"))
        if query.status is not None:
            conditions.append(Positions.status == query.status)
        order, newest_first = ("closed", Positions.closed_at) if query.status == "closed" else (
            "opened", Positions.opened_at)
        if query.cursor is not None:
            conditions.append(self._after(decode_cursor(query.cursor, order), newest_first._meta.db_column_name))
        select = Positions.select()
        if conditions:
            select = select.where(*conditions)
        rows = await select.order_by(newest_first, Positions.id, ascending=False).limit(_page(query.limit)).run()
        return encode([position_from_row(r, with_user=query.user_id is None) for r in rows])

    async def position(self, request: BusRequest) -> bytes:
        query = msgspec.json.decode(request.body, type=PositionQuery)
        return encode(await self._position(_uuid(query.user_id, "account"), query.position_id))

    async def ledger(self, request: BusRequest) -> bytes:
        query = msgspec.json.decode(request.body, type=LedgerQuery)
        conditions = [LedgerEntries.user_id == _uuid(query.user_id, "account")]
        if query.cursor is not None:
            conditions.append(self._after(decode_cursor(query.cursor, "ledger"), "created_at"))
        rows = await LedgerEntries.select().where(*conditions).order_by(
            LedgerEntries.created_at, LedgerEntries.id, ascending=False).limit(_page(query.limit)).run()
        return encode([LedgerEntry(id=str(r["id"]), kind=r["kind"], amount=money(r["amount"]),
                                   balance_after=money(r["balance_after"]), reference=r["reference"],
                                   created_at=r["created_at"]) for r in rows])

    def _after(self, cursor: Cursor, column: str) -> WhereRaw:
        """Rows after `cursor` in a newest-first list ordered by `column` then id: one index range scan."""
        row_id = cursor.id if self.db.is_sqlite else uuid.UUID(cursor.id)  # SQLite stores UUIDs as text
        return WhereRaw(f"({column}, id) < ({{}}, {{}})", cursor.at, row_id)


def _page(limit: int) -> int:
    """A list's page size: up to one row more than the largest page, so the server can tell whether another
    page follows."""
    return max(1, min(limit, MAX_PAGE + 1))


class OperatorHandlers:
    """What operators ask of the dbproc: users with balances, disabling, the broker's exposure."""

    def __init__(self, engine: TradingEngine, directory: DirectoryKeeper) -> None:
        self.engine = engine
        self.directory = directory

    async def users(self, request: BusRequest) -> bytes:
        query = msgspec.json.decode(request.body, type=UsersQuery)
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
        balances = {r["user_id"]: r["balance"] for r in await Accounts.select(Accounts.user_id, Accounts.balance).where(
            Accounts.user_id.is_in(ids)).run()} if ids else {}
        counts: dict = {}
        if ids:
            for r in await Positions.select(Positions.user_id).where(
                    Positions.user_id.is_in(ids) & (Positions.status == "open")).run():
                counts[r["user_id"]] = counts.get(r["user_id"], 0) + 1
        return encode([UserSummary(id=str(r["id"]), email=r["email"], name=r["name"],
                                   status="disabled" if r["disabled"] else "active", created_at=r["created_at"],
                                   balance=money(balances.get(r["id"], Decimal(0))),
                                   open_positions=counts.get(r["id"], 0)) for r in rows])

    async def set_disabled(self, request: BusRequest) -> bytes:
        command = msgspec.json.decode(request.body, type=SetDisabledCommand)
        user_id = _uuid(command.user_id, "user")

        async def apply() -> bytes:
            if not await Users.exists().where(Users.id == user_id).run():
                raise NotFound("No such user.", code="user_not_found")
            await Users.update({Users.disabled: command.disabled}).where(Users.id == user_id).run()
            return encode({"user_id": command.user_id, "disabled": command.disabled})

        done = await apply_once(self.engine.db, request, command.user_id, apply)
        await self.directory.changed(user_id)
        return done

    async def exposure(self, request: BusRequest) -> bytes:
        quotes = self.engine.quotes.latest()
        rows = await Positions.select(Positions.symbol, Positions.side, Positions.qty, Positions.entry_price).where(
            Positions.status == "open").run()
        per: dict[str, dict] = {}
        for r in rows:
            m = per.setdefault(r["symbol"], {"long": Decimal(0), "short": Decimal(0), "pnl": Decimal(0), "n": 0})
            m[r["side"]] += r["qty"]
            m["n"] += 1
            quote = quotes.get(r["symbol"])
            if quote is not None:
                m["pnl"] += pnl(r["side"], r["qty"], r["entry_price"], close_price(r["side"], quote))
        return encode([
            MarketExposure(symbol=s, long_qty=plain(m["long"]), short_qty=plain(m["short"]),
                           net_client_qty=plain(m["long"] - m["short"]), broker_net_qty=plain(m["short"] - m["long"]),
                           client_unrealized_pnl=money(m["pnl"]), broker_unrealized_pnl=money(-m["pnl"]),
                           open_positions=m["n"])
            for s, m in sorted(per.items())
        ])
