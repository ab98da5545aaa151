"""Two databases in one process: Piccolo's tables follow the one that is running."""

from __future__ import annotations

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
