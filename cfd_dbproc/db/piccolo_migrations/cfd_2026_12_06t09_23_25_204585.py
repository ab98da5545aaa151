from piccolo.apps.migrations.auto.migration_manager import MigrationManager
from piccolo.columns.column_types import Numeric
from piccolo.columns.indexes import IndexMethod
import decimal

ID = "2026-12-06T09:23:25:204585"
VERSION = "1.38.0"
DESCRIPTION = "positions: unbooked_pnl, the sub-cent PnL that partial closes carry to the next close"


async def forwards():
    manager = MigrationManager(
        migration_id=ID, app_name="cfd", description=DESCRIPTION
    )

    manager.add_column(
        table_class_name="Positions",
        tablename="positions",
        column_name="unbooked_pnl",
        db_column_name="unbooked_pnl",
        column_class_name="Numeric",
        column_class=Numeric,
        params={
            "default": decimal.Decimal("0"),
            "digits": (28, 10),
            "null": False,
            "primary_key": False,
            "unique": False,
            "index": False,
            "index_method": IndexMethod.btree,
            "choices": None,
            "db_column_name": None,
            "secret": False,
        },
        schema=None,
    )

    return manager
