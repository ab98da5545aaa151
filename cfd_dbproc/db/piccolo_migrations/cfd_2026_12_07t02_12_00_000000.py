from piccolo.apps.migrations.auto.migration_manager import MigrationManager
from piccolo.engine import engine_finder

ID = "2026-12-07T02:12:00:000000"
VERSION = "1.38.0"
DESCRIPTION = "indexes for the operator audit list (every subject or one, newest first)"

INDEXES = {
    "operator_audit_at": 'operator_audit ("at", "id")',
    "operator_audit_subject_at": 'operator_audit ("subject", "at", "id")',
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
