"""Two databases in one process: Piccolo's tables follow the one that is running."""

from __future__ import annotations

import pytest

from cfd_dbproc.db import Database, migrate
from cfd_dbproc.db.tables import Users
from shared.settings import load_settings


def _database(path) -> Database:
    settings = load_settings({}, env="test", data_dir=path, database={"url": f"sqlite:///{path / 'cfd.sqlite3'}"})
    return Database(settings.database, settings.data_dir)


async def test_stopping_a_second_database_gives_the_tables_back_to_the_first(tmp_path):
    first, second = _database(tmp_path / "a"), _database(tmp_path / "b")
    await migrate(first)
    await migrate(second)
    try:
        assert Users._meta.db is second.engine
        await second.stop()
        assert Users._meta.db is first.engine
        assert await Users.count().run() == 0  # and it still answers
    finally:
        await first.stop()


async def test_a_group_that_does_not_commit_runs_its_rollback_steps_and_not_its_commit_steps(tmp_path):
    database = _database(tmp_path)
    await migrate(database)
    seen: list[str] = []

    async def committed() -> None:
        seen.append("committed")

    try:
        async with database.group():
            database.on_rollback(lambda: seen.append("undone"))
            await database.after_commit(committed)
        assert seen == ["committed"]
        seen.clear()
        with pytest.raises(RuntimeError):
            async with database.group():
                database.on_rollback(lambda: seen.append("undone"))
                await database.after_commit(committed)
                raise RuntimeError("the commit fails")
        assert seen == ["undone"]
    finally:
        await database.stop()
