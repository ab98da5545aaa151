from piccolo.apps.migrations.auto.migration_manager import MigrationManager
from piccolo.engine import engine_finder

ID = "2026-11-22T00:17:25:327636"
VERSION = "1.38.0"
DESCRIPTION = "candles: one row per market and minute (unique index on symbol, t)"


async def forwards():
    manager = MigrationManager(
        migration_id=ID, app_name="cfd", description=DESCRIPTION
    )

    # Raw SQL: Piccolo's Unique constraint is added with ALTER TABLE, which SQLite does not support.
    async def unique_symbol_minute():
        await engine_finder().run_ddl(
            'CREATE UNIQUE INDEX IF NOT EXISTS candles_symbol_t ON candles ("symbol", "t")'
        )

    async def drop_unique_symbol_minute():
        await engine_finder().run_ddl("DROP INDEX IF EXISTS candles_symbol_t")

    manager.add_raw(unique_symbol_minute)
    manager.add_raw_backwards(drop_unique_symbol_minute)

    return manager
