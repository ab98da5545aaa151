from piccolo.apps.migrations.auto.migration_manager import MigrationManager
from piccolo.engine import engine_finder

ID = "2026-12-06T17:40:00:000000"
VERSION = "1.38.0"
DESCRIPTION = "indexes for the paged lists (positions, ledger) and for the retention purges"

# Each list is read newest first, per user, one page after another (keyset paging on the sort time and
# the id); the purges find what is old by its time. Raw SQL: the same statements on SQLite and PostgreSQL,
# and Piccolo's index support covers only single columns.
INDEXES = {
    "ledger_entries_user_created": 'ledger_entries ("user_id", "created_at", "id")',
    "positions_user_opened": 'positions ("user_id", "opened_at", "id")',
    "positions_user_status_opened": 'positions ("user_id", "status", "opened_at", "id")',
    "positions_user_status_closed": 'positions ("user_id", "status", "closed_at", "id")',
    "processed_commands_created": 'processed_commands ("created_at")',
    "candles_t": 'candles ("t")',
}


async def forwards():
    manager = MigrationManager(
        migration_id=ID, app_name="cfd", description=DESCRIPTION
    )

    async def create_indexes():
        for name, target in INDEXES.items():
            await engine_finder().run_ddl(f"CREATE INDEX IF NOT EXISTS {name} ON {target}")

    async def drop_indexes():
        for name in INDEXES:
            await engine_finder().run_ddl(f"DROP INDEX IF EXISTS {name}")

    manager.add_raw(create_indexes)
    manager.add_raw_backwards(drop_indexes)

    return manager
