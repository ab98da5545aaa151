"""The trading engine: open, close, modify, risk closes and stop-out, each one transaction, applied once.

Requests arrive keyed by user, so one consumer applies one user's commands in order: the margin check of
an open cannot race another open of the same user. During a consumer-group rebalance two consumers can
briefly hold one partition, so each command also locks the user's account row for its whole transaction.
Every balance change is a ledger entry written in the same transaction; so is every event, numbered per user
(`seq`), which goes out after the commit.
The rules live here; `TradingStore` reads and writes the rows, `Costs` books commissions and financing.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Awaitable, Callable
from decimal import Decimal
from typing import Any, TypeVar

import msgspec

from cfd_dbproc.commands import apply_once
from cfd_dbproc.trading.costs import Costs
from cfd_dbproc.trading.quotes import QuoteCache
from cfd_dbproc.trading.store import TradingStore, parse_id
from shared import operations as ops
from shared.bus import Bus
from shared.bus.rpc import handles
from shared.contracts import encode
from shared.contracts.bus import (
    CloseAllCommand,
    CloseCommand,
    DepositCommand,
    FinancingCommand,
    MarginCallCommand,
    ModifyCommand,
    OpenCommand,
    RiskCloseCommand,
    StopOutCommand,
    TrailCommand,
)
from shared.contracts.events import AccountEvent, Event, PositionEvent
from shared.contracts.quote import Quote
from shared.contracts.rest import Account, ClosedAll, Order, Position, PositionCreate
from shared.costs import check_affordable
from shared.errors import BackendDown, Conflict, NotFound, Rejected
from shared.markets import check_trading
from shared.numbers import MAX_BALANCE
from shared.operations import Operation
from shared.outage import Outage
from shared.trading import (
    MONEY_QUANTUM,
    STOP_OUT_LEVEL,
    account_state,
    check_close,
    check_order,
    check_slippage,
    check_stops,
    check_trailing,
    close_price,
    closing,
    fill_receipt,
    further_stop,
    is_multiple,
    margin,
    money,
    open_price,
    plain,
    stop_trigger,
    trailed_stop,
)
from shared.watermarks import Watermarks

log = logging.getLogger(__name__)
Rep = TypeVar("Rep")
Events = list[Event]


class TradingEngine:
    """The trading commands of `shared.operations`, applied to the store."""

    group_commit = True
    """Its commands may share a transaction with others (`Database.group`): they do nothing outside the database
    before the commit (`Database.after_commit`)."""

    def __init__(self, store: TradingStore, bus: Bus, events_topic: str, quotes: QuoteCache,
                 costs: Costs | None = None) -> None:
        self.store = store
        self.bus = bus
        self.events_topic = events_topic
        self.quotes = quotes
        self.costs = costs or Costs(store, quotes, rollover_minute=0)  # its clock is the engine's
        self.unstored_stop: Callable[[str], Decimal | None] = lambda position_id: None
        """The trailing stop-loss the risk engine ratcheted a position to and has not stored yet (the dbproc
        connects its risk book here: the one that checks the users whose commands this engine applies)."""
        self.committed = Watermarks()
        """Per user, the `seq` of the latest event of a command this engine committed (published or not)."""
        self.published = Watermarks()
        """Per user, the `seq` of the latest event this engine published (a lockstep replay's step waits until
        the risk engine has applied it: `cfd_dbproc.trading.replay`)."""
        self.events_lost = Outage("account events cannot be published (they are committed and stored; the feed "
                                  "fills the gap from the database at the user's next event)", log)

    async def account_of(self, user_id: uuid.UUID, balance: Decimal | None = None) -> Account:
        """The account marked to the latest quotes."""
        balance = await self.store.balance(user_id) if balance is None else balance
        return account_state(balance, await self.store.holdings(user_id), self.quotes.latest())

    # --- applying a command -------------------------------------------------------------------------------

    async def apply(self, op: Operation[Any, Rep], command_id: str, user_id: str,
                     apply: Callable[[Events], Awaitable[Rep]]) -> Rep:
        """Apply a command once (one transaction, or a savepoint of a group commit: `Database.group`). Its events
        are numbered (`seq`) and stored in that transaction, and go out after the commit, as stored."""
        events: Events = []
        frames: list[bytes] = []
        last_seq = 0
        replayed = True

        async def first_time() -> Rep:
            nonlocal replayed, frames, last_seq
            replayed = False
            reply = await apply(events)
            if events:  # numbered with the balance the command booked: one statement for both
                frames, last_seq = await self.store.record_events(user_id, events, self.costs.clock())
            await self.store.write_balances()
            return reply

        with self.store.command_scope(user_id):
            reply = await apply_once(self.store.db, op, command_id, user_id, first_time,
                                     lock=lambda: self.store.lock_account(user_id, command_id))
        if replayed:  # the first attempt may have died between its commit and its events
            frames = [encode(AccountEvent(event="resync", user_id=user_id))]

        async def emit() -> None:
            if last_seq:
                self.committed.advance(user_id, last_seq)
            if await self._emit(user_id, frames) and last_seq:
                self.published.advance(user_id, last_seq)

        await self.store.db.after_commit(emit)  # at once, or when the group it is part of commits
        return reply

    async def _emit(self, user_id: str, frames: list[bytes]) -> bool:
        """Publish a command's events; whether the bus took them all."""
        sent = True
        for frame in frames:
            try:
                await self.bus.publish(self.events_topic, frame, key=user_id.encode(), wait=False)
            except Exception as exc:  # events are notifications; the state is already committed
                self.events_lost.failed(exc.details.get("reason", exc) if isinstance(exc, BackendDown) else exc)
                sent = False
        return sent

    async def _snapshot_event(self, user_id: str, balance: Decimal) -> AccountEvent:
        return AccountEvent(event="snapshot", user_id=user_id, account=await self.account_of(uuid.UUID(user_id),
                                                                                             balance))

    async def _open_position(self, user_id: uuid.UUID, position_id: str) -> Position:
        """The open position, its trailing stop-loss where the risk engine has ratcheted it (stored now, if the
        engine had not yet): a change or a close starts from there, so the stop never moves back."""
        position = await self.store.position(user_id, position_id)
        if position.status != "open":
            raise Conflict("This position is already closed.", code="position_closed")
        if position.trailing_distance is not None:
            stop = further_stop(position.side, position.stop_loss, self.unstored_stop(position.id))
            if stop != position.stop_loss:
                await self.store.update(position.id, stop_loss=stop)
                position = msgspec.structs.replace(position, stop_loss=stop)
        return position

    async def _realize(self, user_id: uuid.UUID, realized: Decimal, fee: Decimal, balance: Decimal, reference: str,
                       command_id: str, at: int) -> Decimal:
        """Book a realised PnL and the close's commission; a loss beyond the balance is a shortfall entry, so the
        balance never goes below zero. Returns the new balance."""
        balance = await self.store.book(user_id, "realized_pnl", realized, balance, reference, command_id, at)
        balance = await self.costs.charge(user_id, reference, fee, balance, command_id, at)
        if balance < 0:
            balance = await self.store.book(user_id, "shortfall", -balance, balance, reference, command_id, at)
        return balance

    async def _close(self, user_id: uuid.UUID, position: Position, qty: Decimal, quote: Quote, reason: str,
                     balance: Decimal, command_id: str) -> tuple[Position, Decimal]:
        """Close `qty` of `position` at `quote` (a long at its bid, a short at its ask): the whole row, or a closed
        part split off the open rest. The position first pays the financing it owes, then the close books its PnL
        and its commission."""
        price = close_price(position.side, quote)
        position, balance = await self.costs.settle_financing(user_id, position, balance, command_id)
        at = self.costs.clock()
        whole = qty == position.qty
        closed_id = position.id if whole else self.store.ids()
        done = closing(position.side, position.qty, qty, position.entry_price, position.leverage, position.margin,
                       await self.store.unbooked_pnl(position.id), price)
        fee, fee_carry = await self.costs.closing(position, qty, price)
        balance = await self._realize(user_id, done.realized, fee, balance, closed_id, command_id, at)
        closed_fields: dict[str, Any] = {"status": "closed", "closed_at": at, "close_price": price,
                                         "realized_pnl": done.realized, "close_reason": reason, "updated_at": at,
                                         "close_receipt": fill_receipt(position.side == "short", price, quote)}
        if whole:
            closed_fields["commission"] = position.commission + fee
            await self.store.update(position.id, was=position, **closed_fields, unbooked_pnl=done.unbooked,
                                    unbooked_commission=fee_carry)
            return msgspec.structs.replace(position, **closed_fields), balance
        # A partial close: the closed part becomes its own closed row (with the commission of its close); the
        # open one shrinks, keeps what it has paid, and carries what rounding the PnL to cents did not book.
        part = msgspec.structs.replace(position, id=closed_id, qty=qty, margin=done.released_margin,
                                       parent_id=position.id, commission=fee, financing=Decimal("0.00"),
                                       **closed_fields)
        await self.store.insert(user_id, part)
        await self.store.update(position.id, was=position, qty=position.qty - qty, margin=done.remaining_margin,
                                unbooked_pnl=done.unbooked, unbooked_commission=fee_carry, updated_at=at)
        return part, balance

    # --- commands -----------------------------------------------------------------------------------------

    async def open_at(self, user_id: str, order: PositionCreate | Order, quote: Quote, events: Events, command_id: str,
                      *, order_id: str | None = None) -> Position:
        """Open a position for `order` at `quote` (the ask for a long, the bid for a short), inside the caller's
        transaction: the market's status and rules, the stops, the margin and the commission, then the row, the
        commission's ledger entry and the events. A trailing stop without a stop-loss starts `trailing_distance`
        behind the price it would close at."""
        uid = parse_id(user_id, "account")
        market = self.quotes.markets.market_of(order.symbol, field="symbol")
        check_trading(market, "open")
        check_order(market, order.side, order.qty, order.leverage)
        fill = open_price(order.side, quote)
        if isinstance(order, PositionCreate):
            check_slippage(order.side, fill, order.expected_price, order.max_deviation)
        check_stops(order.side, fill, order.stop_loss, order.take_profit, market)
        check_trailing(order.side, order.trailing_distance, close_price(order.side, quote), market)
        stop_loss = order.stop_loss
        if order.trailing_distance is not None:
            stop_loss = trailed_stop(order.side, order.trailing_distance, quote, stop_loss) or stop_loss
        balance = await self.store.balance(uid)
        account = account_state(balance, await self.store.holdings(uid), self.quotes.latest())
        needed = margin(order.qty, fill, order.leverage)
        fee, fee_carry = self.costs.opening(market, order.qty, fill)
        check_affordable(needed, fee, account.free_margin, balance)
        at = self.costs.clock()
        position = Position(
            id=self.store.ids(), symbol=order.symbol, side=order.side, qty=plain(order.qty), entry_price=fill,
            leverage=order.leverage, margin=needed, stop_loss=plain(stop_loss), take_profit=plain(order.take_profit),
            trailing_distance=plain(order.trailing_distance), status="open", opened_at=at, updated_at=at,
            commission=fee, order_id=order_id, open_receipt=fill_receipt(order.side == "long", fill, quote),
        )
        await self.store.insert(uid, position, unbooked_commission=fee_carry)
        balance = await self.costs.charge(uid, position.id, fee, balance, command_id, at)
        events.append(PositionEvent(event="opened", user_id=user_id, position=position, balance=balance))
        after = account_state(balance, await self.store.holdings(uid), self.quotes.latest())
        events.append(AccountEvent(event="snapshot", user_id=user_id, account=after))
        return position

    @handles(ops.OPEN)
    async def open(self, command: OpenCommand, command_id: str) -> Position:
        parse_id(command.user_id, "account")

        async def apply(events: Events) -> Position:
            _, quote = self.quotes.quote(command.order.symbol)
            return await self.open_at(command.user_id, command.order, quote, events, command_id)

        return await self.apply(ops.OPEN, command_id, command.user_id, apply)

    @handles(ops.CLOSE)
    async def close(self, command: CloseCommand, command_id: str) -> Position:
        user_id = parse_id(command.user_id, "account")

        async def apply(events: Events) -> Position:
            position = await self._open_position(user_id, command.position_id)
            market, quote = self.quotes.quote(position.symbol)
            check_trading(market, "close")
            qty = position.qty if command.qty is None else command.qty
            check_close(market, position.qty, qty)
            balance = await self.store.balance(user_id)
            closed, balance = await self._close(user_id, position, qty, quote, "manual", balance, command_id)
            events.append(PositionEvent(event="closed", user_id=command.user_id, position=closed, balance=balance))
            if closed.id != position.id:
                remaining = await self.store.position(user_id, position.id)
                events.append(PositionEvent(event="updated", user_id=command.user_id, position=remaining,
                                            balance=balance))
            events.append(await self._snapshot_event(command.user_id, balance))
            return closed

        return await self.apply(ops.CLOSE, command_id, command.user_id, apply)

    @handles(ops.MODIFY)
    async def modify(self, command: ModifyCommand, command_id: str) -> Position:
        user_id = parse_id(command.user_id, "account")

        async def apply(events: Events) -> Position:
            position = await self._open_position(user_id, command.position_id)
            market, quote = self.quotes.quote(position.symbol)
            update = command.update
            stop_loss = position.stop_loss if update.stop_loss is msgspec.UNSET else update.stop_loss
            take_profit = position.take_profit if update.take_profit is msgspec.UNSET else update.take_profit
            trailing = (position.trailing_distance if update.trailing_distance is msgspec.UNSET
                        else update.trailing_distance)
            now = close_price(position.side, quote)
            check_stops(position.side, now, stop_loss, take_profit, market)
            check_trailing(position.side, trailing, now, market)
            if trailing is not None and update.stop_loss is msgspec.UNSET:
                stop_loss = trailed_stop(position.side, trailing, quote, stop_loss) or stop_loss
            at = self.costs.clock()
            changed: dict[str, Any] = {"stop_loss": plain(stop_loss), "take_profit": plain(take_profit),
                       "trailing_distance": plain(trailing), "updated_at": at}
            await self.store.update(position.id, **changed)
            updated = msgspec.structs.replace(position, **changed)
            events.append(PositionEvent(event="updated", user_id=command.user_id, position=updated,
                                        balance=await self.store.balance(user_id)))
            return updated

        return await self.apply(ops.MODIFY, command_id, command.user_id, apply)

    @handles(ops.RISK_CLOSE)
    async def risk_close(self, command: RiskCloseCommand, command_id: str) -> None:
        """A stop-loss, trailing stop or take-profit hit: close at the triggering tick's price, if still open
        and if that tick still reaches the stop (it may have been moved since)."""
        user_id = parse_id(command.user_id, "account")

        async def apply(events: Events) -> None:
            position = await self.store.position(user_id, command.position_id)
            if position.status != "open":
                return  # closed meanwhile
            if command.reason == "trailing_stop":
                # The book ratchets the stop on every tick and stores it a moment later: the further of the two.
                stop = further_stop(position.side, position.stop_loss, command.stop_loss)
                if position.trailing_distance is None or stop_trigger(position.side, stop, None,
                                                                      command.quote) != "stop_loss":
                    return
                await self.store.update(position.id, stop_loss=stop)
                position = msgspec.structs.replace(position, stop_loss=stop)
            elif stop_trigger(position.side, position.stop_loss, position.take_profit,
                              command.quote) != command.reason:
                return  # its stops were moved since the tick
            if self._halted(position.symbol):
                return  # the market was halted since the tick: the stop waits (it fires again once it reopens)
            balance = await self.store.balance(user_id)
            closed, balance = await self._close(user_id, position, position.qty, command.quote, command.reason,
                                                balance, command_id)
            events.append(PositionEvent(event="closed", user_id=command.user_id, position=closed, balance=balance))
            events.append(await self._snapshot_event(command.user_id, balance))

        await self.apply(ops.RISK_CLOSE, command_id, command.user_id, apply)

    @handles(ops.TRAIL)
    async def trail(self, command: TrailCommand, command_id: str) -> None:
        """Store the trailing stop-losses the risk engine ratcheted: each only if the position is open, still
        trails, and the level is further in its favour than the stored one (a stop never moves back)."""
        user_id = parse_id(command.user_id, "account")

        async def apply(events: Events) -> None:
            balance: Decimal | None = None
            for level in command.levels:
                try:
                    position = await self.store.position(user_id, level.position_id)
                except NotFound:
                    continue
                if (position.status != "open" or position.trailing_distance is None
                        or further_stop(position.side, position.stop_loss, level.stop_loss) == position.stop_loss):
                    continue
                at = self.costs.clock()
                await self.store.update(position.id, stop_loss=level.stop_loss, updated_at=at)
                balance = await self.store.balance(user_id) if balance is None else balance
                events.append(PositionEvent(event="updated", user_id=command.user_id, trailed=True, balance=balance,
                                            position=msgspec.structs.replace(position, stop_loss=level.stop_loss,
                                                                             updated_at=at)))

        await self.apply(ops.TRAIL, command_id, command.user_id, apply)

    @handles(ops.CLOSE_ALL)
    async def close_all(self, command: CloseAllCommand, command_id: str) -> ClosedAll:
        """Close every open position of the user (of one market, with `symbol`) at the latest quotes, in one
        transaction: all of them, or, if one of their markets has no fresh quote, none."""
        user_id = parse_id(command.user_id, "account")
        if command.symbol is not None:
            self.quotes.markets.market_of(command.symbol, field="symbol")

        async def apply(events: Events) -> ClosedAll:
            positions = [p for p in await self.store.open_positions(user_id)
                         if command.symbol is None or p.symbol == command.symbol]
            quotes = {}
            for symbol in {p.symbol for p in positions}:
                market, quotes[symbol] = self.quotes.quote(symbol)
                check_trading(market, "close")
            balance = await self.store.balance(user_id)
            closed = []
            for position in positions:
                done, balance = await self._close(user_id, position, position.qty, quotes[position.symbol],
                                                  "manual", balance, command_id)
                closed.append(done)
                events.append(PositionEvent(event="closed", user_id=command.user_id, position=done, balance=balance))
            if closed:
                events.append(await self._snapshot_event(command.user_id, balance))
            return ClosedAll(closed=closed)

        return await self.apply(ops.CLOSE_ALL, command_id, command.user_id, apply)

    @handles(ops.STOP_OUT)
    async def stop_out(self, command: StopOutCommand, command_id: str) -> None:
        """Close positions in the risk book's order (worst loser first) until the margin level is back at the
        stop-out level. A position the order does not name (opened since) is left to the next check."""
        user_id = parse_id(command.user_id, "account")
        quotes = {q.symbol: q for q in command.quotes}

        async def apply(events: Events) -> None:
            balance = await self.store.balance(user_id)
            held = {p.id: p for p in await self.store.open_positions(user_id)}
            closed_any = False
            for position_id in command.order:
                account = account_state(balance, list(held.values()), quotes)
                if account.margin_level is None or account.margin_level >= STOP_OUT_LEVEL:
                    break
                worst = held.get(position_id)
                if worst is None or worst.symbol not in quotes or self._halted(worst.symbol):
                    continue  # closed since the check, its market has no fresh quote, or it is halted
                closed, balance = await self._close(user_id, worst, worst.qty, quotes[worst.symbol], "stop_out",
                                                    balance, command_id)
                del held[position_id]
                closed_any = True
                events.append(PositionEvent(event="closed", user_id=command.user_id, position=closed, balance=balance))
            if closed_any:
                events.append(AccountEvent(event="stop_out", user_id=command.user_id,
                                           account=account_state(balance, list(held.values()),
                                                                    quotes)))

        await self.apply(ops.STOP_OUT, command_id, command.user_id, apply)

    @handles(ops.FINANCING)
    async def financing(self, command: FinancingCommand, command_id: str) -> None:
        """The financing job's: every open position of the user pays the rollovers up to `through` it has not."""
        user_id = parse_id(command.user_id, "account")

        async def apply(events: Events) -> None:
            balance = await self.store.balance(user_id)
            for position in await self.store.open_positions(user_id):
                settled, balance = await self.costs.settle_financing(user_id, position, balance, command_id,
                                                                     through=command.through)
                if settled is not position:
                    events.append(PositionEvent(event="updated", user_id=command.user_id, position=settled,
                                                balance=balance))
            if events:
                events.append(await self._snapshot_event(command.user_id, balance))

        await self.apply(ops.FINANCING, command_id, command.user_id, apply)

    def _halted(self, symbol: str) -> bool:
        market = self.quotes.markets.get(symbol)
        return market is not None and market.status == "halted"

    @handles(ops.MARGIN_CALL)
    async def margin_call(self, command: MarginCallCommand, command_id: str) -> None:
        """The risk engine saw the margin level cross 100 %: tell the trader, unless the account's margin call
        state already says so (another dbproc told them, around a handover of the user's partition)."""
        user_id = parse_id(command.user_id, "account")

        async def apply(events: Events) -> None:
            if await self.store.set_margin_called(user_id, command.event == "margin_call"):
                events.append(AccountEvent(event=command.event, user_id=command.user_id,
                                           margin_level=command.margin_level))

        await self.apply(ops.MARGIN_CALL, command_id, command.user_id, apply)

    @handles(ops.DEPOSIT)
    async def deposit(self, command: DepositCommand, command_id: str) -> Account:
        """An operator's deposit (or, negative, a withdrawal that cannot take the balance below zero)."""
        user_id = parse_id(command.user_id, "account")

        async def apply(events: Events) -> Account:
            balance = await self.store.balance(user_id)
            amount = command.amount
            if not amount.is_finite() or amount == 0 or not is_multiple(amount, MONEY_QUANTUM):
                raise Rejected(f"The amount must be a non-zero number of whole cents (like 2500 or 99.50), not "
                               f"{amount}.", code="invalid_amount", details={"field": "amount"})
            if not 0 <= balance + amount <= MAX_BALANCE:
                limit = "below 0" if balance + amount < 0 else f"above {MAX_BALANCE:,f}"
                raise Rejected(f"This would take the balance of {money(balance)} {limit}.", code="invalid_amount",
                               details={"field": "amount", "balance": str(money(balance))})
            balance = await self.store.book(user_id, "deposit", command.amount, balance, "operator", command_id,
                                            self.costs.clock())
            events.append(await self._snapshot_event(command.user_id, balance))
            return await self.account_of(user_id, balance)

        return await self.apply(ops.DEPOSIT, command_id, command.user_id, apply)
