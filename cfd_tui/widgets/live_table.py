"""`LiveTable`: a `DataTable` for cells that change many times a second (prices, PnL)."""

from __future__ import annotations

from typing import ClassVar, NamedTuple

from rich.text import Text
from textual import events
from textual.geometry import Region
from textual.strip import Strip
from textual.widgets import DataTable
from textual.widgets.data_table import CellType, ColumnKey, RowKey


class Column(NamedTuple):
    """A table column: its header, key and width; `drop` > 0 is the order in which it goes when space is short
    (1 first), 0 never."""

    label: str
    key: str
    width: int
    drop: int = 0


def fitting(columns: tuple[Column, ...], width: int, padding: int = 1) -> tuple[Column, ...]:
    """`columns` less the first to drop, until the rest fit in `width` cells (each column is padded both sides)."""
    shown = list(columns)
    droppable = sorted((c for c in columns if c.drop), key=lambda c: c.drop)
    while sum(c.width + 2 * padding for c in shown) > width and droppable:
        shown.remove(droppable.pop(0))
    return tuple(shown)


class LiveTable(DataTable):
    """A `DataTable` whose `update_cell` redraws the changed cell's row only, and nothing for an unchanged cell.

    `DataTable.update_cell` bumps a table-wide count that all its render caches are keyed on, so one new price
    renders every cell again (~0.1 ms each) and repaints the whole table, at up to 20 frames a second. Here
    only the cached renders of the changed cells are dropped (just before the next paint) and only their rows
    are repainted. Adding, removing or sorting rows works as in `DataTable`.
    """

    COLUMNS: ClassVar[tuple[Column, ...]] = ()
    """Every column the table can show; `fit` shows those that fit its width."""

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self._stale_cells: set[tuple[RowKey, ColumnKey]] = set()
        self.shown: tuple[Column, ...] = ()

    def on_mount(self) -> None:
        if self.COLUMNS:  # a table given its columns by hand shows them as they are
            self._show_columns(self.COLUMNS)

    def on_resize(self, event: events.Resize) -> None:
        self.fit(event.size.width)

    def fit(self, width: int) -> None:
        """Show the columns that fit in `width` cells (the rows are kept)."""
        wanted = fitting(self.COLUMNS, width - self.styles.scrollbar_size_vertical, self.cell_padding)
        if wanted != self.shown:
            self._show_columns(wanted)

    def _show_columns(self, columns: tuple[Column, ...]) -> None:
        """Rebuild the table with `columns` (and the rows it holds)."""
        raise NotImplementedError

    def update_cell(self, row_key: RowKey | str, column_key: ColumnKey | str, value: CellType, *,
                    update_width: bool = False) -> None:
        """Show `value` in the cell (as `DataTable.update_cell`; a value that looks the same is skipped)."""
        row_key = RowKey(row_key) if isinstance(row_key, str) else row_key
        column_key = ColumnKey(column_key) if isinstance(column_key, str) else column_key
        row = self._data.get(row_key)
        if update_width or row is None or column_key not in self._column_locations:
            super().update_cell(row_key, column_key, value, update_width=update_width)
            return
        if _look(row.get(column_key)) == _look(value):
            return
        row[column_key] = value
        self._stale_cells.add((row_key, column_key))
        row_index = self._row_locations.get(row_key)
        if row_index is not None:
            self.refresh_row(row_index)

    def render_lines(self, crop: Region) -> list[Strip]:
        if self._stale_cells:
            self._forget_stale_cells()
        return super().render_lines(crop)

    def _forget_stale_cells(self) -> None:
        stale, self._stale_cells = self._stale_cells, set()
        cells = self._cell_render_cache
        for key in [key for key in cells.keys() if key[:2] in stale]:
            cells.discard(key)
        # rows and lines are assembled from the cached cells, cheaply
        self._row_renderable_cache.clear()
        self._row_render_cache.clear()
        self._line_cache.clear()


def _look(value: object) -> object:
    """What decides how a cell looks: two values with the same look draw the same."""
    if isinstance(value, Text):
        return value.plain, str(value.style), value.justify, value.overflow, value.no_wrap, tuple(value.spans)
    return value
