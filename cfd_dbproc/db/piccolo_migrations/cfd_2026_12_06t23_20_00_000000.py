from piccolo.apps.migrations.auto.migration_manager import MigrationManager
from piccolo.engine import engine_finder

ID = "2026-12-06T23:20:00:000000"
VERSION = "1.38.0"
DESCRIPTION = "indexes for the operator's positions list across every user"

# `GET /admin/positions` without a user reads every user's positions newest first, a page at a time,
# optionally only open or only closed ones: the same keyset paging as a trader's list, without the user.
INDEXES = {
    "positions_opened": 'positions ("opened_at", "id")',
    "positions_status_opened": 'positions ("status", "opened_at", "id")',
    "positions_status_closed": 'positions ("status", "closed_at", "id")',
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
