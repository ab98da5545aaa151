"""Retention in the database: what only needs to live a while is purged, in small batches, by the dbproc.

- `processed_commands`: a command's stored reply answers its retries; it is kept `CFD_COMMAND_RETENTION_HOURS`
  (48 h by default), far beyond any client's or the bus's retry.
- `account_events`: each account event is kept `CFD_ACCOUNT_EVENT_RETENTION_HOURS` (72 h by default), for
  clients that resume the `account` channel after it; one away longer rebuilds from a fresh state.
- `candles`: 1-minute candles are kept `CFD_CANDLE_MINUTE_RETENTION_DAYS` (30 days by default; 0 keeps them),
  never less than the poller's history window, or each poller start would fetch the purged minutes again.

Positions, ledger entries, accounts and users are never purged: they are the financial record, and the
ledger invariant needs every entry.

Each batch is one short transaction deleting at most `BATCH_ROWS` rows, with a pause between batches, so
commands wait at most one batch (SQLite has one writer). Several dbprocs may purge at once: on PostgreSQL
each batch skips the rows another instance has locked (`FOR UPDATE SKIP LOCKED`), so they split the work
instead of queueing behind each other; deleting a row that is already gone deletes nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from dataclasses import dataclass

from piccolo.table import Table

from cfd_dbproc.db import Database
from cfd_dbproc.db.tables import AccountEvents, Candles, ProcessedCommands
from shared import clock
from shared.candles import MINUTE_MS
from shared.settings import RetentionSettings

log = logging.getLogger(__name__)

BATCH_ROWS = 1000
BATCH_PAUSE_SECONDS = 0.05
HOUR_MS = 60 * MINUTE_MS

# `{table}`, `{key}` and `{time}` are fixed names from the `Purge`s below, never client text.
_DELETE_BATCH = ("DELETE FROM {table} WHERE {key} IN "
                 "(SELECT {key} FROM {table} WHERE {time} < {{}} LIMIT {rows}{lock}) RETURNING 1")


@dataclass(frozen=True)
class Purge:
    """One table's purge: the rows whose `time` column is older than the cutoff."""

    table: type[Table]
    key: str
    time: str

    @property
    def name(self) -> str:
        return self.table._meta.tablename


COMMANDS = Purge(ProcessedCommands, "command_id", "created_at")
ACCOUNT_EVENTS = Purge(AccountEvents, "id", "created_at")
MINUTE_CANDLES = Purge(Candles, "id", "t")


class Retention:
    """Purges old idempotency records, account events and 1-minute candles every
    `CFD_RETENTION_INTERVAL_SECONDS`."""

    def __init__(self, settings: RetentionSettings, db: Database, *, history_hours: int) -> None:
        """`history_hours`: the poller's history window (`CFD_CANDLE_HISTORY_HOURS`)."""
        self.settings = settings
        self.history_hours = history_hours
        self.db = db
        self._task: asyncio.Task[None] | None = None

    def command_cutoff(self, now_ms: int) -> int:
        """Commands applied before this time (epoch ms) are forgotten: a retry of one would apply it again."""
        return now_ms - self.settings.command_hours * HOUR_MS

    def account_event_cutoff(self, now_ms: int) -> int:
        """Account events stored before this time (epoch ms) are purged: a resume from before them is a gap."""
        return now_ms - self.settings.account_event_hours * HOUR_MS

    def candle_cutoff(self, now_ms: int) -> int | None:
        """1m candles before this time are purged; None keeps them all."""
        days = self.settings.candle_minute_days
        if days <= 0:
            return None
        kept_ms = max(days * 24 * HOUR_MS, (self.history_hours + 1) * HOUR_MS)
        return now_ms - kept_ms

    async def purge(self, now_ms: int | None = None) -> dict[str, int]:
        """One purge run of every table with a window; returns the rows deleted per table, logs one line."""
        now_ms = clock.now_ms() if now_ms is None else now_ms
        started = time.monotonic()
        deleted = {COMMANDS.name: await self._purge(COMMANDS, self.command_cutoff(now_ms)),
                   ACCOUNT_EVENTS.name: await self._purge(ACCOUNT_EVENTS, self.account_event_cutoff(now_ms))}
        candle_cutoff = self.candle_cutoff(now_ms)
        if candle_cutoff is not None:
            deleted[MINUTE_CANDLES.name] = await self._purge(MINUTE_CANDLES, candle_cutoff)
        if any(deleted.values()):
            log.info("retention: purged %s in %.1f s",
                     ", ".join(f"{n} {table}" for table, n in deleted.items()), time.monotonic() - started)
        return deleted

    async def _purge(self, purge: Purge, cutoff: int) -> int:
        lock = "" if self.db.is_sqlite else " FOR UPDATE SKIP LOCKED"
        sql = _DELETE_BATCH.format(table=purge.name, key=purge.key, time=purge.time, rows=BATCH_ROWS, lock=lock)
        total = 0
        while True:
            async with self.db.transaction():
                rows = len(await purge.table.raw(sql, cutoff).run())
            total += rows
            if rows < BATCH_ROWS:
                return total
            await asyncio.sleep(BATCH_PAUSE_SECONDS)

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run(), name="dbproc-retention")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def _run(self) -> None:
        while True:
            try:
                await self.purge()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # a database outage: the next run catches up
                log.warning("retention: purge failed, next try in %g s: %s",
                            self.settings.interval_seconds, exc)
            await asyncio.sleep(self.settings.interval_seconds)
