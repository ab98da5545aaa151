"""The contract `cfd_dbproc.db.sqlite_fast` has with the installed Piccolo: the private methods it overrides are
there with the same parameters and are still what Piccolo runs queries through, and on a real SQLite file
each query is one statement on a kept connection, with foreign keys on, dict rows, `RETURNING` inserts and
transactions that commit and roll back on the kept writer.

When this fails after a Piccolo upgrade, read `sqlite_fast`'s docstring and check each point against the
new version before moving the pin in `pyproject.toml`.
"""

from __future__ import annotations

import ast
import inspect
import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path

import aiosqlite
import pytest
from piccolo.columns import ForeignKey, Varchar
from piccolo.engine.sqlite import SQLiteEngine, SQLiteTransaction
from piccolo.table import Table

from cfd_dbproc.db.sqlite_fast import FastSQLiteEngine


class ContractParent(Table, tablename="contract_parent"):
    name = Varchar(length=20)


class ContractChild(Table, tablename="contract_child"):
    parent = ForeignKey(ContractParent)


def _calls(function) -> set[str]:
    """The names of the methods `function` calls on `self` (or on `self.<attribute>`)."""
    tree = ast.parse(inspect.cleandoc("\n" + inspect.getsource(function)))
    return {node.func.attr for node in ast.walk(tree)
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)}


def test_the_private_methods_it_overrides_are_there_with_the_same_parameters():
    assert list(inspect.signature(SQLiteEngine._run_in_existing_connection).parameters) == [
        "self", "connection", "query", "args", "query_type", "table"]
    assert list(inspect.signature(SQLiteEngine._run_in_new_connection).parameters) == [
        "self", "query", "args", "query_type", "table"]
    assert list(inspect.signature(SQLiteEngine.get_connection).parameters) == ["self"]
    assert callable(aiosqlite.Connection.execute_fetchall)


def test_piccolo_still_runs_queries_and_transactions_through_them():
    for method in (SQLiteEngine.run_querystring, SQLiteEngine.run_ddl):
        assert {"_run_in_existing_connection", "_run_in_new_connection"} <= _calls(method), method.__name__
    assert "get_connection" in _calls(SQLiteTransaction.__aenter__) | _calls(SQLiteTransaction.get_connection)
    assert "close" in _calls(SQLiteTransaction.__aexit__)  # why the kept writer is handed over wrapped


def test_sqlite_has_returning():
    # the overrides skip Piccolo's fallback for inserts on SQLite older than 3.35 (no RETURNING)
    assert sqlite3.sqlite_version_info >= (3, 35)


class Traced:
    """The statements SQLite ran on each kept connection (its trace callback)."""

    def __init__(self) -> None:
        self.statements: dict[str, list[str]] = {}

    async def attach(self, name: str, connection) -> None:
        self.statements[name] = []
        await connection.set_trace_callback(self.statements[name].append)

    def take(self, name: str) -> list[str]:
        taken, self.statements[name][:] = list(self.statements[name]), []
        return taken


@pytest.fixture
async def engine(tmp_path: Path) -> AsyncIterator[FastSQLiteEngine]:
    engine = FastSQLiteEngine(path=str(tmp_path / "contract.sqlite3"), timeout=30)
    ContractParent._meta.db = ContractChild._meta.db = engine  # these tables are this file's own
    await engine.run_ddl("PRAGMA journal_mode=WAL")
    await ContractParent.create_table().run()
    await ContractChild.create_table().run()
    try:
        yield engine
    finally:
        await engine.close_connections()


async def test_each_query_is_one_statement_on_a_kept_connection(engine, monkeypatch):
    opened = []
    connect = aiosqlite.connect
    monkeypatch.setattr(aiosqlite, "connect", lambda *a, **k: opened.append(1) or connect(*a, **k))
    traced = Traced()
    await engine.run_ddl("SELECT 1")
    reader = engine._reader
    await traced.attach("reader", reader)

    for name in ("a", "b", "c"):
        rows = await ContractParent.insert(ContractParent(name=name)).run()
        assert isinstance(rows[0]["id"], int)  # the key, by RETURNING
    rows = await ContractParent.select(ContractParent.name).order_by(ContractParent.id).run()
    assert rows == [{"name": "a"}, {"name": "b"}, {"name": "c"}]  # dict rows
    assert engine._reader is reader and opened == []  # no new connection
    statements = traced.take("reader")
    assert len(statements) == 4 and not any("PRAGMA" in s for s in statements), statements

    with pytest.raises(sqlite3.IntegrityError):  # foreign keys are on for the reader
        await ContractChild.insert(ContractChild(parent=999)).run()


async def test_transactions_run_on_the_kept_writer_and_commit_or_roll_back(engine):
    traced = Traced()
    async with engine.write_transaction():
        await ContractParent.insert(ContractParent(name="first")).run()
    writer = engine._writer
    assert writer is not None
    await traced.attach("writer", writer)

    async with engine.write_transaction():
        parent = (await ContractParent.insert(ContractParent(name="second")).run())[0]["id"]
        await ContractChild.insert(ContractChild(parent=parent)).run()
    assert engine._writer is writer  # kept: the transaction's close() did not close it
    statements = traced.take("writer")
    assert statements[0].startswith("BEGIN IMMEDIATE") and statements[-1] == "COMMIT", statements
    assert len(statements) == 4, statements  # BEGIN, two inserts, COMMIT: no PRAGMA per query

    with pytest.raises(sqlite3.IntegrityError):  # foreign keys are on for the writer
        async with engine.write_transaction():
            await ContractParent.insert(ContractParent(name="rolled back")).run()
            await ContractChild.insert(ContractChild(parent=999)).run()
    assert traced.take("writer")[-1] == "ROLLBACK"
    names = await ContractParent.select(ContractParent.name).order_by(ContractParent.id).output(as_list=True).run()
    assert names == ["first", "second"]


async def test_after_closing_its_connections_it_still_answers_and_keeps_them_again_when_reopened(engine):
    await ContractParent.insert(ContractParent(name="kept")).run()
    await engine.close_connections()
    assert engine._reader is None and engine._writer is None
    assert await ContractParent.count().run() == 1  # a connection of its own, closed at once
    assert engine._reader is None
    engine.reopen()
    assert await ContractParent.count().run() == 1
    assert engine._reader is not None
