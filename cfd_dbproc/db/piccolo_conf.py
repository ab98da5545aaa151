"""Piccolo configuration. `cfd_dbproc.db.configure()` sets `DB` from the settings before any query."""

from piccolo.conf.apps import AppRegistry
from piccolo.engine.base import Engine

DB: Engine | None = None
APP_REGISTRY = AppRegistry(apps=["cfd_dbproc.db.piccolo_app"])
