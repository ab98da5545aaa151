"""Piccolo's SQLite engine with kept connections: the writer runs on the event loop, the reader in one trip.

Piccolo's own `SQLiteEngine` makes four trips per query (a `PRAGMA foreign_keys`, execute, fetch, close),
at about 90 µs a trip, and opens a new connection (and its thread) for every query outside a transaction
and for every transaction: that was most of an embedded order's time. `FastSQLiteEngine` keeps one
connection for transactions (`write_transaction`, serialised by `Database`) and one for the queries outside
them. The reader runs each query with aiosqlite's `execute_fetchall` (one trip to its thread).

The writer is a plain `sqlite3` connection called on the event loop: a command's statements touch a few rows
each and take microseconds, less than a trip to a thread and back (which also fights the loop for the GIL),
so a trading command costs a fraction of the time. What could make it wait is kept off it: it never
checkpoints (`wal_autocheckpoint=0`), the reader's thread does (`checkpoint`, every second, from `Database`),
and nothing else in the process writes (every write is a `write_transaction`, one at a time). Another
process writing the file (a migration run by hand while the platform runs) makes a `BEGIN IMMEDIATE` wait,
as it would have before.

Both set `synchronous=NORMAL`: with WAL, a commit survives the process dying (what the platform promises);
only a power cut can lose the last commits, and it saves an fsync per transaction.

What this relies on in Piccolo's SQLite engine (`piccolo.engine.sqlite`; `pyproject.toml` pins the minor
version it was checked against, and `tests/unit/test_piccolo_contract.py` fails if any of it changes):

- `SQLiteEngine.run_querystring` and `run_ddl` run a query through `_run_in_existing_connection(connection,
  query, args, query_type, table)` inside a transaction and `_run_in_new_connection(query, args,
  query_type, table)` outside one (private methods, overridden here with the same parameters).
- `SQLiteEngine.get_connection()` opens an aiosqlite connection with the rows as dicts and
  `PRAGMA foreign_keys = 1` already set, so the queries need not set them again; `connection_kwargs` are
  what it hands `sqlite3.connect` (the writer is opened with the same, so values convert alike).
- `SQLiteTransaction` and its savepoints only `await connection.execute(sql)` on the connection.
- `SQLiteTransaction` takes its connection from `engine.get_connection()` when it starts and calls
  `close()` on it when it ends: the kept writer is handed over wrapped in `_KeptConnection`, whose `close()`
  does nothing.
- Piccolo's inserts use `RETURNING` (SQLite 3.35 or newer); the overrides do not do Piccolo's fallback
  for older SQLite, which reads the new row's key with a second query.
"""

from __future__ import annotations

import contextlib
import contextvars
import sqlite3
from collections.abc import AsyncIterator, Callable
from typing import Any

from piccolo.engine.sqlite import SQLiteEngine, SQLiteTransaction, TransactionType, dict_factory


class _LoopConnection:
    """A `sqlite3` connection with the few awaitable methods Piccolo calls, run at once on the caller's thread."""

    def __init__(self, connection: sqlite3.Connection) -> None:
        self._connection = connection

    async def execute(self, sql: str, args: Any = None) -> sqlite3.Cursor:
        return self._connection.execute(sql, args or [])

    async def execute_fetchall(self, sql: str, args: Any = None) -> list[Any]:
        return self._connection.execute(sql, args or []).fetchall()

    async def set_trace_callback(self, callback: Callable[[str], object] | None) -> None:
        self._connection.set_trace_callback(callback)

    async def close(self) -> None:
        self._connection.close()


class _KeptConnection:
    """The writer's connection, handed to Piccolo's transaction, which closes what it is given."""

    def __init__(self, connection) -> None:
        self._connection = connection

    def __getattr__(self, name: str):
        return getattr(self._connection, name)

    async def close(self) -> None:
        pass


class FastSQLiteEngine(SQLiteEngine):
    """SQLite in WAL mode with `synchronous=NORMAL`, a kept writer and a kept reader connection."""

    _writer = None
    _reader = None
    _closed = False
    _in_transaction = contextvars.ContextVar("cfd_sqlite_in_transaction", default=False)

    async def _run_in_existing_connection(self, connection, query: str, args=None, query_type: str = "generic",
                                          table=None):
        # foreign keys and the dict rows were set when the connection opened (`get_connection`)
        return list(await connection.execute_fetchall(query, args or []))

    async def _run_in_new_connection(self, query: str, args=None, query_type: str = "generic", table=None):
        if self._closed:  # used after `close_connections`: a connection of its own, closed at once (no thread left)
            return await super()._run_in_new_connection(query, args, query_type, table)
        if self._reader is None:
            self._reader = await self._connect()
        # Piccolo opens connections in autocommit mode: a write outside a transaction commits by itself.
        return list(await self._reader.execute_fetchall(query, args or []))

    async def run_outside_transaction(self, query: str, args: Any) -> list[Any]:
        """A query outside any transaction, on the reader (rows as dicts)."""
        return await self._run_in_new_connection(query, args)

    async def get_connection(self):
        if self._in_transaction.get() and not self._closed:
            if self._writer is None:
                self._writer = self._connect_writer()
            return _KeptConnection(self._writer)
        return await self._connect()

    def _connect_writer(self) -> _LoopConnection:
        connection = sqlite3.connect(**self.connection_kwargs)
        connection.row_factory = dict_factory
        for pragma in ("foreign_keys = 1", "synchronous = NORMAL", "wal_autocheckpoint = 0"):
            connection.execute(f"PRAGMA {pragma}")
        return _LoopConnection(connection)

    async def checkpoint(self) -> None:
        """Copy the write-ahead log into the database file (PASSIVE: it waits for nothing), on the reader's
        thread: the writer never does, so the loop never waits for the fsyncs."""
        if self._closed:
            return
        if self._reader is None:
            self._reader = await self._connect()
        await self._reader.execute("PRAGMA wal_checkpoint(PASSIVE)")

    async def _connect(self):
        connection = await super().get_connection()
        await connection.execute("PRAGMA synchronous = NORMAL")
        return connection

    @contextlib.asynccontextmanager
    async def write_transaction(self) -> AsyncIterator[SQLiteTransaction]:
        """A `BEGIN IMMEDIATE` transaction on the kept writer (the caller serialises them)."""
        token = self._in_transaction.set(True)
        try:
            async with self.transaction(transaction_type=TransactionType.immediate) as transaction:
                yield transaction
        finally:
            self._in_transaction.reset(token)

    def reopen(self) -> None:
        """Keep connections again (after `close_connections`)."""
        self._closed = False

    async def close_connections(self) -> None:
        """Close the kept connections; from now on each query opens and closes a connection of its own."""
        self._closed = True
        for name in ("_writer", "_reader"):
            connection = getattr(self, name)
            if connection is not None:
                setattr(self, name, None)
                await connection.close()
