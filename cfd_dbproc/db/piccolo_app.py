"""Piccolo's app registration for the platform's tables and committed migrations."""

import os

from piccolo.conf.apps import AppConfig

from cfd_dbproc.db.tables import ALL_TABLES

APP_CONFIG = AppConfig(
    app_name="cfd",
    migrations_folder_path=os.path.join(os.path.dirname(__file__), "piccolo_migrations"),
    table_classes=ALL_TABLES,
    migration_dependencies=[],
    commands=[],
)
