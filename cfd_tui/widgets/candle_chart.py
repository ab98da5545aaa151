"""`CandleChart`: OHLC candles drawn with box characters, a price axis and a time axis.

Each candle takes two columns (body and a gap); a body cell is `█`, or `▀`/`▄` when the body only covers
the upper or lower half of the cell, which doubles the vertical resolution; wicks are `│`. The right axis
marks the last close. History comes from `GET /candles`, the live candle from `candles.<interval>.<SYMBOL>`.
"""

from __future__ import annotations

from datetime import tzinfo
from decimal import Decimal

from rich.style import Style
from rich.text import Text
from textual.reactive import reactive
from textual.widget import Widget

from cfd_tui import format as fmt
from shared.candles import INTERVALS
from shared.contracts import Candle, CandleFrame

AXIS_WIDTH = 12
CANDLE_COLUMNS = 2
MAX_CANDLES = 300


class CandleChart(Widget, can_focus=False):
    """The chart of one market at one interval; `set_history` then `apply_live` as frames arrive."""

    COMPONENT_CLASSES = {"candle-chart--up", "candle-chart--down", "candle-chart--axis", "candle-chart--last",
                         "candle-chart--grid"}

    symbol: reactive[str] = reactive("", layout=False)
    interval: reactive[str] = reactive("1m")
    loading: reactive[bool] = reactive(False)

    def __init__(self, tz: tzinfo | None = None, **kwargs) -> None:
        super().__init__(**kwargs)
        self.tz = tz
        self.price_tick = Decimal("0.01")
        self.candles: list[Candle] = []
        self.message = "loading…"

    def set_history(self, symbol: str, interval: str, candles: list[Candle], price_tick: Decimal) -> None:
        """Show `candles` (oldest first) for `symbol` at `interval`."""
        self.symbol, self.interval, self.price_tick = symbol, interval, price_tick
        self.candles = list(candles)[-MAX_CANDLES:]
        self.message = "" if candles else "no candles yet: waiting for prices"
        self._retitle()
        self.refresh()

    def show_message(self, message: str) -> None:
        self.message = message
        self.candles = []
        self.refresh()

    def apply_live(self, frame: CandleFrame) -> None:
        """Update the candle in progress (or start the next one)."""
        if frame.symbol != self.symbol or frame.interval != self.interval:
            return
        candle = Candle(t=frame.t, o=frame.o, h=frame.h, l=frame.l, c=frame.c, n=frame.n)
        if self.candles and self.candles[-1].t == frame.t:
            self.candles[-1] = candle
        elif not self.candles or frame.t > self.candles[-1].t:
            self.candles.append(candle)
            del self.candles[:-MAX_CANDLES]
        else:
            return
        self.message = ""
        self._retitle()
        self.refresh()

    def _retitle(self) -> None:
        last = self.candles[-1] if self.candles else None
        self.border_title = f"{self.symbol.replace('_', '/')} · {self.interval}"
        if last is not None:
            tick = self.price_tick
            self.border_subtitle = (f"O {fmt.price(last.o, tick)}  H {fmt.price(last.h, tick)}  "
                                    f"L {fmt.price(last.l, tick)}  C {fmt.price(last.c, tick)}")
        else:
            self.border_subtitle = ""

    def render(self) -> Text:
        width, height = self.content_size.width, self.content_size.height
        if not self.candles or width < AXIS_WIDTH + 4 or height < 4:
            return Text(self.message or "", style=self.get_component_rich_style("candle-chart--axis"),
                        justify="center")
        return self._draw(width, height)

    def _draw(self, width: int, height: int) -> Text:
        plot_w, plot_h = width - AXIS_WIDTH, height - 1
        candles = self.candles[-max(1, plot_w // CANDLE_COLUMNS):]
        low = min(c.l for c in candles)
        high = max(c.h for c in candles)
        if high == low:
            pad = max(self.price_tick, high / 1000)
            low, high = low - pad, high + pad
        step = (high - low) / plot_h
        up = self.get_component_rich_style("candle-chart--up")
        down = self.get_component_rich_style("candle-chart--down")
        axis = self.get_component_rich_style("candle-chart--axis")
        last_style = self.get_component_rich_style("candle-chart--last")
        last_close = candles[-1].c
        last_row = min(plot_h - 1, max(0, int((high - last_close) / step)))
        label_rows = {round(i * (plot_h - 1) / 4) for i in range(5)}
        text = Text(no_wrap=True, overflow="crop")
        offset = plot_w - len(candles) * CANDLE_COLUMNS
        for row in range(plot_h):
            top = high - step * row
            mid = top - step / 2
            bottom = top - step
            runs: list[tuple[str, Style | str]] = [(" " * offset, "")] if offset > 0 else []
            for candle in candles:
                runs.append((_cell(candle, top, mid, bottom), up if candle.c >= candle.o else down))
                runs.append((" ", ""))
            for chars, style in _merge(runs):
                text.append(chars, style)
            if row == last_row:
                text.append(f"◀{fmt.price(last_close, self.price_tick):>{AXIS_WIDTH - 1}}", last_style)
            elif row in label_rows:
                text.append(f" {fmt.price(mid, self.price_tick):>{AXIS_WIDTH - 1}}", axis)
            else:
                text.append(" " * AXIS_WIDTH)
            text.append("\n")
        text.append(self._time_axis(candles, plot_w, offset), axis)
        return text

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


def _merge(runs: list[tuple[str, Style | str]]) -> list[tuple[str, Style | str]]:
    merged: list[tuple[str, Style | str]] = []
    for chars, style in runs:
        if merged and merged[-1][1] == style:
            merged[-1] = (merged[-1][0] + chars, style)
        else:
            merged.append((chars, style))
    return merged
