"""The trading tables: the one mapping between a `positions` row and a `Position`, and every query of them.

The engine decides; the store reads and writes. Every method runs in the caller's transaction, if any.
"""

from __future__ import annotations

import contextlib
import contextvars
import functools
import logging
import uuid
from collections.abc import Callable, Iterator, Sequence
from decimal import Decimal
from typing import Any, NamedTuple

import msgspec
from piccolo.columns import Column
from piccolo.custom_types import Combinable
from piccolo.query import WhereRaw

from cfd_dbproc.commands import Checked
from cfd_dbproc.db import Database
from cfd_dbproc.db.statements import RowInsert, Statement
from cfd_dbproc.db.tables import AccountEvents, Accounts, Alerts, LedgerEntries, Orders, Positions
from shared.contracts import encode
from shared.contracts.bus import AccountEventsPage, LedgerQuery, OrdersQuery, PositionsQuery
from shared.contracts.events import Event
from shared.contracts.rest import Alert, FillReceipt, LedgerEntry, Order, Position
from shared.errors import NotFound
from shared.ids import Ids
from shared.paging import MAX_PAGE, Cursor, decode_cursor
from shared.trading import Exposure, Holdings, money, plain


def position_from_row(row: dict[str, Any], *, with_user: bool = False) -> Position:
    return Position(
        id=str(row["id"]), symbol=row["symbol"], side=row["side"], qty=plain(row["qty"]),
        entry_price=plain(row["entry_price"]), leverage=row["leverage"], margin=money(row["margin"]),
        stop_loss=plain(row["stop_loss"]), take_profit=plain(row["take_profit"]), status=row["status"],
        opened_at=row["opened_at"], updated_at=row["updated_at"], closed_at=row["closed_at"],
        close_price=plain(row["close_price"]),
        realized_pnl=None if row["realized_pnl"] is None else money(row["realized_pnl"]),
        commission=money(row["commission"]), financing=money(row["financing"]),
        close_reason=row["close_reason"],
        parent_id=str(row["parent_id"]) if row["parent_id"] else None,
        trailing_distance=plain(row["trailing_distance"]),
        order_id=str(row["order_id"]) if row["order_id"] else None,
        open_receipt=_receipt_from_column(row["open_receipt"]),
        close_receipt=_receipt_from_column(row["close_receipt"]),
        user_id=str(row["user_id"]) if with_user else None,
    )


log = logging.getLogger(__name__)
_receipt_decoder = msgspec.json.Decoder(FillReceipt)


def _receipt_from_column(value: str | None) -> FillReceipt | None:
    """The receipt stored with a position; None, logged once, for one that cannot be read (written before its
    shape changed, say): a receipt only explains a fill, and one must not keep the position from being read."""
    if value is None:
        return None
    try:
        return _receipt_decoder.decode(value)
    except msgspec.DecodeError as exc:  # a ValidationError too
        if len(_UNREADABLE_RECEIPTS) < 1_000 and value not in _UNREADABLE_RECEIPTS:
            _UNREADABLE_RECEIPTS.add(value)
            log.warning("a position's fill receipt cannot be read, so it is left out: %s (%.200s)", exc, value)
        return None


_UNREADABLE_RECEIPTS: set[str] = set()
"""The unreadable receipts already logged (once each)."""


def _receipt_column(receipt: FillReceipt | None) -> str | None:
    return None if receipt is None else encode(receipt).decode()


def order_from_row(row: dict[str, Any]) -> Order:
    return Order(
        id=str(row["id"]), symbol=row["symbol"], side=row["side"], type=row["type"], qty=plain(row["qty"]),
        price=plain(row["price"]), leverage=row["leverage"], stop_loss=plain(row["stop_loss"]),
        take_profit=plain(row["take_profit"]), trailing_distance=plain(row["trailing_distance"]),
        status=row["status"], created_at=row["created_at"], updated_at=row["updated_at"],
        expires_at=row["expires_at"], position_id=str(row["position_id"]) if row["position_id"] else None,
        reason=row["reason"],
    )


def alert_from_row(row: dict[str, Any]) -> Alert:
    return Alert(id=str(row["id"]), kind=row["kind"], symbol=row["symbol"], condition=row["condition"],
                 price=plain(row["price"]), below=plain(row["below"]), note=row["note"],
                 notify=row["notify"].split(","), status=row["status"], created_at=row["created_at"],
                 triggered_at=row["triggered_at"], triggered_value=plain(row["triggered_value"]))
class CostCarries(NamedTuple):
    commission: Decimal
    financing: Decimal
    financed_until: int


def parse_id(value: str, what: str) -> uuid.UUID:
    """The UUID in `value`; anything else is a 404 `<what>_not_found` (an id that cannot exist)."""
    try:
        return uuid.UUID(value)
    except ValueError:
        raise NotFound(f"No such {what}.", code=f"{what}_not_found") from None


class _CommandScope:
    """What one command has read of its user's account and open positions, and what it has booked and not
    written yet."""

    __slots__ = ("balances", "carries", "held", "kept", "seqs", "stale", "unwritten", "user_id")

    def __init__(self, user_id: uuid.UUID | None) -> None:
        self.user_id = user_id
        self.balances: dict[uuid.UUID, Decimal] = {}
        self.unwritten: set[uuid.UUID] = set()
        self.seqs: dict[uuid.UUID, int] = {}
        """Each user's event counter as the command read it, with the balance, before its own events."""
        self.held: dict[uuid.UUID, Holdings] = {}
        """Each user's open positions as they stand now in the command, where the store knows them."""
        self.stale: set[uuid.UUID] = set()
        """Users whose open positions the command has changed: what the store remembers of them is past."""
        self.carries: dict[str, dict[str, Any]] = {}
        """Per position the command has read, the columns it carries between bookings (`_CARRIED`), as they
        stand in the command."""
        self.kept: set[uuid.UUID] = set()
        """Users whose open positions the store now remembers as this command leaves them (`_remember`)."""


_SCOPE: contextvars.ContextVar[_CommandScope | None] = contextvars.ContextVar("cfd_command_scope", default=None)
"""The command being applied (`TradingStore.command_scope`)."""

_EXPOSURE_FIELDS = frozenset({"symbol", "side", "qty", "entry_price", "margin", "status"})
"""The columns of a position that the margin maths reads (`Exposure`, and whether it is open)."""

_CARRIED = ("unbooked_pnl", "unbooked_commission", "unbooked_financing", "financed_until")
"""The columns of a position that only the dbproc reads: what rounding left unbooked, and the financing paid."""

MAX_REMEMBERED = 100_000
"""Users whose open positions the store remembers between commands (the least recently used are forgotten)."""


class TradingStore:
    """Accounts, positions, orders and ledger entries."""

    def __init__(self, db: Database, ids: Ids | None = None) -> None:
        self.db = db
        self.ids = ids or Ids()
        """Where the ids of positions, orders, alerts and ledger entries come from (seeded in a sandbox)."""
        self._remembered: dict[uuid.UUID, tuple[int, Holdings]] = {}
        """Per user, their open positions (what the margin maths reads) after the command that took their event
        counter to the number kept with them: still true while the counter reads the same, since every command
        that changes positions numbers events (`holdings`, `record_events`)."""

    # --- accounts and the ledger --------------------------------------------------------------------------

    @contextlib.contextmanager
    def command_scope(self, user_id: str | None = None) -> Iterator[None]:
        """One command's view of its user's account: each balance is read once (or with the account's row
        lock) and kept up to date by `book`, the one way a balance changes, and what it books is written once,
        at its end (`write_balances`, or with the event counter by `record_events`). The open positions the
        margin maths reads are read at most once too, or not at all when the store remembers them from the
        user's last command (`holdings`). Gone with the command: one rolled back leaves nothing behind, and
        what the store remembered of its user is forgotten."""
        scope = _CommandScope(_user_or_none(user_id))
        token = _SCOPE.set(scope)
        try:
            yield
        except BaseException:  # rolled back: what it left is not what the database holds
            self._forget(*scope.kept)
            raise
        else:
            self._forget(*scope.stale)  # changed by a command that numbered no events (none does today)
        finally:
            _SCOPE.reset(token)

    def _forget(self, *user_ids: uuid.UUID | None) -> None:
        for user_id in user_ids:
            if user_id is not None:
                self._remembered.pop(user_id, None)

    async def balance(self, user_id: uuid.UUID) -> Decimal:
        scope = _SCOPE.get()
        if scope is not None and user_id in scope.balances:
            return scope.balances[user_id]
        rows = await self.db.fetch(_BALANCE, user_id)
        if not rows:
            raise NotFound("No trading account for this user.", code="account_not_found")
        row = rows[0]
        balance = money(row["balance"])
        if scope is not None:
            scope.balances[user_id] = balance
            scope.seqs.setdefault(user_id, int(row["event_seq"]))
        return balance

    async def lock_account(self, user_id: str, command_id: str | None = None) -> Checked | None:
        """Hold the user's account row until the transaction ends (`SELECT ... FOR UPDATE`); with `command_id`,
        look the command up in the same statement (`apply_once`).

        One partition orders one user's commands, but during a consumer-group rebalance two dbprocs can hold
        it at once: the second one's command then waits here and reads the balance the first one wrote,
        instead of overwriting it with one it read before. SQLite needs no lock: its transactions are
        exclusive from their start (`BEGIN IMMEDIATE`, see `Database.transaction`)."""
        if self.db.is_sqlite:
            return None
        uid = parse_id(user_id, "account")
        if command_id is None:
            rows = await Accounts.select(Accounts.balance, Accounts.event_seq).where(
                Accounts.user_id == uid).lock_rows().run()
        else:
            rows = await Accounts.raw(_LOCK_AND_CHECK, command_id, uid).run()
        if not rows:
            return None  # no account: the command finds out, with the error it gives
        scope = _SCOPE.get()
        if scope is not None:  # read with the lock: the command needs no second trip for it
            scope.balances[uid] = money(rows[0]["balance"])
            scope.seqs.setdefault(uid, int(rows[0]["event_seq"]))
        return None if command_id is None else Checked(rows[0]["reply"])

    async def book(self, user_id: uuid.UUID, kind: str, amount: Decimal, balance: Decimal, reference: str,
                   command_id: str, at: int) -> Decimal:
        """Add a ledger entry and move the balance; returns the new balance."""
        new_balance = money(balance + amount)
        await self.db.fetch(_INSERT_LEDGER.statement, *_INSERT_LEDGER.args(dict(
            id=self.ids.uuid(), user_id=user_id, kind=kind, amount=money(amount), balance_after=new_balance,
            reference=reference, command_id=command_id, created_at=at,
        )))
        scope = _SCOPE.get()
        if scope is None:
            await Accounts.update({Accounts.balance: new_balance}).where(Accounts.user_id == user_id).run()
        else:  # written once at the command's end, however many entries it books
            scope.balances[user_id] = new_balance
            scope.unwritten.add(user_id)
        return new_balance

    async def write_balances(self) -> None:
        """Write the balances the command has booked and not written yet (at its end, in its transaction)."""
        scope = _SCOPE.get()
        if scope is None:
            return
        for user_id in sorted(scope.unwritten):
            await self.db.fetch(_SET_BALANCE, scope.balances[user_id], user_id)
        scope.unwritten.clear()

    async def ledger_page(self, query: LedgerQuery) -> list[LedgerEntry]:
        conditions: list[Combinable] = [LedgerEntries.user_id == parse_id(query.user_id, "account")]
        _window(conditions, LedgerEntries.created_at, query.since, query.until)
        if query.cursor is not None:
            conditions.append(self._after(decode_cursor(query.cursor, "ledger"), "created_at"))
        rows = await LedgerEntries.select().where(*conditions).order_by(
            LedgerEntries.created_at, LedgerEntries.id, ascending=False).limit(_page(query.limit)).run()
        return [LedgerEntry(id=str(r["id"]), kind=r["kind"], amount=money(r["amount"]),
                            balance_after=money(r["balance_after"]), reference=r["reference"],
                            created_at=r["created_at"]) for r in rows]

    # --- positions ----------------------------------------------------------------------------------------

    async def position(self, user_id: uuid.UUID, position_id: str) -> Position:
        pid = parse_id(position_id, "position")
        rows = await self.db.fetch(_POSITION, pid, user_id)
        if not rows:  # another user's position is "not found", never "forbidden"
            raise NotFound("No such position.", code="position_not_found")
        row = rows[0]
        scope = _SCOPE.get()
        if scope is not None:  # what the command's costs read of it next, without reading the row again
            scope.carries[str(row["id"])] = {name: row[name] for name in _CARRIED}
        return position_from_row(row)

    async def open_positions(self, user_id: uuid.UUID) -> list[Position]:
        rows = await Positions.select().where(
            (Positions.user_id == user_id) & (Positions.status == "open")
        ).order_by(Positions.opened_at).run()
        return [position_from_row(r) for r in rows]

    async def holdings(self, user_id: uuid.UUID) -> Holdings:
        """The user's open positions summed as the margin maths needs them (`Holdings`). In a command, read once:
        later in it, and in the user's next command while nothing else has numbered events for them (their event
        counter reads as it did when this store last saw it), they come from memory. The caller gets its own copy."""
        scope = _SCOPE.get()
        held = None if scope is None else self._held(scope, user_id)
        if held is None:
            rows = await self.db.fetch(_EXPOSURES, user_id)
            held = Holdings(Exposure(r["symbol"], r["side"], r["qty"], r["entry_price"], r["margin"]) for r in rows)
            if scope is not None:
                scope.held[user_id] = held
        return held.copy()

    def _held(self, scope: _CommandScope, user_id: uuid.UUID) -> Holdings | None:
        """The user's open positions as they stand in the command, if known without a query."""
        held = scope.held.get(user_id)
        if held is None and user_id not in scope.stale:
            remembered = self._remembered.get(user_id)
            if remembered is not None and remembered[0] == scope.seqs.get(user_id):
                held = scope.held[user_id] = remembered[1].copy()
        return held

    def _moved(self, user_id: uuid.UUID | None, was: Position | None = None, now: Position | None = None) -> None:
        """The user's open positions changed in this command: `was` is no longer open as it was, `now` is open
        as it is (each a position, or None). What is known of them follows; without `was` or `now`, a change
        the store cannot follow, and they are read again when next needed."""
        scope = _SCOPE.get()
        if scope is None:  # outside a command (none writes positions today): remember nothing
            self._remembered.clear()
            return
        user_id = user_id or scope.user_id
        if user_id is None:
            self._remembered.clear()
            scope.held.clear()
            return
        held = self._held(scope, user_id)
        scope.stale.add(user_id)
        if held is None:
            return
        if was is not None:
            held.add(was, -1)
        if now is not None:
            held.add(now)
        if (was is None and now is None) or not held.consistent:  # a change it cannot follow: read them again
            del scope.held[user_id]

    async def unbooked_pnl(self, position_id: str) -> Decimal:
        row = self._carried(position_id) or await Positions.select(Positions.unbooked_pnl).where(
            Positions.id == uuid.UUID(position_id)).first().run()
        return Decimal(0) if row is None or row["unbooked_pnl"] is None else row["unbooked_pnl"]

    async def insert(self, user_id: uuid.UUID, position: Position, *, unbooked_pnl: Decimal = Decimal(0),
                     unbooked_commission: Decimal = Decimal(0), financed_until: int | None = None) -> None:
        """Insert a position row; it pays financing from the first rollover after `financed_until` (by default
        after it opened)."""
        if position.status == "open":
            self._moved(user_id, now=position)
        await self.db.fetch(_INSERT_POSITION.statement, *_INSERT_POSITION.args(dict(
            id=uuid.UUID(position.id), user_id=user_id, symbol=position.symbol, side=position.side,
            qty=position.qty, entry_price=position.entry_price, leverage=position.leverage, margin=position.margin,
            stop_loss=position.stop_loss, take_profit=position.take_profit, status=position.status,
            opened_at=position.opened_at, updated_at=position.updated_at, closed_at=position.closed_at,
            close_price=position.close_price, realized_pnl=position.realized_pnl, close_reason=position.close_reason,
            parent_id=uuid.UUID(position.parent_id) if position.parent_id else None,
            unbooked_pnl=unbooked_pnl, trailing_distance=position.trailing_distance,
            order_id=uuid.UUID(position.order_id) if position.order_id else None,
            commission=position.commission, financing=position.financing,
            unbooked_commission=unbooked_commission,
            financed_until=position.opened_at if financed_until is None else financed_until,
            open_receipt=_receipt_column(position.open_receipt), close_receipt=_receipt_column(position.close_receipt),
        )))

    async def cost_carries(self, position_id: str) -> CostCarries:
        """What rounding left unbooked of the position's commission and financing, and the last rollover it has
        paid financing for (its opening time until the first)."""
        row = self._carried(position_id) or await Positions.select(
            Positions.unbooked_commission, Positions.unbooked_financing, Positions.financed_until).where(
            Positions.id == uuid.UUID(position_id)).first().run()
        if row is None:
            return CostCarries(Decimal(0), Decimal(0), 0)
        return CostCarries(row["unbooked_commission"], row["unbooked_financing"], row["financed_until"])

    @staticmethod
    def _carried(position_id: str) -> dict[str, Any] | None:
        scope = _SCOPE.get()
        return None if scope is None else scope.carries.get(position_id)

    async def owing_financing(self, due: int) -> list[str]:
        """The users with an open position that has not paid financing up to the rollover `due`."""
        rows = await Positions.select(Positions.user_id).where(
            (Positions.status == "open") & (Positions.financed_until < due)).distinct().run()
        return [str(r["user_id"]) for r in rows]

    async def update(self, position_id: str, *, was: Position | None = None, **fields: Any) -> None:
        """Set `fields` (column names) of one position; a receipt is given as a `FillReceipt`. `was`: the
        position as it stood (so a change of its size or status is followed without reading them all again)."""
        if not _EXPOSURE_FIELDS.isdisjoint(fields):
            if was is None:
                self._moved(None)
            else:
                now = msgspec.structs.replace(was, **{k: v for k, v in fields.items() if k in _EXPOSURE_FIELDS})
                self._moved(None, was, now if now.status == "open" else None)
        carried = self._carried(position_id)
        if carried is not None:
            carried.update((name, fields[name]) for name in _CARRIED if name in fields)
        for name in ("open_receipt", "close_receipt"):
            if name in fields:
                fields[name] = _receipt_column(fields[name])
        await Positions.update({getattr(Positions, name): value for name, value in fields.items()}).where(
            Positions.id == uuid.UUID(position_id)).run()

    async def positions_page(self, query: PositionsQuery) -> list[Position]:
        """One page of a user's (or, for operators, every user's) positions, newest first."""
        conditions: list[Combinable] = []
        if query.user_id is not None:
            conditions.append(Positions.user_id == parse_id(query.user_id, "account"))
        if query.status is not None:
            conditions.append(Positions.status == query.status)
        order, newest_first = ("closed", Positions.closed_at) if query.status == "closed" else (
            "opened", Positions.opened_at)
        _window(conditions, newest_first, query.since, query.until)
        if query.cursor is not None:
            conditions.append(self._after(decode_cursor(query.cursor, order), newest_first._meta.db_column_name))
        select = Positions.select()
        if conditions:
            select = select.where(*conditions)
        rows = await select.order_by(newest_first, Positions.id, ascending=False).limit(_page(query.limit)).run()
        return [position_from_row(r, with_user=query.user_id is None) for r in rows]

    async def every_open(self) -> list[tuple[str, Position]]:
        """Every open position with its owner's id (the risk book's start)."""
        rows = await Positions.select().where(Positions.status == "open").run()
        return [(str(r["user_id"]), position_from_row(r)) for r in rows]

    async def open_accounts(self, keep: Callable[[str], bool]) -> tuple[list[tuple[str, Position]], dict[str, Decimal]]:
        """The open positions of the users `keep` accepts (by user id), with their owners' ids, and those users'
        balances: the part of the risk book one instance checks. One scan of the open positions, filtered
        here; the balances in batches."""
        held = [(user_id, p) for user_id, p in await self.every_open() if keep(user_id)]
        users = sorted({uuid.UUID(user_id) for user_id, _ in held})
        balances: dict[str, Decimal] = {}
        for start in range(0, len(users), _BATCH):
            for user_id, balance in (await self.balances(users[start:start + _BATCH])).items():
                balances[str(user_id)] = balance
        return held, balances

    async def open_counts(self, user_ids: list[uuid.UUID]) -> dict[uuid.UUID, int]:
        """How many open positions each of these users holds (users with none are left out)."""
        counts: dict[uuid.UUID, int] = {}
        if user_ids:
            for r in await Positions.select(Positions.user_id).where(
                    Positions.user_id.is_in(user_ids) & (Positions.status == "open")).run():
                counts[r["user_id"]] = counts.get(r["user_id"], 0) + 1
        return counts

    async def balances(self, user_ids: list[uuid.UUID]) -> dict[uuid.UUID, Decimal]:
        if not user_ids:
            return {}
        rows = await Accounts.select(Accounts.user_id, Accounts.balance).where(Accounts.user_id.is_in(user_ids)).run()
        return {r["user_id"]: r["balance"] for r in rows}

    async def open_exposures(self) -> list[Exposure]:
        """Every open position's exposure (the broker's book)."""
        rows = await Positions.select(Positions.symbol, Positions.side, Positions.qty, Positions.entry_price,
                                      Positions.margin).where(Positions.status == "open").run()
        return [Exposure(r["symbol"], r["side"], r["qty"], r["entry_price"], r["margin"]) for r in rows]

    # --- orders -------------------------------------------------------------------------------------------

    async def order(self, user_id: uuid.UUID, order_id: str) -> Order:
        oid = parse_id(order_id, "order")
        row = await Orders.select().where((Orders.id == oid) & (Orders.user_id == user_id)).first().run()
        if row is None:  # another user's order is "not found", never "forbidden"
            raise NotFound("No such order.", code="order_not_found")
        return order_from_row(row)

    async def insert_order(self, user_id: uuid.UUID, order: Order) -> None:
        await Orders.insert(Orders(
            id=uuid.UUID(order.id), user_id=user_id, symbol=order.symbol, side=order.side, type=order.type,
            qty=order.qty, price=order.price, leverage=order.leverage, stop_loss=order.stop_loss,
            take_profit=order.take_profit, trailing_distance=order.trailing_distance, status=order.status,
            created_at=order.created_at, updated_at=order.updated_at, expires_at=order.expires_at,
            position_id=uuid.UUID(order.position_id) if order.position_id else None, reason=order.reason,
        )).run()

    async def update_order(self, order_id: str, **fields: Any) -> None:
        """Set `fields` (column names) of one order."""
        if "position_id" in fields and fields["position_id"] is not None:
            fields["position_id"] = uuid.UUID(fields["position_id"])
        await Orders.update({getattr(Orders, name): value for name, value in fields.items()}).where(
            Orders.id == uuid.UUID(order_id)).run()

    async def working_count(self, user_id: uuid.UUID) -> int:
        return await Orders.count().where((Orders.user_id == user_id) & (Orders.status == "working")).run()

    async def orders_page(self, query: OrdersQuery) -> list[Order]:
        """One page of a user's (or, for operators, every user's) orders, newest first."""
        conditions: list[Combinable] = []
        if query.user_id is not None:
            conditions.append(Orders.user_id == parse_id(query.user_id, "account"))
        if query.status is not None:
            conditions.append(Orders.status == query.status)
        _window(conditions, Orders.created_at, query.since, query.until)
        if query.cursor is not None:
            conditions.append(self._after(decode_cursor(query.cursor, "created"), "created_at"))
        select = Orders.select()
        if conditions:
            select = select.where(*conditions)
        rows = await select.order_by(Orders.created_at, Orders.id, ascending=False).limit(_page(query.limit)).run()
        return [order_from_row(r) for r in rows]

    async def working_orders_of(self, user_id: uuid.UUID) -> list[Order]:
        """The user's working orders, oldest first."""
        rows = await Orders.select().where((Orders.user_id == user_id) & (Orders.status == "working")).order_by(
            Orders.created_at, Orders.id).run()
        return [order_from_row(r) for r in rows]

    async def working_orders(self, keep: Callable[[str], bool]) -> list[tuple[str, Order]]:
        """The working orders of the users `keep` accepts, with their owners' ids (the risk engine's start)."""
        rows = await Orders.select().where(Orders.status == "working").run()
        return [(str(r["user_id"]), order_from_row(r)) for r in rows if keep(str(r["user_id"]))]

    async def active_alerts(self, keep: Callable[[str], bool]) -> list[tuple[str, Alert]]:
        """The active alerts of the users `keep` accepts, with their owners' ids (the risk engine's start)."""
        rows = await Alerts.select().where(Alerts.status == "active").run()
        return [(str(r["user_id"]), alert_from_row(r)) for r in rows if keep(str(r["user_id"]))]

    # --- account events -----------------------------------------------------------------------------------

    async def record_events(self, user_id: str, events: Sequence[Event], at: int) -> tuple[list[bytes], int]:
        """Number the user's `events` after their latest one and store them; returns their frames (each event
        encoded with its `seq`), to publish as stored, and the last one's `seq`. In the command's transaction: the
        account row's counter moves in one `UPDATE`, which holds the row to the commit, so two commands never take
        the same numbers and a rolled-back command takes none."""
        uid = parse_id(user_id, "account")
        if any(event.user_id != user_id for event in events):
            raise ValueError("a command's events are all its own user's")
        scope = _SCOPE.get()
        if scope is not None and uid in scope.unwritten:  # the balance the command booked, in the same statement
            rows = await self.db.fetch(_COUNT_EVENTS_AND_SET_BALANCE, len(events), scope.balances[uid], uid)
            scope.unwritten.discard(uid)
        else:
            rows = await self.db.fetch(_COUNT_EVENTS, len(events), uid)
        if not rows:
            raise NotFound("No trading account for this user.", code="account_not_found")
        first = rows[0]["event_seq"] - len(events) + 1
        if scope is not None:
            self._remember(scope, uid, first - 1, first + len(events) - 1)
        frames = [encode(msgspec.structs.replace(event, seq=first + i)) for i, event in enumerate(events)]
        insert = _insert_events(len(frames))
        await self.db.fetch(insert.statement, *insert.args(*[
            dict(user_id=uid, seq=first + i, frame=frame.decode(), created_at=at) for i, frame in enumerate(frames)]))
        return frames, first + len(events) - 1

    def _remember(self, scope: _CommandScope, user_id: uuid.UUID, before: int, after: int) -> None:
        """Keep the user's open positions with their event counter, moved from `before` to `after` by the
        command: as the command left them, or as remembered when it changed none of them."""
        held = scope.held.get(user_id)
        remembered = self._remembered.pop(user_id, None)
        if held is not None:
            kept: Holdings | None = held.copy()
        elif remembered is not None and remembered[0] == before and user_id not in scope.stale:
            kept = remembered[1]
        else:
            kept = None
        scope.stale.discard(user_id)
        scope.seqs[user_id] = after
        if kept is None:
            return
        scope.kept.add(user_id)
        self._remembered[user_id] = (after, kept)  # the most recently used last
        if len(self._remembered) > MAX_REMEMBERED:
            self._remembered.pop(next(iter(self._remembered)))
        self.db.on_rollback(lambda: self._forget(user_id))

    async def latest_seq(self, user_id: uuid.UUID) -> int:
        """The `seq` of the user's latest account event (0 before the first)."""
        row = await Accounts.select(Accounts.event_seq).where(Accounts.user_id == user_id).first().run()
        if row is None:
            raise NotFound("No trading account for this user.", code="account_not_found")
        return int(row["event_seq"])

    async def events_after(self, user_id: uuid.UUID, since: int, limit: int) -> AccountEventsPage:
        """The user's stored events after `since`, oldest first, at most `limit`. A gap when the next one
        (`since + 1`) is no longer kept, or when `since` is beyond the latest."""
        latest = await self.latest_seq(user_id)
        rows = await AccountEvents.select(AccountEvents.seq, AccountEvents.frame).where(
            (AccountEvents.user_id == user_id) & (AccountEvents.seq > since)
        ).order_by(AccountEvents.seq).limit(max(1, min(limit, MAX_PAGE + 1))).run()
        gap = since > latest or (since < latest and (not rows or rows[0]["seq"] != since + 1))
        events = [] if gap else [msgspec.Raw(row["frame"].encode()) for row in rows]
        return AccountEventsPage(events=events, latest=latest, gap=gap)

    async def set_margin_called(self, user_id: uuid.UUID, called: bool) -> bool:
        """Record whether a margin call is out; False when that was already so (nothing changed)."""
        row = await Accounts.select(Accounts.margin_called).where(Accounts.user_id == user_id).first().run()
        if row is None:
            raise NotFound("No trading account for this user.", code="account_not_found")
        if bool(row["margin_called"]) == called:
            return False
        await Accounts.update({Accounts.margin_called: called}).where(Accounts.user_id == user_id).run()
        return True

    async def margin_called(self, keep: Callable[[str], bool]) -> list[str]:
        """The users `keep` accepts who have a margin call out (a taking-over risk engine's start)."""
        rows = await Accounts.select(Accounts.user_id).where(Accounts.margin_called == True).run()  # noqa: E712
        return [user_id for user_id in (str(r["user_id"]) for r in rows) if keep(user_id)]

    def _after(self, cursor: Cursor, column: str) -> WhereRaw:
        """Rows after `cursor` in a newest-first list ordered by `column` then id: one index range scan."""
        row_id = cursor.id if self.db.is_sqlite else uuid.UUID(cursor.id)  # SQLite stores UUIDs as text
        return WhereRaw(f"({column}, id) < ({{}}, {{}})", cursor.at, row_id)


_BALANCE = Statement('SELECT "balance", "event_seq" FROM "accounts" WHERE "user_id" = {}')
_SET_BALANCE = Statement('UPDATE "accounts" SET "balance" = {} WHERE "user_id" = {}')
_COUNT_EVENTS = Statement(
    'UPDATE "accounts" SET "event_seq" = "event_seq" + {} WHERE "user_id" = {} RETURNING "event_seq"')
_COUNT_EVENTS_AND_SET_BALANCE = Statement(
    'UPDATE "accounts" SET "event_seq" = "event_seq" + {}, "balance" = {} WHERE "user_id" = {} RETURNING "event_seq"')
_POSITION = Statement('SELECT * FROM "positions" WHERE "id" = {} AND "user_id" = {}')
_EXPOSURES = Statement('SELECT "symbol", "side", "qty", "entry_price", "margin" FROM "positions" '
                       'WHERE "user_id" = {} AND "status" = \'open\'')
_INSERT_POSITION = RowInsert(Positions)
_INSERT_LEDGER = RowInsert(LedgerEntries)


@functools.cache
def _insert_events(count: int) -> RowInsert:
    return RowInsert(AccountEvents, rows=count)


_LOCK_AND_CHECK = """SELECT accounts.balance, accounts.event_seq, processed_commands.reply FROM accounts
LEFT JOIN processed_commands ON processed_commands.command_id = {}
WHERE accounts.user_id = {} FOR UPDATE OF accounts"""

_BATCH = 500  # user ids per `IN (...)`: well inside SQLite's limit of bound parameters


def _user_or_none(user_id: str | None) -> uuid.UUID | None:
    try:
        return None if user_id is None else uuid.UUID(user_id)
    except ValueError:
        return None


def _window(conditions: list[Combinable], column: Column, since: int | None, until: int | None) -> None:
    """Keep a list to the rows whose `column` (a time, epoch ms) is at or after `since` and before `until`."""
    if since is not None:
        conditions.append(column >= since)
    if until is not None:
        conditions.append(column < until)


def _page(limit: int) -> int:
    """A list's page size: up to one row more than the largest page, so the server can tell whether another
    page follows."""
    return max(1, min(limit, MAX_PAGE + 1))
