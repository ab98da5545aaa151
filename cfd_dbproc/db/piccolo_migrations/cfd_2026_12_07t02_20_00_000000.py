import time

from piccolo.apps.migrations.auto.migration_manager import MigrationManager
from piccolo.engine import engine_finder

ID = "2026-12-07T02:20:00:000000"
VERSION = "1.38.0"
DESCRIPTION = "positions open before financing existed owe none for the days before it"


async def forwards():
    manager = MigrationManager(
        migration_id=ID, app_name="cfd", description=DESCRIPTION
    )

    # Raw SQL runs before a migration's own steps, so this uses the column of the migration before it.
    # `financed_until` is the last rollover a position paid for: every position that exists now starts
    # paying at the first rollover after this migration, never for the days before it.
    async def financed_from_now_on():
        now_ms = time.time_ns() // 1_000_000
        await engine_finder().run_ddl(f"UPDATE positions SET financed_until = {now_ms}")

    manager.add_raw(financed_from_now_on)

    return manager
