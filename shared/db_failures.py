"""Which failures mean "the database cannot serve us right now", as opposed to a bug.

A request that fails because PostgreSQL or SQLite is unreachable, shutting down, out of resources or busy
is answered 503 `backend_unavailable` (retry later); any other failure is an internal error. The reason
given is for operators and says what happened in words, never naming an exception class.

- Any `OSError`: the connection could not be made or was lost (refused, reset, unreachable host, a
  timeout opening it or waiting for a pooled one: `TimeoutError` is an `OSError`).
- asyncpg's `InternalClientError` ("cannot switch to state ..."): what a connection that broke in the
  middle of an operation (PostgreSQL restarting) raises on its next use; and its `InterfaceError` on a
  connection that is closed. An exception raised while handling one of these (a failed rollback) counts too.
- PostgreSQL (asyncpg errors carry the server's SQLSTATE): class 08 (connection exception), 53
  (insufficient resources: too many connections, disk full, out of memory), 57 (operator intervention:
  shutdown, crash recovery, "cannot connect now", a cancelled or timed-out statement), and the two
  conflicts PostgreSQL itself says to retry, 40001 (serialization failure) and 40P01 (deadlock).
- SQLite (result code of `sqlite3.Error`): BUSY, LOCKED, NOMEM, READONLY, IOERR, CORRUPT, FULL, CANTOPEN,
  PROTOCOL and NOTADB: the file is locked, missing, unreadable or its disk is full.

Everything else (a constraint violation, a numeric overflow, a syntax error, "no such table") is a bug or
a missed validation: the dbproc logs it with its traceback and answers an internal error.
"""

from __future__ import annotations

import sqlite3

from asyncpg.exceptions import InterfaceError, InternalClientError

_POSTGRES_CLASSES = {"08": "the connection to PostgreSQL failed", "53": "PostgreSQL is out of resources",
                     "57": "PostgreSQL is shutting down or refused the statement"}
_POSTGRES_STATES = {"40001": "PostgreSQL could not serialise concurrent transactions",
                    "40P01": "PostgreSQL found a deadlock between transactions"}
_SQLITE_CODES = {
    sqlite3.SQLITE_BUSY: "the SQLite database is busy",
    sqlite3.SQLITE_LOCKED: "the SQLite database is locked",
    sqlite3.SQLITE_NOMEM: "SQLite is out of memory",
    sqlite3.SQLITE_READONLY: "the SQLite database is read-only",
    sqlite3.SQLITE_IOERR: "SQLite could not read or write its file",
    sqlite3.SQLITE_CORRUPT: "the SQLite database file is corrupt",
    sqlite3.SQLITE_FULL: "the disk of the SQLite database is full",
    sqlite3.SQLITE_CANTOPEN: "SQLite cannot open its database file",
    sqlite3.SQLITE_PROTOCOL: "SQLite could not take its file lock",
    sqlite3.SQLITE_NOTADB: "the SQLite database file is not a database",
}


def database_outage(exc: BaseException) -> str | None:
    """Why the database cannot serve this request, if `exc` or an exception it was raised while handling
    says so (a rollback that fails on a connection PostgreSQL closed hides the first failure); None when
    none of them is an outage."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if (reason := _outage(current)) is not None:
            return reason
        current = current.__cause__ or current.__context__
    return None


def _outage(exc: BaseException) -> str | None:
    if isinstance(exc, OSError):
        return f"cannot reach the database ({exc.strerror or str(exc) or 'no answer'})"
    if isinstance(exc, InternalClientError):  # asyncpg's state after its connection broke mid-operation
        return "the connection to PostgreSQL broke in the middle of an operation"
    if isinstance(exc, InterfaceError) and "connection is closed" in str(exc):
        return "the connection to PostgreSQL was closed"
    sqlstate = getattr(exc, "sqlstate", None)
    if isinstance(sqlstate, str):
        reason = _POSTGRES_STATES.get(sqlstate) or _POSTGRES_CLASSES.get(sqlstate[:2])
        return f"{reason} (SQLSTATE {sqlstate})" if reason else None
    if isinstance(exc, sqlite3.Error):
        code = getattr(exc, "sqlite_errorcode", None)
        if isinstance(code, int) and (reason := _SQLITE_CODES.get(code & 0xFF)):
            return f"{reason}: {exc}"
    return None
