"""How the dbproc's Responder answers a handler that fails: an outage is a 503, anything else a 500 that
names no exception class (`shared/bus/rpc.py`, `shared/db_failures.py`)."""

from __future__ import annotations

import logging
import socket
import sqlite3
from decimal import Decimal, InvalidOperation

import asyncpg
import msgspec
import pytest

from shared.bus.memory import MemoryBus
from shared.bus.rpc import Responder
from shared.contracts.bus import BusRequest, HealthQuery, HealthReport
from shared.db_failures import database_outage
from shared.errors import Rejected, error_from_wire
from shared.operations import Operation, Route

FAILING = Operation("test.fail", Route.HEALTH, HealthQuery, HealthReport)


def _request() -> BusRequest:
    return BusRequest(type="test.fail", command_id="c1", correlation_id="r1", reply_to="server-1",
                      body=msgspec.Raw(b"{}"))


async def answer(exc: BaseException) -> dict:
    async def handler(_: HealthQuery) -> HealthReport:
        raise exc

    responder = Responder(MemoryBus(), "replies")
    responder.handle(FAILING, handler)
    reply = await responder.answer(_request())
    assert reply.error is not None
    return msgspec.to_builtins(reply.error)


def _sqlite_error(make) -> sqlite3.Error:
    try:
        make()
    except sqlite3.Error as exc:
        return exc
    raise AssertionError("SQLite did not fail")


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def _refused_connection() -> OSError:
    try:
        await asyncpg.connect(host="127.0.0.1", port=_closed_port(), user="x", timeout=5)
    except OSError as exc:
        return exc
    raise AssertionError("the connection should have been refused")


async def test_a_decimal_overflow_is_an_internal_error_not_an_outage(caplog):
    try:
        (Decimal("1E+25") * 100).quantize(Decimal("0.01"))  # the margin of 1E+25 SOL once, in the dbproc
    except InvalidOperation as exc:
        error = await answer(exc)
    assert error["status"] == 500 and error["code"] == "internal_error"
    assert "InvalidOperation" not in msgspec.json.encode(error).decode()
    assert error["details"] == {"request_id": "r1"}
    assert any(r.exc_info and r.levelno == logging.ERROR for r in caplog.records), "a bug is logged with its trace"
    assert error_from_wire(error["status"], error["code"], error["message"]).status == 500


@pytest.mark.parametrize("make", [
    lambda: asyncpg.exceptions.NumericValueOutOfRangeError("numeric field overflow"),
    lambda: asyncpg.exceptions.UniqueViolationError("duplicate key value"),
    lambda: asyncpg.exceptions.InterfaceError("cannot perform operation: another operation is in progress"),
    lambda: _sqlite_error(lambda: sqlite3.connect(":memory:").execute("SELECT * FROM no_such_table")),
    lambda: KeyError("balance"),
])
async def test_other_failures_are_internal_errors(make):
    error = await answer(make())
    assert (error["status"], error["code"]) == (500, "internal_error")
    assert "Error" not in error["message"]


def _raised_while_handling(first: Exception, second: Exception) -> Exception:
    try:
        try:
            raise first
        except Exception:
            raise second  # noqa: B904 - the implicit context is the point
    except Exception as exc:
        return exc


@pytest.mark.parametrize("make", [
    lambda: asyncpg.exceptions.ConnectionDoesNotExistError("connection was closed in the middle of operation"),
    lambda: asyncpg.exceptions.AdminShutdownError("terminating connection due to administrator command"),
    lambda: asyncpg.exceptions.CannotConnectNowError("the database system is starting up"),
    lambda: asyncpg.exceptions.TooManyConnectionsError("sorry, too many clients already"),
    lambda: asyncpg.exceptions.DeadlockDetectedError("deadlock detected"),
    # what a pooled connection that broke while PostgreSQL restarted raises on its next use
    lambda: asyncpg.exceptions._base.InternalClientError("cannot switch to state 15; another operation (2) is "
                                                         "in progress"),
    # ... and the rollback that follows, on the connection PostgreSQL closed: the first failure is its context
    lambda: _raised_while_handling(
        asyncpg.exceptions._base.InternalClientError("cannot switch to state 12; another operation (2) is in "
                                                     "progress"),
        asyncpg.exceptions.InterfaceError("cannot call Transaction.rollback(): the underlying connection is "
                                          "closed")),
    lambda: _sqlite_error(lambda: sqlite3.connect("/nonexistent-directory/cfd.sqlite3")),
    lambda: TimeoutError(),
    lambda: ConnectionResetError(104, "Connection reset by peer"),
])
async def test_database_outages_are_503_backend_unavailable(make):
    error = await answer(make())
    assert (error["status"], error["code"]) == (503, "backend_unavailable")
    assert error["details"]["backend"] == "database" and error["details"]["reason"]
    assert error["retry_after"] == 5
    assert "Error" not in error["details"]["reason"]


async def test_an_unreachable_postgresql_is_an_outage():
    reason = database_outage(await _refused_connection())
    assert reason is not None and reason.startswith("cannot reach the database")


async def test_a_locked_sqlite_database_is_an_outage(tmp_path):
    path = tmp_path / "locked.sqlite3"
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("CREATE TABLE t (x)")
    holder.execute("BEGIN EXCLUSIVE")
    try:
        busy = _sqlite_error(lambda: sqlite3.connect(path, timeout=0).execute("SELECT * FROM t"))
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    assert database_outage(busy) is not None


async def test_client_errors_from_handlers_pass_through():
    error = await answer(Rejected("No.", code="insufficient_margin"))
    assert (error["status"], error["code"]) == (422, "insufficient_margin")
