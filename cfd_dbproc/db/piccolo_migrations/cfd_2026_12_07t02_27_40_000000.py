from piccolo.apps.migrations.auto.migration_manager import MigrationManager
from piccolo.engine import engine_finder

ID = "2026-12-07T02:27:40:000000"
VERSION = "1.38.0"
DESCRIPTION = "indexes of the account events (a user's after a seq, unique; by time) and of margin calls out"

# A resume reads one user's events after a seq, in order (`account.events`); the unique index also refuses a
# seq given twice. The retention purge finds the old ones by time. A dbproc taking partitions over reads the
# few accounts with a margin call out. Raw DDL runs before the tables of its own migration are made, so the
# indexes come in this one, after the table's.
INDEXES = {
    "account_events_user_seq": 'UNIQUE INDEX IF NOT EXISTS account_events_user_seq ON account_events ("user_id", "seq")',
    "account_events_created": 'INDEX IF NOT EXISTS account_events_created ON account_events ("created_at")',
    "accounts_margin_called": 'INDEX IF NOT EXISTS accounts_margin_called ON accounts ("margin_called")',
}


async def forwards():
    manager = MigrationManager(
        migration_id=ID, app_name="cfd", description=DESCRIPTION
    )

    async def create_indexes():
        for statement in INDEXES.values():
            await engine_finder().run_ddl(f"CREATE {statement}")

    async def drop_indexes():
        for name in INDEXES:
            await engine_finder().run_ddl(f"DROP INDEX IF EXISTS {name}")

    manager.add_raw(create_indexes)
    manager.add_raw_backwards(drop_indexes)

    return manager
