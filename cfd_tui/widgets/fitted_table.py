"""`FittedTable`: a `DataTable` that shows the columns that fit its width, the least important going first."""

from __future__ import annotations

from collections.abc import Iterable

from rich.text import Text
from textual import events
from textual.widgets import DataTable

from cfd_tui.widgets.live_table import Column, fitting


class FittedTable(DataTable):
    """Rows are given as cells by column key (`set_rows`); the table shows the columns of `columns` that fit,
    dropping those with the lowest `drop` first, and builds itself again when its width changes which."""

    def __init__(self, columns: tuple[Column, ...], right: Iterable[str] = (), **kwargs) -> None:
        super().__init__(**kwargs)
        self.all_columns = columns
        self.right = set(right)
        self.shown: tuple[Column, ...] = ()
        self._rows: list[tuple[str | None, dict[str, object]]] = []

    def on_mount(self) -> None:
        self._show(self.all_columns)

    def on_resize(self, event: events.Resize) -> None:
        wanted = fitting(self.all_columns, event.size.width - self.styles.scrollbar_size_vertical, self.cell_padding)
        if wanted != self.shown:
            self._show(wanted)

    def set_rows(self, rows: Iterable[tuple[str | None, dict[str, object]]]) -> None:
        """Replace the rows: (row key, cells by column key; a missing cell is empty)."""
        self._rows = list(rows)
        self._fill()

    def _show(self, columns: tuple[Column, ...]) -> None:
        self.clear(columns=True)
        self.shown = columns
        for column in columns:
            self.add_column(Text(column.label, justify="right" if column.key in self.right else "left"),
                            key=column.key, width=column.width)
        self._fill()

    def _fill(self) -> None:
        self.clear()
        for key, cells in self._rows:
            self.add_row(*(cells.get(column.key, "") for column in self.shown), key=key)
