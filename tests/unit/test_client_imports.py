"""`cfd_client` is usable on its own: it imports `shared` and third-party libraries, never an app package."""

from __future__ import annotations

import ast
from pathlib import Path

import cfd_client

APP_PACKAGES = {"cfd_tui", "cfd_server", "cfd_dbproc", "cfd_poller", "cfd_cli"}


def imported_packages(path: Path) -> set[str]:
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.add(node.module.split(".")[0])
    return found


def test_the_client_library_imports_no_app_package():
    sources = sorted(Path(cfd_client.__file__).parent.rglob("*.py"))
    assert sources
    wrong = {str(path.name): sorted(imported_packages(path) & APP_PACKAGES) for path in sources}
    assert {name: packages for name, packages in wrong.items() if packages} == {}
