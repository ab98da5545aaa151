"""Statements written once, for the trading path: what Piccolo builds anew for every query (the SQL text, each
value converted through its column) took more of a command's time than running it.

A `Statement` is SQL with `{}` for each parameter, compiled once to `?` (SQLite) and `$1…` (PostgreSQL);
`Database.fetch` runs it on the connection Piccolo would have used (the open transaction's, else the reader's
or the pool's) and returns the rows as Piccolo does, as dicts with the same types: the values go to the
drivers as Piccolo hands them (a `Decimal`, a `UUID`), and come back through the same converters.
`RowInsert` is an `INSERT` of every column of a table, a value given or the column's default.
"""

from __future__ import annotations

from typing import Any

from piccolo.columns import Serial
from piccolo.table import Table


class Statement:
    """One SQL statement for both engines, its parameters `{}` in order."""

    __slots__ = ("postgres", "sqlite")

    def __init__(self, sql: str) -> None:
        count = sql.count("{}")
        self.sqlite = sql.format(*["?"] * count)
        self.postgres = sql.format(*[f"${n}" for n in range(1, count + 1)])


class RowInsert:
    """`INSERT INTO <table>` of whole rows: every column but an auto-increment key, in the table's order."""

    def __init__(self, table: type[Table], rows: int = 1) -> None:
        self.columns = [c for c in table._meta.columns if not isinstance(c, Serial)]  # BigSerial is one too
        self._defaults = {c._meta.db_column_name: c for c in self.columns}
        names = ", ".join(f'"{c._meta.db_column_name}"' for c in self.columns)
        one = "(" + ", ".join("{}" for _ in self.columns) + ")"
        self.statement = Statement(f'INSERT INTO "{table._meta.tablename}" ({names}) VALUES '

                                   + ", ".join([one] * rows))

    def args(self, *rows: dict[str, Any]) -> list[Any]:
        """The parameters of `rows` (by column name); a column left out takes its default."""
        unknown = {name for row in rows for name in row} - self._defaults.keys()
        if unknown:
            raise ValueError(f"no such columns: {sorted(unknown)}")
        return [row[name] if name in row else column.get_default_value()
                for row in rows for name, column in self._defaults.items()]
