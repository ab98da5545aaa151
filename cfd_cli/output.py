"""How the CLI prints: rich tables on a terminal, every character of them when piped, JSON when asked.

On a terminal, output fits the terminal's width. Written to a pipe or a file, it is as wide as it needs to be
(up to `PIPE_WIDTH` columns; `COLUMNS` is not consulted), so `cfd users list | grep …` never sees a cell
cut to `sym…`. `--json` prints what the API returns (decimal strings, epoch milliseconds), for scripts.
"""

from __future__ import annotations

import json
from typing import Annotated, Any

import typer
from rich.console import Console, ConsoleDimensions

PIPE_WIDTH = 4096
"""Columns available when the output is not a terminal: wider than any table the CLI prints."""

JsonOption = Annotated[bool, typer.Option("--json", help="Print JSON (decimal strings, epoch ms) instead of a table.")]


class CliConsole(Console):
    """A rich console as wide as its terminal, or `PIPE_WIDTH` when it writes to something else (unless given
    a `width`)."""

    def __init__(self, *args: Any, width: int | None = None, **kwargs: Any) -> None:
        super().__init__(*args, width=width, **kwargs)
        self._chosen_width = width

    @property
    def size(self) -> ConsoleDimensions:
        dimensions = super().size
        if self._chosen_width is None and not self.writes_to_terminal:
            return ConsoleDimensions(PIPE_WIDTH, dimensions.height)
        return dimensions

    @size.setter
    def size(self, new_size: tuple[int, int]) -> None:
        self._width, self._height = new_size

    @property
    def writes_to_terminal(self) -> bool:
        """Whether the output really is a terminal (whatever FORCE_COLOR says about colours)."""
        isatty = getattr(self.file, "isatty", None)
        try:
            return bool(isatty and isatty())
        except ValueError:  # a closed stream
            return False

    def heading(self, text: str) -> None:
        """A rule across the terminal with `text` in it; a plain line when piped."""
        if self.writes_to_terminal:
            self.rule(text)
        else:
            self.print(f"── {text} ──")


def print_json(data: Any) -> None:
    """`data` as indented JSON on stdout (what scripts read)."""
    typer.echo(json.dumps(data, indent=2, ensure_ascii=False))


def print_json_line(data: Any) -> None:
    """`data` as one line of JSON on stdout (a stream of records, e.g. `prices tail --json`)."""
    typer.echo(json.dumps(data, ensure_ascii=False, separators=(",", ":")))
