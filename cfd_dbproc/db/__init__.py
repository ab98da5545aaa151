"""The database: Piccolo on SQLite (default) or PostgreSQL (asyncpg), chosen by `CFD_DATABASE_URL`."""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import io
import logging
import os
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from piccolo.engine.base import Engine
from piccolo.engine.postgres import PostgresEngine

from cfd_dbproc.db import piccolo_conf
from cfd_dbproc.db.sqlite_fast import FastSQLiteEngine
from cfd_dbproc.db.statements import Statement
from cfd_dbproc.db.tables import ALL_TABLES
from shared.errors import BackendDown
from shared.outage import Outage, quiet_repeats
from shared.settings import DatabaseSettings, private_dir, private_file

log = logging.getLogger(__name__)

# Piccolo's migration machinery finds its engine through this module.
os.environ.setdefault("PICCOLO_CONF", "cfd_dbproc.db.piccolo_conf")


def sqlite_path(url: str) -> Path:
    """`sqlite:///relative.db` and `sqlite:////absolute.db` both map to a file path."""
    return Path(url.removeprefix("sqlite:///"))


class Database:
    """The engine plus the one way the platform writes: a transaction per command, or a group of commands in
    one transaction (`group`), each in a savepoint."""

    def __init__(self, settings: DatabaseSettings, data_dir: Path) -> None:
        """`data_dir`: the platform's data directory, made owner-only when it holds the SQLite file."""
        self.url = settings.url
        self.is_sqlite = settings.uses_sqlite
        self.engine: Engine
        if self.is_sqlite:
            path = sqlite_path(self.url)
            _private_sqlite_files(path, data_dir)
            self.engine = FastSQLiteEngine(path=str(path), timeout=30)
        else:
            self.engine = PostgresEngine(config={"dsn": self.url}, log_queries=False)
            quiet_repeats("asyncpg")  # its pool logs a traceback on every failed reconnect while PostgreSQL is down
        # SQLite has one writer; serialising here turns "database is locked" into a short wait.
        self._sqlite_lock = asyncio.Lock()
        self._started = False
        self._previous_engine: Engine | None = None
        self._checkpoints: asyncio.Task[None] | None = None

    async def start(self, *, pool_size: int = 10) -> None:
        """Bind the tables to this engine and open the pool (PostgreSQL); a second call does nothing."""
        if self._started:
            return
        self._started = True
        self._previous_engine = piccolo_conf.DB
        _bind(self.engine)
        if isinstance(self.engine, FastSQLiteEngine):
            self.engine.reopen()
        if isinstance(self.engine, PostgresEngine):
            try:
                await self.engine.start_connection_pool(min_size=1, max_size=pool_size)
            except (OSError, Exception) as exc:
                raise BackendDown("database", f"PostgreSQL at {_host(self.url)}: {exc}") from exc
        else:
            await self.engine.run_ddl("PRAGMA journal_mode=WAL")
            self._checkpoints = asyncio.get_running_loop().create_task(self._checkpoint_every_second())

    async def _checkpoint_every_second(self) -> None:
        """The SQLite writer never checkpoints (see `sqlite_fast`): the write-ahead log is copied back here."""
        assert isinstance(self.engine, FastSQLiteEngine)
        failing = Outage("SQLite checkpoints fail (the write-ahead log grows until they succeed)", log)
        while True:
            await asyncio.sleep(1)
            try:
                await self.engine.checkpoint()
            except Exception as exc:  # a disk error shows on the next write too
                failing.failed(exc)
            else:
                failing.recovered()

    async def stop(self) -> None:
        if self._started and piccolo_conf.DB is self.engine and self._previous_engine is not None:
            # Piccolo's tables are bound process-wide: give them back to the database started before this
            # one (a second platform in one process), not leave them on a closed one.
            _bind(self._previous_engine)
        self._started = False
        if self._checkpoints is not None:
            self._checkpoints.cancel()
            await asyncio.gather(self._checkpoints, return_exceptions=True)
            self._checkpoints = None
        if isinstance(self.engine, FastSQLiteEngine):
            await self.engine.close_connections()
        if not self.is_sqlite:
            with contextlib.suppress(Exception):
                await self.engine.close_connection_pool()

    @contextlib.asynccontextmanager
    async def transaction(self) -> AsyncIterator[None]:
        """One command's transaction; inside a `group`, a savepoint of the group's (a failure undoes this
        command's writes only)."""
        group = _GROUP.get()
        if group is None:
            async with self._begin():
                yield
            return
        savepoint = await group.transaction.savepoint()
        try:
            yield
        except BaseException:
            with contextlib.suppress(Exception):  # the database went away: the group's commit fails too
                await savepoint.rollback_to()
                await savepoint.release()
            raise
        await savepoint.release()

    @contextlib.asynccontextmanager
    async def group(self) -> AsyncIterator[None]:
        """One transaction for a run of commands (group commit): every `transaction` inside it is a savepoint,
        and the callbacks given to `after_commit` run once it has committed, in order (never if it did not)."""
        if _GROUP.get() is not None:
            raise RuntimeError("a group commit is already open")
        group = _Group()
        try:
            async with self._begin() as transaction:
                group.transaction = transaction
                token = _GROUP.set(group)
                try:
                    yield
                finally:
                    _GROUP.reset(token)
        except BaseException:
            for undo in group.rolled_back:
                undo()
            raise
        for callback in group.after:  # committed: each runs, whatever the others do
            try:
                await callback()
            except Exception:
                log.exception("an after-commit step failed (what it did is committed)")

    @staticmethod
    async def after_commit(callback: Callable[[], Awaitable[object]]) -> None:
        """Run `callback` once what was written is committed: now, or when the open `group` commits."""
        group = _GROUP.get()
        if group is None:
            await callback()
        else:
            group.after.append(callback)

    @staticmethod
    def on_rollback(callback: Callable[[], object]) -> None:
        """Run `callback` if the open `group` does not commit (a command that fails alone sees its own failure)."""
        group = _GROUP.get()
        if group is not None:
            group.rolled_back.append(callback)

    @contextlib.asynccontextmanager
    async def _begin(self) -> AsyncIterator[Any]:
        if isinstance(self.engine, FastSQLiteEngine):
            async with self._sqlite_lock, self.engine.write_transaction() as transaction:
                yield transaction
        else:
            async with self.engine.transaction() as transaction:
                yield transaction

    async def fetch(self, statement: Statement, *args: Any) -> list[dict[str, Any]]:
        """Run `statement` where Piccolo would run a query (in the open transaction, if any) and return its rows
        as Piccolo does: dicts, with the values its converters give."""
        engine = self.engine
        transaction = engine.current_transaction.get()
        if isinstance(engine, FastSQLiteEngine):
            if transaction is not None:
                return list(await transaction.connection.execute_fetchall(statement.sqlite, args))
            return await engine.run_outside_transaction(statement.sqlite, args)
        assert isinstance(engine, PostgresEngine)
        if transaction is not None:
            rows = await transaction.connection.fetch(statement.postgres, *args)
        elif engine.pool is None:
            raise BackendDown("database", "the database was not started")
        else:
            async with engine.pool.acquire() as connection:
                rows = await connection.fetch(statement.postgres, *args)
        return [dict(row) for row in rows]

    async def ping(self) -> None:
        try:
            await self.engine.run_ddl("SELECT 1")
        except Exception as exc:
            raise BackendDown("database", f"{_host(self.url)}: {exc}") from exc


class _Group:
    """An open group commit: its transaction, what runs after it commits, and what runs if it does not."""

    __slots__ = ("after", "rolled_back", "transaction")

    def __init__(self) -> None:
        self.transaction: Any = None
        self.after: list[Callable[[], Awaitable[object]]] = []
        self.rolled_back: list[Callable[[], object]] = []


_GROUP: contextvars.ContextVar[_Group | None] = contextvars.ContextVar("cfd_group_commit", default=None)

SQLITE_SIDE_FILES = ("-wal", "-shm", "-journal")


def _private_sqlite_files(path: Path, data_dir: Path) -> None:
    """The database holds password hashes: its file is owner-only before SQLite first opens it, so the
    side files SQLite makes later (-wal, -shm, -journal) are too (SQLite gives them the database's mode).
    Its directory is made owner-only when it is the data directory or new; any other is left as it is."""
    directory = path.parent
    if not directory.exists() or directory.resolve() == data_dir.resolve():
        private_dir(directory)
    private_file(path)
    for suffix in SQLITE_SIDE_FILES:
        private_file(path.with_name(path.name + suffix), create=False)  # left by an earlier run


def _bind(engine: Engine) -> None:
    piccolo_conf.DB = engine
    for table in ALL_TABLES:
        table._meta.db = engine


def _host(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.hostname}:{parts.port or 5432}/{parts.path.lstrip('/')}"


async def migrate(database: Database) -> list[str]:
    """Apply the committed migrations that have not run yet; returns the names of those applied."""
    from piccolo.apps.migrations.commands.forwards import run_forwards

    await database.start()
    before = await _applied(database)
    chatter = io.StringIO()  # Piccolo prints progress; the CLI reports the outcome itself
    with contextlib.redirect_stdout(chatter):
        result = await run_forwards(app_name="cfd", migration_id="all", fake=False)
    if not result.success:
        raise RuntimeError(f"migration failed: {result.message}\n{chatter.getvalue()}")
    after = await _applied(database)
    return [name for name in after if name not in before]


async def _applied(database: Database) -> list[str]:
    from piccolo.apps.migrations.tables import Migration

    Migration._meta.db = database.engine
    if not await Migration.table_exists().run():
        return []
    rows = await Migration.select(Migration.name).where(Migration.app_name == "cfd").order_by(
        Migration._meta.primary_key).run()
    return [row["name"] for row in rows]
