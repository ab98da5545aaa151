"""Retention in the database: the dbproc's purge forgets old idempotency records and old 1-minute candles,
keeps recent ones (a retry within the window is still answered from its record), and never touches
positions or ledger entries: the ledger invariant holds after a purge."""

from __future__ import annotations

import time
import uuid
from decimal import Decimal

from helpers import set_price, signed_in

from cfd_dbproc.db.tables import Accounts, Candles, LedgerEntries, Positions, ProcessedCommands, Users
from cfd_dbproc.retention import HOUR_MS
from shared.candles import MINUTE_MS

ORDER = {"symbol": "DOGE_USDC", "side": "long", "qty": "10", "leverage": 1}
DAY_MS = 24 * HOUR_MS


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


async def _user_id(email: str) -> uuid.UUID:
    return (await Users.select(Users.id).where(Users.email == email).first().run())["id"]


async def _records(user_id: uuid.UUID) -> tuple[list[dict], list[dict]]:
    positions = await Positions.select().where(Positions.user_id == user_id).order_by(Positions.id).run()
    entries = await LedgerEntries.select().where(LedgerEntries.user_id == user_id).order_by(LedgerEntries.id).run()
    return positions, entries


async def _assert_ledger_invariant(user_id: uuid.UUID) -> None:
    balance = (await Accounts.select(Accounts.balance).where(Accounts.user_id == user_id).first().run())["balance"]
    positions, entries = await _records(user_id)
    assert balance == sum((e["amount"] for e in entries), Decimal(0))
    realized = {e["reference"]: e["amount"] for e in entries if e["kind"] == "realized_pnl"}
    assert {str(p["id"]): p["realized_pnl"] for p in positions if p["status"] == "closed"} == realized


async def test_purge_forgets_old_commands_keeps_recent_ones_and_never_touches_the_ledger(
        platform, api, mailbox, email):
    auth = await signed_in(api, mailbox, email)
    await set_price(platform, "DOGE_USDC", "0.30000", "0.30001")

    async def open_with(key: str) -> dict:
        response = await api.post("/positions", headers={**auth, "Idempotency-Key": key}, json=ORDER)
        assert response.status_code == 201, response.text
        return response.json()

    old, recent = await open_with("old-order"), await open_with("recent-order")
    closed = await api.post(f"/positions/{old['id']}/close", headers={**auth, "Idempotency-Key": "old-close"})
    assert closed.status_code == 200, closed.text
    user_id = await _user_id(email)
    # Age this user's records of the old order and its close beyond the window (48 h by default).
    window_ms = platform.settings.retention.command_hours * HOUR_MS
    long_ago = _now_ms() - window_ms - HOUR_MS
    mine = await ProcessedCommands.select(ProcessedCommands.command_id, ProcessedCommands.reply).where(
        ProcessedCommands.user_id == str(user_id)).run()
    aged = [r["command_id"] for r in mine if old["id"] in r["reply"]]
    assert len(aged) == 2  # the open and the close
    await ProcessedCommands.update({ProcessedCommands.created_at: long_ago}).where(
        ProcessedCommands.command_id.is_in(aged)).run()
    # Ledger entries and positions that old are financial records: they must survive the purge.
    await LedgerEntries.update({LedgerEntries.created_at: long_ago}).where(LedgerEntries.user_id == user_id).run()
    await Positions.update({Positions.opened_at: long_ago}).where(Positions.user_id == user_id).run()
    before = await _records(user_id)

    deleted = await platform.dbproc.retention.purge()

    assert deleted["processed_commands"] >= 2
    left = {r["command_id"] for r in await ProcessedCommands.select(ProcessedCommands.command_id).where(
        ProcessedCommands.user_id == str(user_id)).run()}
    assert left.isdisjoint(aged) and len(left) == len(mine) - 2
    assert await _records(user_id) == before
    await _assert_ledger_invariant(user_id)
    # A retry within the window is still answered from its record: the same position, nothing new.
    assert (await open_with("recent-order"))["id"] == recent["id"]
    # A retry beyond the window is a new command (as documented): it opens a second position.
    again = await open_with("old-order")
    assert again["id"] != old["id"]
    assert len((await api.get("/positions?status=open", headers=auth)).json()) == 2
    await _assert_ledger_invariant(user_id)


async def test_purge_expires_old_one_minute_candles_and_keeps_the_window(platform, api):
    # A market of its own, so no other test's candles share its minutes; BNB_USDC for what the API serves.
    symbol, served = "RETENTION_TEST", "BNB_USDC"
    now = _now_ms() // MINUTE_MS * MINUTE_MS
    days = platform.settings.retention.candle_minute_days
    minutes = {"old": now - (days + 2) * DAY_MS, "edge": now - days * DAY_MS + HOUR_MS, "recent": now - HOUR_MS}
    rows = [(symbol, t) for t in minutes.values()] + [(served, minutes["old"])]
    for market, t in rows:
        await Candles.insert(Candles(symbol=market, t=t, o=Decimal(600), h=Decimal(601), l=Decimal(599),
                                     c=Decimal(600), n=3, last_tick_us=t * 1000)).run()

    deleted = await platform.dbproc.retention.purge()

    assert deleted["candles"] >= 2
    kept = {r["t"] for r in await Candles.select(Candles.t).where(Candles.symbol == symbol).run()}
    assert kept == {minutes["edge"], minutes["recent"]}
    # What the API serves is what the window holds: nothing older than it, for any interval.
    for interval in ("1m", "1d"):
        response = await api.get(f"/candles/{served}", params={"interval": interval, "limit": 1000})
        assert response.status_code == 200, response.text
        assert all(c["t"] >= minutes["old"] + DAY_MS for c in response.json())
