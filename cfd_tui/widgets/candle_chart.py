"""`CandleChart`: OHLC candles drawn with box characters, a price axis and a time axis.

Each candle takes two columns (body and a gap); a body cell is `█`, or `▀`/`▄` when the body only covers
the upper or lower half of the cell, which doubles the vertical resolution; wicks are `│`. The right axis
marks the last close. History comes from `GET /candles`, the live candle from `candles.<interval>.<SYMBOL>`.

Price levels (`set_levels`: a position's entry, stop-loss and take-profit, the account's stop-out price, a
working order's price) are
dashed lines `╌` across the cells no candle uses, with a short label at the left end and the price on the
axis in the level's colour. The scale widens to take in the levels within one candle range of it; one further
away is named at the top (`▲`) or bottom (`▼`) of the axis instead, so the candles keep their height.

The chart is drawn line by line (`render_line`) from strips cached until the candles, the size or the styles
change; each candle's column is kept while the price scale stays, and a row that looks the same keeps its
strip, so a live tick redraws little. The strips are the segments Textual would make of `render()`'s text,
selection offsets included, so the chart looks and selects as plain text would.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import tzinfo
from decimal import Decimal
from typing import Literal, NamedTuple

from rich.segment import Segment
from rich.style import Style
from rich.text import Text
from textual.filter import ANSIToTruecolor, LineFilter
from textual.reactive import reactive
from textual.strip import Strip
from textual.style import Style as VisualStyle
from textual.widget import Widget

from cfd_tui import format as fmt
from shared.candles import INTERVALS
from shared.contracts.rest import Candle
from shared.contracts.ws import CandleFrame

AXIS_WIDTH = 12
CANDLE_COLUMNS = 2
MAX_CANDLES = 300  # kept per chart: as many as a 600-column terminal shows (two columns a candle); the rest go
UP, DOWN, AXIS, LAST = "candle-chart--up", "candle-chart--down", "candle-chart--axis", "candle-chart--last"
LINE = "╌"
LevelKind = Literal["stop_out", "stop", "target", "order", "entry"]
LEVEL_STYLES: dict[LevelKind, str] = {"stop_out": "candle-chart--stop-out", "stop": "candle-chart--stop",
                                      "target": "candle-chart--target", "order": "candle-chart--order",
                                      "entry": "candle-chart--entry"}
PRIORITY: tuple[LevelKind, ...] = ("stop_out", "stop", "target", "order", "entry")  # of two on one row, the first shows

Run = tuple[str, str | None]  # characters and the component class that styles them (None: the widget's own style)


class Level(NamedTuple):
    """A horizontal line at `price`, labelled `label` (`SL`, `TP`, `long 12`, `buy limit 2`), or `short` (`long`,
    `limit`) where the label does not fit between the candles."""

    price: Decimal
    label: str
    kind: LevelKind
    short: str = ""


class CandleChart(Widget, can_focus=False):
    """The chart of one market at one interval; `set_history` then `apply_live` as frames arrive."""

    COMPONENT_CLASSES = {UP, DOWN, AXIS, LAST, "candle-chart--grid", *LEVEL_STYLES.values()}

    symbol: reactive[str] = reactive("", layout=False)
    interval: reactive[str] = reactive("1m")
    loading: reactive[bool] = reactive(False)

    def __init__(self, tz: tzinfo | None = None, **kwargs) -> None:
        super().__init__(**kwargs)
        self.tz = tz
        self.price_tick = Decimal("0.01")
        self.candles: list[Candle] = []
        self.message = "loading…"
        self._rows: list[list[Run]] | None = None  # the plot rows and the time axis, for `_rows_size`
        self._rows_size = (0, 0)
        self._strips: list[Strip] | None = None  # `_rows` as strips
        self._drawn: list[tuple[list[Run], Strip]] = []  # the last rows made into strips: a row the same is kept
        self._scale: tuple[Decimal, Decimal, int] | None = None  # (high, step, rows) the columns were drawn at
        self._columns: dict[tuple[Decimal, Decimal, Decimal, Decimal], str] = {}  # (o, h, l, c) -> cells, top first
        self._styles: dict[tuple[str | None, int, int], Style] = {}  # (class, x, y) -> the style a strip uses
        self._titles: tuple[str, str] | None = None
        self.levels: tuple[Level, ...] = ()

    def set_history(self, symbol: str, interval: str, candles: list[Candle], price_tick: Decimal) -> None:
        """Show `candles` (oldest first) for `symbol` at `interval`."""
        self.symbol, self.interval, self.price_tick = symbol, interval, price_tick
        self.candles = list(candles)[-MAX_CANDLES:]
        self.message = "" if candles else "no candles yet: waiting for prices"
        self._retitle()
        self._redraw()

    def set_levels(self, levels: Iterable[Level]) -> None:
        """Draw these price levels (the chart's market's positions and orders) from now on."""
        wanted = tuple(sorted(levels, key=lambda level: (PRIORITY.index(level.kind), level.price, level.label)))
        if wanted != self.levels:
            self.levels = wanted
            self._redraw()

    def show_message(self, message: str) -> None:
        self.message = message
        self.candles = []
        self._redraw()

    def apply_live(self, frame: CandleFrame) -> None:
        """Update the candle in progress (or start the next one)."""
        if frame.symbol != self.symbol or frame.interval != self.interval:
            return
        candle = Candle(t=frame.t, o=frame.o, h=frame.h, l=frame.l, c=frame.c, n=frame.n)
        if self.candles and self.candles[-1].t == frame.t:
            if self.candles[-1] == candle:
                return  # e.g. the first frame after subscribing repeats the last candle of the history
            self.candles[-1] = candle
        elif not self.candles or frame.t > self.candles[-1].t:
            self.candles.append(candle)
            del self.candles[:-MAX_CANDLES]
        else:
            return
        self.message = ""
        self._retitle()
        self._redraw()

    def _redraw(self) -> None:
        self._rows = self._strips = None
        self.refresh()

    def _retitle(self) -> None:
        last = self.candles[-1] if self.candles else None
        title = f"{self.symbol.replace('_', '/')} · {self.interval}"
        subtitle = ""
        if last is not None:
            tick = self.price_tick
            subtitle = (f"O {fmt.price(last.o, tick)}  H {fmt.price(last.h, tick)}  "
                        f"L {fmt.price(last.l, tick)}  C {fmt.price(last.c, tick)}")
        if (title, subtitle) != self._titles:  # setting a title repaints the whole widget
            self._titles = (title, subtitle)
            self.border_title, self.border_subtitle = title, subtitle

    def get_line_filters(self) -> Sequence[LineFilter]:
        # The chart's colours all come from the theme, so they are truecolor already (and none is dim): the
        # ANSI-to-truecolor filter would hand back each of the ~1,500 segment styles unchanged, at ~1.5 µs a
        # style, as they outnumber its cache. Other filters (NO_COLOR) still apply.
        return [f for f in super().get_line_filters() if not isinstance(f, ANSIToTruecolor)]

    def notify_style_update(self) -> None:
        super().notify_style_update()
        self._styles.clear()
        self._drawn = []
        self._strips = None

    def _plotted(self) -> bool:
        width, height = self.content_size
        return bool(self.candles) and width >= AXIS_WIDTH + 4 and height >= 4

    def render(self) -> Text:
        """The message, or the whole chart as text (used for a text selection; `render_line` draws the chart)."""
        if not self._plotted():
            return Text(self.message or "", style=self.get_component_rich_style(AXIS), justify="center")
        text = Text(no_wrap=True, overflow="crop")
        for y, runs in enumerate(self._chart_rows()):
            if y:
                text.append("\n")
            for chars, name in runs:
                text.append(chars, self.get_component_rich_style(name) if name else "")
        return text

    def render_line(self, y: int) -> Strip:
        if not self._plotted() or self.text_selection is not None:
            return super().render_line(y)
        strips = self._chart_strips()
        return strips[y] if y < len(strips) else Strip.blank(self.size.width, self.visual_style.rich_style)

    def _chart_strips(self) -> list[Strip]:
        rows = self._chart_rows()
        if self._strips is None:
            drawn = self._drawn
            self._strips = [drawn[y][1] if y < len(drawn) and drawn[y][0] == runs else self._strip(runs, y)
                            for y, runs in enumerate(rows)]
            self._drawn = list(zip(rows, self._strips, strict=True))
        return self._strips

    def _strip(self, runs: list[Run], y: int) -> Strip:
        """One row as segments, styled as Textual's `Content` styles text (the widget's style under each span)."""
        styles = self._styles
        segments = []
        x = 0
        for chars, name in runs:
            style = styles.get((name, x, y))
            if style is None:
                style = styles[(name, x, y)] = self._span_style(name).rich_style_with_offset(x, y)
            segments.append(Segment(chars, style))
            x += len(chars)
        return Strip(segments, x)

    def _span_style(self, name: str | None) -> VisualStyle:
        base = self.visual_style
        if name is None:
            return base + base
        span = VisualStyle.from_rich_style(self.get_component_rich_style(name), self.app.ansi_theme)
        return base + VisualStyle.combine([base, span])

    def _chart_rows(self) -> list[list[Run]]:
        size = (self.content_size.width, self.content_size.height)
        if self._rows is None or self._rows_size != size:
            if self._rows_size != size:
                self._styles.clear()  # keyed by cell position: those of another size would only pile up
            self._rows, self._rows_size, self._strips = self._draw(*size), size, None
        return self._rows

    def _draw(self, width: int, height: int) -> list[list[Run]]:
        plot_w, plot_h = width - AXIS_WIDTH, height - 1
        candles = self.candles[-max(1, plot_w // CANDLE_COLUMNS):]
        low = min(c.l for c in candles)
        high = max(c.h for c in candles)
        if high == low:
            pad = max(self.price_tick, high / 1000)
            low, high = low - pad, high + pad
        low, high = self._reach(low, high)
        step = (high - low) / plot_h
        columns = self._candle_columns(candles, high, step, plot_h)
        last_close = candles[-1].c
        last_row = min(plot_h - 1, max(0, int((high - last_close) / step)))
        label_rows = {round(i * (plot_h - 1) / 4) for i in range(5)}
        offset = plot_w - len(candles) * CANDLE_COLUMNS
        looks = [UP if candle.c >= candle.o else DOWN for candle in candles]
        lines, pinned = self._level_rows(high, low, step, plot_h)
        rows: list[list[Run]] = []
        for row in range(plot_h):
            level = lines.get(row)
            if level is None:
                runs: list[Run] = [(" " * offset, None)] if offset > 0 else []
                for column, look in zip(columns, looks, strict=True):
                    runs.append((column[row], look))
                    runs.append((" ", None))
            else:
                runs = _level_line(level, columns, looks, row, offset)
            off_scale = pinned.get(row)
            if off_scale is not None and level is not None and _ranks_before(level, off_scale[1]):
                off_scale = None  # a line on that row matters more than the level beyond it
            if row == last_row:
                runs.append((f"◀{fmt.price(last_close, self.price_tick):>{AXIS_WIDTH - 1}}", LAST))
            elif off_scale is not None:
                marker, beyond = off_scale
                runs.append((f"{marker}{fmt.price(beyond.price, self.price_tick):>{AXIS_WIDTH - 1}}",
                             LEVEL_STYLES[beyond.kind]))
            elif level is not None:  # the line runs on into its price
                runs.append((fmt.price(level.price, self.price_tick).rjust(AXIS_WIDTH, LINE), LEVEL_STYLES[level.kind]))
            elif row in label_rows:
                mid = high - step * row - step / 2
                runs.append((f" {fmt.price(mid, self.price_tick):>{AXIS_WIDTH - 1}}", AXIS))
            else:
                runs[-1] = (" " * (AXIS_WIDTH + 1), None)  # the last gap and a blank axis are one unstyled run
            rows.append(runs)
        rows.append([(self._time_axis(candles, plot_w, offset), AXIS)])
        return rows

    def _reach(self, low: Decimal, high: Decimal) -> tuple[Decimal, Decimal]:
        """The scale widened to the levels within one candle range of it, so a nearby stop or order is a line;
        the candles keep at least a third of the height, and a level further away is named on the axis."""
        span = high - low
        near = [level.price for level in self.levels if low - span <= level.price <= high + span]
        return min([low, *near]), max([high, *near])

    def _level_rows(self, high: Decimal, low: Decimal, step: Decimal,
                    plot_h: int) -> tuple[dict[int, Level], dict[int, tuple[str, Level]]]:
        """The row of each level within the scale (the first by `PRIORITY` where two share one), and the levels
        beyond it: the nearest above is named on the top row, the nearest below on the bottom row."""
        lines: dict[int, Level] = {}
        above: Level | None = None
        below: Level | None = None
        for level in self.levels:
            if level.price > high:
                above = level if above is None or level.price < above.price else above
            elif level.price < low:
                below = level if below is None or level.price > below.price else below
            else:
                lines.setdefault(min(plot_h - 1, max(0, int((high - level.price) / step))), level)
        pinned: dict[int, tuple[str, Level]] = {}
        if above is not None:
            pinned[0] = ("▲", above)
        if below is not None:
            pinned.setdefault(plot_h - 1, ("▼", below))
        return lines, pinned

    def _candle_columns(self, candles: list[Candle], high: Decimal, step: Decimal, plot_h: int) -> list[str]:
        """Each candle's cells, top to bottom; kept per candle while the scale is the same."""
        if self._scale != (high, step, plot_h):
            self._scale, self._columns = (high, step, plot_h), {}
        known = self._columns
        columns: dict[tuple[Decimal, Decimal, Decimal, Decimal], str] = {}
        bands: list[tuple[Decimal, Decimal, Decimal]] | None = None
        for candle in candles:
            key = (candle.o, candle.h, candle.l, candle.c)
            column = known.get(key) or columns.get(key)
            if column is None:
                if bands is None:
                    bands = []
                    for row in range(plot_h):
                        top = high - step * row
                        bands.append((top, top - step / 2, top - step))
                column = "".join(_cell(candle, top, mid, bottom) for top, mid, bottom in bands)
            columns[key] = column
        self._columns = columns
        return [columns[(c.o, c.h, c.l, c.c)] for c in candles]

    def _time_axis(self, candles: list[Candle], plot_w: int, offset: int) -> str:
        length = INTERVALS.get(self.interval, 60_000)
        line = [" "] * plot_w
        spacing = 14
        for i in range(len(candles) - 1, -1, -spacing // CANDLE_COLUMNS):
            column = offset + i * CANDLE_COLUMNS
            label = fmt.axis_time(candles[i].t, length, self.tz)
            start = column - len(label) // 2
            if start < 0 or start + len(label) > plot_w:
                continue
            line[start:start + len(label)] = label
        return "".join(line)


def _ranks_before(one: Level, other: Level) -> bool:
    """Whether `one` shows before `other` where they meet (a stop-loss before a take-profit, an order, an entry)."""
    return PRIORITY.index(one.kind) <= PRIORITY.index(other.kind)


def _level_line(level: Level, columns: list[str], looks: list[str], row: int, offset: int) -> list[Run]:
    """A plot row with a level's line: the dashes fill the cells no candle draws in (the candles stay whole),
    and the label sits in the leftmost stretch of free cells long enough for it (or for its short form)."""
    style = LEVEL_STYLES[level.kind]
    cells: list[tuple[str, str | None]] = [(LINE, style)] * offset
    for column, look in zip(columns, looks, strict=True):
        char = column[row]
        cells.append((LINE, style) if char == " " else (char, look))
        cells.append((LINE, style))
    free = [cell == (LINE, style) for cell in cells]
    for text in dict.fromkeys(t for t in (level.label, level.short) if t):
        label = f" {text} "
        start = next((x for x in range(1, len(cells) - len(label) + 1) if all(free[x:x + len(label)])), None)
        if start is not None:  # the first stretch of free cells it fits in (none: the axis still names the price)
            cells[start:start + len(label)] = [(char, style) for char in label]
            break
    runs: list[Run] = []
    for char, name in cells:
        if runs and runs[-1][1] == name:
            runs[-1] = (runs[-1][0] + char, name)
        else:
            runs.append((char, name))
    return runs


def _cell(candle: Candle, top: Decimal, mid: Decimal, bottom: Decimal) -> str:
    body_hi, body_lo = max(candle.o, candle.c), min(candle.o, candle.c)
    upper = body_lo <= top and body_hi >= mid
    lower = body_lo <= mid and body_hi >= bottom
    if upper and lower:
        return "█"
    if upper:
        return "▀"
    if lower:
        return "▄"
    if candle.l <= top and candle.h >= bottom:
        return "│"
    return " "

