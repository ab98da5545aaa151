from piccolo.apps.migrations.auto.migration_manager import MigrationManager
from piccolo.engine import engine_finder

ID = "2026-12-07T02:11:24:000000"
VERSION = "1.38.0"
DESCRIPTION = "indexes of the orders: a trader's newest first, the working ones"

# A trader's orders newest first (`GET /orders`); every user's by status, newest first (the risk engine's
# start reads the working ones; the operator's list). Raw DDL runs before the tables of its own migration are
# made, so the indexes come in this one, after the table's.
INDEXES = {
    "orders_user_created": 'orders ("user_id", "created_at", "id")',
    "orders_status_created": 'orders ("status", "created_at", "id")',
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
