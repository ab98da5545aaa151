"""`cfd prices …`, `cfd poller` and `cfd exchange …`: watch, record and produce prices.

- `cfd prices tail [SYMBOL...]` shows the server's live quotes (its WebSocket feed) in a table, or as lines
  of JSON with `--json`;
- `cfd prices record FILE` writes ticks from a source as Backpack-format JSONL, the replay source's input;
- `cfd poller --source …` runs the price poller alone, publishing to the configured bus;
- `cfd exchange serve` runs a local Backpack-protocol exchange with random quotes, for offline demos.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import time
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Annotated, Any

import msgspec
import typer
from rich.console import Console, Group
from rich.live import Live
from rich.table import Table
from rich.text import Text

from cfd_cli.common import client_settings_or_fail, console, err, fail, run_async, serve, settings_or_fail
from cfd_cli.output import JsonOption, print_json_line
from shared.markets import MARKETS, SYMBOLS

prices_app = typer.Typer(help="Prices: watch the live feed, record a feed to a file.", no_args_is_help=True)
exchange_app = typer.Typer(help="A local Backpack-protocol exchange, for offline demos and tests.",
                           no_args_is_help=True)

SOURCES = ("sim", "backpack", "replay")


# --- tail ------------------------------------------------------------------------------------------------


@dataclass
class _Row:
    bid: Decimal
    ask: Decimal
    mid: Decimal
    first_mid: Decimal
    ts_ms: int


class PriceBoard:
    """The state `tail` shows: the latest quote per symbol and its change since the board started.

    A rich renderable: `Live` re-renders it on each refresh, so ages keep counting between ticks.
    """

    def __init__(self, symbols: list[str] | None = None, *, stale_after: float = 10.0) -> None:
        self.symbols = list(symbols or [])
        self.stale_after = stale_after
        self.rows: dict[str, _Row] = {}
        self.status = "connecting…"
        self.status_style = "yellow"
        self.updates = 0

    def apply(self, frame: dict[str, Any]) -> bool:
        """Take one server frame; returns True when it was a price update."""
        kind = frame.get("type")
        if kind == "price":
            return self._price(frame)
        if kind == "error":
            self.set_status(f"server error {frame.get('code')}: {frame.get('message')}", "red")
        elif kind == "subscribed":
            self.set_status(f"live · {', '.join(map(str, frame.get('channels') or []))}", "green")
        return False

    def set_status(self, text: str, style: str) -> None:
        self.status, self.status_style = text, style

    def _price(self, frame: dict[str, Any]) -> bool:
        symbol = frame.get("symbol")
        try:
            bid, ask = Decimal(str(frame["bid"])), Decimal(str(frame["ask"]))
            mid = Decimal(str(frame["mid"])) if frame.get("mid") is not None else (bid + ask) / 2
            ts_ms = int(frame.get("ts") or time.time() * 1000)
        except (KeyError, InvalidOperation, TypeError, ValueError):
            return False
        if not isinstance(symbol, str) or (self.symbols and symbol not in self.symbols):
            return False
        previous = self.rows.get(symbol)
        self.rows[symbol] = _Row(bid, ask, mid, previous.first_mid if previous else mid, ts_ms)
        self.updates += 1
        return True

    def table(self, now_ms: int | None = None) -> Table:
        """The board as a table: symbol, bid, ask, mid, change since start (green up, red down), age."""
        now_ms = int(time.time() * 1000) if now_ms is None else now_ms
        table = Table(title="CFD Broker · live prices", expand=False, title_justify="left")
        table.add_column("symbol", style="bold cyan")
        for column in ("bid", "ask", "mid", "change", "age"):
            table.add_column(column, justify="right")
        for symbol in self.symbols or sorted(self.rows):
            row = self.rows.get(symbol)
            if row is None:
                table.add_row(symbol, "—", "—", "—", "", Text("waiting", style="dim"))
                continue
            table.add_row(symbol, str(row.bid), str(row.ask), str(row.mid), _change(row.mid, row.first_mid),
                          self._age(now_ms - row.ts_ms))
        return table

    def _age(self, age_ms: int) -> Text:
        seconds = max(0, age_ms) / 1000
        style = "red" if seconds > self.stale_after else "yellow" if seconds > self.stale_after / 2 else "dim"
        return Text(f"{seconds:.1f}s", style=style)

    def __rich__(self) -> Group:
        return Group(self.table(), Text(self.status, style=self.status_style))


class PriceLines:
    """`tail --json`: every price update as one line of JSON on stdout, as the feed sends it."""

    FIELDS = ("symbol", "bid", "ask", "mid", "ts")

    def __init__(self, symbols: list[str] | None = None) -> None:
        self.symbols = list(symbols or [])
        self.updates = 0

    def apply(self, frame: dict[str, Any]) -> bool:
        if frame.get("type") != "price" or (self.symbols and frame.get("symbol") not in self.symbols):
            return False
        print_json_line({key: frame[key] for key in self.FIELDS if key in frame})
        self.updates += 1
        return True

    def set_status(self, text: str, style: str) -> None:
        """Statuses are not prices: they stay off stdout."""


def _change(mid: Decimal, first: Decimal) -> Text:
    change = mid - first
    if first == 0 or change == 0:
        return Text("0", style="dim")
    percent = (change / first * 100).quantize(Decimal("0.01"))
    sign = "+" if change > 0 else ""
    return Text(f"{sign}{change} ({sign}{percent}%)", style="green" if change > 0 else "red")


class FeedUnavailable(Exception):
    """The server's WebSocket feed cannot be reached."""


async def tail_feed(url: str, board: PriceBoard | PriceLines, console: Console, *, count: int | None = None,
                    refresh_per_second: float = 4.0, open_timeout: float = 5.0) -> int:
    """Show the feed at `url` on `board` (a live table, or JSON lines) until `count` price updates (or
    forever); returns the update count.

    Raises `FeedUnavailable` if the first connection fails; later drops are retried with backoff while
    the board says "reconnecting".
    """
    from websockets.asyncio.client import connect
    from websockets.exceptions import WebSocketException

    from shared.backoff import Backoff

    channels = [f"prices.{s}" for s in board.symbols] or ["prices.*"]
    subscribe = msgspec.json.encode({"op": "subscribe", "channels": channels}).decode()
    backoff = Backoff(initial=0.5, cap=10.0)
    connected = False
    with contextlib.ExitStack() as stack:
        while True:
            try:
                async with connect(url, open_timeout=open_timeout, close_timeout=1) as ws:
                    if not connected and isinstance(board, PriceBoard):  # shown from the first connection on
                        live = stack.enter_context(Live(board, console=console, auto_refresh=False))
                        stack.callback(live.refresh)
                        refresher = asyncio.ensure_future(_refresh(live, refresh_per_second))
                        stack.callback(refresher.cancel)
                    connected = True
                    backoff.reset()
                    board.set_status(f"connected to {url}", "green")
                    await ws.send(subscribe)
                    async for raw in ws:
                        try:
                            frame = msgspec.json.decode(raw)
                        except msgspec.DecodeError:
                            continue
                        if isinstance(frame, dict) and board.apply(frame) and count and board.updates >= count:
                            return board.updates
                reason = "the server closed the feed"
            except (OSError, TimeoutError, WebSocketException) as exc:
                if not connected:
                    raise FeedUnavailable(f"cannot connect to {url}: {exc or type(exc).__name__}") from exc
                reason = str(exc) or type(exc).__name__
            delay = backoff.next()
            board.set_status(f"reconnecting in {delay:.1f} s ({reason})", "yellow")
            await asyncio.sleep(delay)


async def _refresh(live: Live, per_second: float) -> None:
    while True:
        live.refresh()
        await asyncio.sleep(1 / per_second)


@prices_app.command("tail")
def tail(
    symbols: Annotated[list[str] | None, typer.Argument(help="Markets to show (default: all).",
                                                         show_default=False)] = None,
    url: Annotated[str | None, typer.Option("--url", help="The server's WebSocket feed "
                                            "(default: ws://CFD_HTTP_HOST:CFD_WS_PORT/ws).")] = None,
    count: Annotated[int | None, typer.Option("--count", "-n", min=1,
                                              help="Stop after this many price updates.")] = None,
    as_json: JsonOption = False,
) -> None:
    """Watch the server's live quotes in a table (bid, ask, mid, change since start, age); with --json, one
    line of JSON per price update."""
    settings = client_settings_or_fail()
    wanted = [s.upper() for s in symbols or []]
    unknown = [s for s in wanted if s not in MARKETS]
    if unknown:
        fail(f"unknown market {', '.join(unknown)}", f"markets: {', '.join(SYMBOLS)}")
    http = settings.http
    feed_url = url or http.ws_public_url or f"ws://{http.host}:{http.ws_port}/ws"
    board = PriceLines(wanted) if as_json else PriceBoard(wanted, stale_after=settings.prices.stale_after_seconds)
    try:
        run_async(tail_feed(feed_url, board, console, count=count))
    except FeedUnavailable as exc:
        fail(str(exc), "is the server running? start everything with: cfd up")


# --- record ----------------------------------------------------------------------------------------------


@prices_app.command("record")
def record(
    file: Annotated[Path, typer.Argument(help="The JSONL file to write.", dir_okay=False)],
    source: Annotated[str | None, typer.Option("--source", "-s", help="sim, backpack or replay "
                                               "(default: $CFD_PRICE_SOURCE).", show_default=False)] = None,
    seconds: Annotated[float | None, typer.Option("--seconds", min=0.001, help="Stop after this long.")] = None,
    count: Annotated[int | None, typer.Option("--count", "-n", min=1, help="Stop after this many frames.")] = None,
    force: Annotated[bool, typer.Option("--force", "-f", help="Overwrite FILE if it exists.")] = False,
) -> None:
    """Record ticks from a source as Backpack-format JSONL frames (play them back with CFD_PRICE_SOURCE=replay).

    Without --seconds or --count it records until Ctrl-C.
    """
    from rich.progress import BarColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

    from cfd_poller.metrics import PollerMetrics
    from cfd_poller.recording import record_ticks
    from cfd_poller.sources import create_source
    from shared.errors import SettingsError

    settings = client_settings_or_fail(**_source_override(source)).prices
    if file.exists() and not force:
        fail(f"{file} already exists", "pass --force to overwrite it")
    if settings.source == "replay" and settings.replay_file and _same_file(settings.replay_file, file):
        fail("cannot record a replay into the file it plays", "write to another file")
    metrics = PollerMetrics()
    try:
        price_source = create_source(settings, metrics)
    except SettingsError as exc:
        fail(str(exc))

    total = count or seconds
    columns = [SpinnerColumn(), TextColumn("{task.description}"), BarColumn() if total else TextColumn(""),
               TextColumn("[bold]{task.fields[frames]}[/] frames"), TimeElapsedColumn()]
    with file.open("wb") as out, Progress(*columns, console=console, transient=False) as progress:
        task = progress.add_task(f"recording {settings.source} → {file.name}", total=total, frames=0)
        started = time.monotonic()

        def on_tick(_tick: Any, written: int) -> None:
            done = written if count else time.monotonic() - started
            progress.update(task, completed=done, frames=written)

        async def go() -> int:
            stop = asyncio.Event()
            loop = asyncio.get_running_loop()
            with contextlib.suppress(NotImplementedError):
                loop.add_signal_handler(signal.SIGINT, stop.set)
            return await record_ticks(price_source.ticks(), out, count=count, seconds=seconds, stop=stop,
                                      on_tick=on_tick)

        written = run_async(go())
        progress.update(task, completed=total if total else None, frames=written)
    skipped = metrics.invalid_total
    note = f" ({skipped} invalid frames skipped)" if skipped else ""
    console.print(f"[green]✓[/] recorded {written} frames from {settings.source} to {file}{note}")


def _source_override(source: str | None) -> dict[str, dict[str, str]]:
    if source is None:
        return {}
    if source.lower() not in SOURCES:
        fail(f"unknown price source {source!r}", f"choose one of: {', '.join(SOURCES)}")
    return {"prices": {"source": source.lower()}}


def _same_file(a: Path, b: Path) -> bool:
    try:
        return a.resolve() == b.resolve()
    except OSError:
        return False


# --- poller ----------------------------------------------------------------------------------------------


def poller_command(
    source: Annotated[str | None, typer.Option("--source", "-s", help="sim, backpack or replay "
                                               "(default: $CFD_PRICE_SOURCE).", show_default=False)] = None,
) -> None:
    """Run the price poller alone, publishing ticks to the configured bus."""
    settings = settings_or_fail(**_source_override(source))
    if not settings.bus.bootstrap:
        err.print("[yellow]warning:[/] no CFD_KAFKA_BOOTSTRAP: with the in-process bus nothing else sees these "
                  "ticks; use [bold]cfd up[/] to run everything in one process.")
    run_async(serve(settings, ("poller",), migrate_db=False))


# --- exchange --------------------------------------------------------------------------------------------


@exchange_app.callback()
def exchange_callback() -> None:
    """A local exchange speaking Backpack's WebSocket protocol."""


@exchange_app.command("serve")
def exchange_serve(
    port: Annotated[int, typer.Option("--port", "-p", min=0, max=65535, help="Port to listen on.")] = 9000,
    host: Annotated[str, typer.Option("--host", help="Address to bind.")] = "127.0.0.1",
    rate: Annotated[float, typer.Option("--rate", min=0.1, max=1000,
                                        help="Random quotes per second per subscribed market.")] = 4.0,
    seed: Annotated[int | None, typer.Option("--seed", help="Seed for reproducible quotes.")] = None,
) -> None:
    """Run the local exchange with random-walk quotes until Ctrl-C."""
    from cfd_poller.local_exchange import LocalExchange

    async def go() -> None:
        exchange = LocalExchange(host, port, rate_hz=rate, seed=seed)
        try:
            await exchange.start()
        except OSError as exc:
            fail(f"cannot listen on {host}:{port}: {exc.strerror or exc}", "pick another port with --port")
        console.print(f"[bold green]local exchange[/] on {exchange.url} · {rate:g} quotes/s per market")
        console.print(f"  klines (history) at {exchange.rest_url}/api/v1/klines")
        console.print("[dim]point the platform at it (the klines are found on the same address):[/]")
        console.print(f"  CFD_PRICE_SOURCE=backpack CFD_BACKPACK_WS_URL={exchange.url} cfd up", soft_wrap=True)
        console.print("[dim]Ctrl-C stops it.[/]")
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(NotImplementedError):
                loop.add_signal_handler(sig, stop.set)
        try:
            with console.status("") as status:
                while not stop.is_set():
                    status.update(f"{exchange.connection_count} connections · {exchange.quotes_sent} quotes sent")
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(stop.wait(), timeout=1.0)
        finally:
            await exchange.stop()
        console.print(f"[green]✓[/] stopped after {exchange.quotes_sent} quotes")

    run_async(go())
