"""The trading path's written-once statements (`cfd_dbproc.db.statements`) store and read rows exactly as
Piccolo's queries do, on SQLite and on PostgreSQL, in a transaction and outside one; and a row read back
with a column that no longer decodes (a stored receipt) is still read.

The platform's database is shared by the session's tests: the rows here belong to no user, are closed, and
are deleted at the end."""

from __future__ import annotations

import uuid
from decimal import Decimal

from cfd_dbproc.db.statements import RowInsert, Statement
from cfd_dbproc.db.tables import AccountEvents, Positions
from shared.contracts import encode
from shared.contracts.rest import FillReceipt

SELECT_POSITION = Statement('SELECT * FROM "positions" WHERE "id" = {}')


RECEIPT = FillReceipt(side="sell", price=Decimal("65432.1"), exchange_bid=Decimal("65440"),
                      exchange_ask=Decimal("65441"), exchange_time_us=1_765_000_000_000_000, spread_bps=Decimal(20),
                      markup=Decimal("7.9"))


def _position(**changes) -> dict:
    row = dict(id=uuid.uuid4(), user_id=uuid.uuid4(), symbol="BTC_USDC", side="short", qty=Decimal("0.1234567891"),
               entry_price=Decimal("65432.1"), leverage=20, margin=Decimal("403.75"), stop_loss=Decimal("70000"),
               status="closed", opened_at=1_765_000_000_000, updated_at=1_765_000_000_001, closed_at=1_765_000_000_002,
               parent_id=None, open_receipt=encode(RECEIPT).decode())
    row.update(changes)
    return row


async def test_a_row_written_by_a_statement_reads_back_as_piccolo_s_own(platform):
    db = platform.db
    ours, theirs = _position(), _position(take_profit=Decimal("60000.5"))
    insert = RowInsert(Positions)
    try:
        async with db.transaction():
            await db.fetch(insert.statement, *insert.args(ours))
            await Positions.insert(Positions(**{k: v for k, v in theirs.items()})).run()
            inside = (await db.fetch(SELECT_POSITION, ours["id"]))[0]
        piccolo = await Positions.select().where(Positions.id == ours["id"]).first().run()
        outside = (await db.fetch(SELECT_POSITION, ours["id"]))[0]
        piccolo_theirs = await Positions.select().where(Positions.id == theirs["id"]).first().run()
    finally:
        await Positions.delete().where(Positions.id.is_in([ours["id"], theirs["id"]])).run()

    assert inside == outside == piccolo
    assert piccolo.keys() == piccolo_theirs.keys()
    for name, value in piccolo.items():  # the same types as a row Piccolo wrote, the defaults included
        assert type(value) is type(piccolo_theirs[name]) or None in (value, piccolo_theirs[name]), name
    assert piccolo["qty"] == Decimal("0.1234567891") and piccolo["entry_price"] == Decimal("65432.1")
    assert piccolo["unbooked_financing"] == 0 and piccolo["financed_until"] == 0  # left out: the defaults
    assert isinstance(piccolo["id"], uuid.UUID) and piccolo["parent_id"] is None


async def test_several_rows_in_one_insert_and_a_rollback_leaves_none(platform):
    db = platform.db
    user = uuid.uuid4()
    insert = RowInsert(AccountEvents, rows=3)
    async with db.transaction():
        await db.fetch(insert.statement, *insert.args(
            *[dict(user_id=user, seq=n, frame=f'{{"seq":{n}}}', created_at=n) for n in (1, 2, 3)]))
    try:
        async with db.transaction():
            await db.fetch(insert.statement, *insert.args(
                *[dict(user_id=user, seq=n, frame="{}", created_at=n) for n in (4, 5, 6)]))
            raise RuntimeError("the command fails")
    except RuntimeError:
        pass
    rows = await AccountEvents.select(AccountEvents.seq, AccountEvents.frame).where(
        AccountEvents.user_id == user).order_by(AccountEvents.seq).run()
    await AccountEvents.delete().where(AccountEvents.user_id == user).run()
    assert rows == [{"seq": n, "frame": f'{{"seq":{n}}}'} for n in (1, 2, 3)]


async def test_a_position_whose_receipt_cannot_be_read_is_still_read_for_the_risk_engine(platform, caplog):
    """A receipt written before its shape changed must not keep the position, or the risk engine's load of
    every open position, from being read: it is left out, and logged once."""
    db = platform.db
    row = _position(status="open", closed_at=None, open_receipt='{"side":"sell"}')
    insert = RowInsert(Positions)
    store = platform.dbproc.trading.store
    try:
        await db.fetch(insert.statement, *insert.args(row))
        with caplog.at_level("WARNING", logger="cfd_dbproc.trading.store"):
            held = [p for _, p in await store.every_open() if p.id == str(row["id"])]
            await store.every_open()
        assert len(held) == 1 and held[0].open_receipt is None and held[0].qty == row["qty"]
        assert len([r for r in caplog.records if "fill receipt cannot be read" in r.getMessage()]) == 1
    finally:
        await Positions.delete().where(Positions.id == row["id"]).run()
