"""The CLI's output when it is not a terminal: tables keep every character, log lines stay whole lines."""

from __future__ import annotations

import io
import logging
import re
import sys

import pytest
from rich.table import Table

from cfd_cli.main import setup_logging
from cfd_cli.output import CliConsole

LONG = "a-rather-long-address-for-a-table-0123456789abcdef0123456789abcdef@example.com"


def table() -> Table:
    t = Table(title="traders")
    for column in ("email", "name", "id"):
        t.add_column(column)
    t.add_row(LONG, "Ada Trader", "6ce0540a-9530-46e3-9472-0890d0a42574")
    return t


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_a_table_written_to_a_pipe_keeps_every_character(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COLUMNS", "80")  # what a narrow terminal next door would say; a pipe has no width
    out = io.StringIO()
    CliConsole(file=out).print(table())
    row = next(line for line in out.getvalue().splitlines() if "Ada Trader" in line)
    assert LONG in row and "6ce0540a-9530-46e3-9472-0890d0a42574" in row and "…" not in out.getvalue()
    assert max(len(line) for line in out.getvalue().splitlines()) == len(row) < 200  # as wide as it needs


def test_on_a_terminal_a_table_fits_the_terminal(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COLUMNS", "80")
    out = Terminal()
    CliConsole(file=out).print(table())
    shown = re.sub(r"\x1b\[[0-9;]*m", "", out.getvalue())  # without the colours
    assert max(len(line) for line in shown.splitlines()) == 80 and "…" in shown


def test_piped_logs_are_whole_plain_lines_on_the_stderr_of_the_moment(monkeypatch: pytest.MonkeyPatch) -> None:
    root = logging.getLogger()
    saved = root.handlers[:], root.level
    try:
        monkeypatch.setattr(sys, "stderr", io.StringIO())
        setup_logging(verbose=False)
        later = io.StringIO()  # stderr replaced after set-up (a test runner does that): logs follow it
        monkeypatch.setattr(sys, "stderr", later)
        logging.getLogger("cfd_poller.history").info("history: %s", LONG * 3)
        [line] = later.getvalue().splitlines()
        assert line.endswith(f"INFO cfd_poller.history: history: {LONG * 3}")  # not wrapped, not padded
    finally:
        root.handlers[:], level = saved
        root.setLevel(level)
