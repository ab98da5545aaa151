"""The fault suite's option: `--write-docs` rewrites the table in docs/reliability.md from the run."""

from __future__ import annotations


def pytest_addoption(parser) -> None:
    parser.addoption("--write-docs", action="store_true", default=False,
                     help="rewrite the fault table in docs/reliability.md with this run's figures")
