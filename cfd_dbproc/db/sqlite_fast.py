"""Piccolo's SQLite engine with kept connections: each query is one trip to its connection's thread.

Piccolo's own `SQLiteEngine` makes four trips per query (a `PRAGMA foreign_keys`, execute, fetch, close),
at about 90 µs a trip, and opens a new connection (and its thread) for every query outside a transaction
and for every transaction: that was most of an embedded order's time. `FastSQLiteEngine` keeps one
connection for transactions (`write_transaction`, serialised by `Database`) and one for the queries outside
them, and runs each query with aiosqlite's `execute_fetchall` (one trip). It also sets
`synchronous=NORMAL` on each connection: with WAL, a commit survives the process dying (what the platform
promises); only a power cut can lose the last commits, and it saves an fsync per transaction.

What this relies on in Piccolo's SQLite engine (`piccolo.engine.sqlite`; `pyproject.toml` pins the minor
version it was checked against, and `tests/unit/test_piccolo_contract.py` fails if any of it changes):

- `SQLiteEngine.run_querystring` and `run_ddl` run a query through `_run_in_existing_connection(connection,
  query, args, query_type, table)` inside a transaction and `_run_in_new_connection(query, args,
  query_type, table)` outside one (private methods, overridden here with the same parameters).
- `SQLiteEngine.get_connection()` opens an aiosqlite connection with the rows as dicts and
  `PRAGMA foreign_keys = 1` already set, so the queries need not set them again.
- `SQLiteTransaction` takes its connection from `engine.get_connection()` when it starts and calls
  `close()` on it when it ends: the kept writer is handed over wrapped in `_KeptConnection`, whose `close()`
  does nothing.
- Piccolo's inserts use `RETURNING` (SQLite 3.35 or newer); the overrides do not do Piccolo's fallback
  for older SQLite, which reads the new row's key with a second query.
"""

from __future__ import annotations

import contextlib
import contextvars
from collections.abc import AsyncIterator

from piccolo.engine.sqlite import SQLiteEngine, TransactionType


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

    async def get_connection(self):
        if self._in_transaction.get() and not self._closed:
            if self._writer is None:
                self._writer = await self._connect()
            return _KeptConnection(self._writer)
        return await self._connect()

    async def _connect(self):
        connection = await super().get_connection()
        await connection.execute("PRAGMA synchronous = NORMAL")
        return connection

    @contextlib.asynccontextmanager
    async def write_transaction(self) -> AsyncIterator[None]:
        """A `BEGIN IMMEDIATE` transaction on the kept writer (the caller serialises them)."""
        token = self._in_transaction.set(True)
        try:
            async with self.transaction(transaction_type=TransactionType.immediate):
                yield
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
