"""The live widgets draw fast paths that must look exactly like the plain ones: the candle chart's cached lines,
and the tables that redraw only a changed row."""

from __future__ import annotations

import random
from datetime import UTC
from decimal import Decimal

from fake_broker import FakeBroker
from rich.text import Text
from textual.app import App, ComposeResult
from textual.filter import ANSIToTruecolor
from textual.geometry import Region
from textual.strip import Strip
from textual.visual import Visual, visualize

from cfd_tui.app import STYLES
from cfd_tui.widgets.candle_chart import CandleChart
from cfd_tui.widgets.live_table import LiveTable
from shared.candles import INTERVALS
from shared.contracts.ws import CandleFrame


class ChartApp(App[None]):
    CSS_PATH = [STYLES / "app.tcss", STYLES / "dashboard.tcss"]

    def compose(self) -> ComposeResult:
        yield CandleChart(tz=UTC)


def chart_lines(chart: CandleChart) -> list[list]:
    return [list(chart.render_line(y)) for y in range(chart.content_size.height)]


def text_lines(chart: CandleChart) -> list[list]:
    """The lines Textual makes of the chart's `render()` text (how the chart was drawn before it had lines)."""
    width, height = chart.content_size
    return [list(strip) for strip in Visual.to_strips(chart, visualize(chart, chart.render()), width, height,
                                                     chart.visual_style)]


def live_frame(symbol: str, interval: str, candle, close: Decimal, step: int = 0) -> CandleFrame:
    return CandleFrame(symbol=symbol, interval=interval, t=candle.t + INTERVALS[interval] * step, o=candle.o,
                       h=max(candle.h, close), l=min(candle.l, close), c=close, n=candle.n + 1, closed=False)


async def test_chart_lines_are_the_lines_of_its_text():
    fake = FakeBroker()
    rng = random.Random(5)
    for size in ((140, 30), (60, 12), (30, 6)):
        app = ChartApp()
        async with app.run_test(size=size) as pilot:
            chart = app.query_one(CandleChart)
            for theme in ("textual-dark", "textual-light", "nord"):
                app.theme = theme
                for symbol, interval, tick in (("BTC_USDC", "1m", Decimal("0.1")), ("SOL_USDC", "1h", Decimal("0.01"))):
                    history = fake.candle_series(symbol, interval)
                    for count in (len(history), 3):
                        chart.set_history(symbol, interval, history[-count:], tick)
                        await pilot.pause()
                        assert chart_lines(chart) == text_lines(chart)
                        for step in (0, 0, 1):
                            close = history[-1].c + tick * rng.randint(-50, 50)
                            chart.apply_live(live_frame(symbol, interval, history[-1], close, step))
                            await pilot.pause()
                            assert chart_lines(chart) == text_lines(chart)


async def test_chart_colours_need_no_truecolor_filter_in_any_theme():
    app = ChartApp()
    async with app.run_test(size=(100, 20)) as pilot:
        chart = app.query_one(CandleChart)
        chart.set_history("ETH_USDC", "5m", FakeBroker().candle_series("ETH_USDC", "5m"), Decimal("0.01"))
        for theme in app.available_themes:
            app.theme = theme
            await pilot.pause()
            if app.native_ansi_color:
                continue  # the filter is off in ANSI themes anyway
            truecolor = ANSIToTruecolor(app.ansi_theme)
            background = chart.background_colors[1]
            lines = chart.render_lines(Region(0, 0, *chart.outer_size))
            assert [list(line) for line in lines] == [truecolor.apply(list(line), background) for line in lines], theme


class RecordingTable(LiveTable):
    def __init__(self) -> None:
        super().__init__(cursor_type="row")
        self.drawn: set[int] = set()

    def render_line(self, y: int) -> Strip:
        self.drawn.add(y)
        return super().render_line(y)


class TableApp(App[None]):
    def compose(self) -> ComposeResult:
        yield RecordingTable()


def full_redraw(table: LiveTable) -> list[list]:
    """The table drawn from scratch, as `DataTable` draws after any change."""
    table._update_count += 1
    table._clear_caches()
    table.refresh()
    return [list(line) for line in table.render_lines(Region(0, 0, *table.outer_size))]


async def test_live_table_redraws_only_the_changed_row_and_looks_the_same():
    rng = random.Random(3)

    def cell() -> Text:
        return Text(rng.choice(["1", "22", "—", "4,321.50"]), style=rng.choice(["", "bold green", "red on #333333"]),
                    justify=rng.choice(["left", "right"]))

    app = TableApp()
    async with app.run_test(size=(60, 12)) as pilot:
        table = app.query_one(RecordingTable)
        for key, width in (("a", 6), ("b", 9), ("c", 12)):
            table.add_column(key, key=key, width=width)
        for row in range(6):
            table.add_row(cell(), cell(), cell(), key=f"r{row}")
        await pilot.pause()
        for step in range(40):
            table.drawn.clear()
            row = rng.randrange(6)
            table.update_cell(f"r{row}", rng.choice("abc"), cell())
            if step % 5 == 0:
                table.move_cursor(row=rng.randrange(6))
            await pilot.pause()
            if step % 5:
                assert table.drawn <= {row + 1}  # the header is line 0
            incremental = [list(line) for line in table.render_lines(Region(0, 0, *table.outer_size))]
            assert incremental == full_redraw(table)

        table.drawn.clear()
        table.update_cell("r2", "a", Text(str(table.get_cell("r2", "a")), style=table.get_cell("r2", "a").style,
                                          justify=table.get_cell("r2", "a").justify))
        await pilot.pause()
        assert table.drawn == set()  # a value that looks the same draws nothing
