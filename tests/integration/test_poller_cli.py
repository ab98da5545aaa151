"""`cfd prices tail|record`, `cfd poller` and `cfd exchange serve` as an operator uses them."""

from __future__ import annotations

import asyncio
import io
import socket
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import msgspec
import pytest
import typer
from helpers import cli_env
from rich.console import Console
from typer.testing import CliRunner
from websockets.asyncio.server import ServerConnection, serve

from cfd_cli.prices import PriceBoard, exchange_app, poller_command, prices_app, tail_feed
from cfd_poller.frames import BookTicker, FrameDecoder

cli = typer.Typer()
cli.add_typer(prices_app, name="prices")
cli.add_typer(exchange_app, name="exchange")
cli.command("poller")(poller_command)
runner = CliRunner(env=cli_env())  # the commands run in this process: none of the shell's CFD_* settings


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_record_writes_valid_backpack_frames(tmp_path: Path) -> None:
    path = tmp_path / "sim.jsonl"
    result = runner.invoke(cli, ["prices", "record", str(path), "--source", "sim", "--count", "25"],
                           env={"CFD_SIM_TICK_HZ": "500", "CFD_SIM_SEED": "4"})
    assert result.exit_code == 0, result.output
    assert "recorded 25 frames from sim" in result.output
    decoder = FrameDecoder()
    frames = [decoder.decode(line) for line in path.read_bytes().splitlines()]
    assert len(frames) == 25 and all(isinstance(f, BookTicker) for f in frames)


def test_record_does_not_overwrite_by_accident(tmp_path: Path) -> None:
    path = tmp_path / "precious.jsonl"
    path.write_text("keep me\n")
    result = runner.invoke(cli, ["prices", "record", str(path), "--count", "1"])
    assert result.exit_code == 1
    assert "already exists" in result.output and "--force" in result.output
    assert path.read_text() == "keep me\n"


def test_record_refuses_an_unknown_source(tmp_path: Path) -> None:
    result = runner.invoke(cli, ["prices", "record", str(tmp_path / "x.jsonl"), "--source", "bloomberg"])
    assert result.exit_code == 1
    assert "unknown price source 'bloomberg'" in result.output
    assert not (tmp_path / "x.jsonl").exists()


def test_tail_says_plainly_when_it_cannot_connect() -> None:
    url = f"ws://127.0.0.1:{free_port()}/ws"
    result = runner.invoke(cli, ["prices", "tail", "--url", url])
    assert result.exit_code == 1
    assert f"cannot connect to {url}" in result.output
    assert "cfd up" in result.output


def test_tail_refuses_an_unknown_market() -> None:
    result = runner.invoke(cli, ["prices", "tail", "SOL_USDC", "pepe_usdc"])
    assert result.exit_code == 1
    assert "unknown market PEPE_USDC" in result.output


def test_poller_refuses_an_unknown_source() -> None:
    result = runner.invoke(cli, ["poller", "--source", "nasdaq"])
    assert result.exit_code == 1
    assert "choose one of: sim, backpack, replay" in result.output


def test_exchange_serve_reports_a_port_in_use() -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        result = runner.invoke(cli, ["exchange", "serve", "--port", str(port)])
    assert result.exit_code == 1
    assert f"cannot listen on 127.0.0.1:{port}" in result.output


# --- tail against a server speaking DESIGN.md's feed protocol --------------------------------------------


Script = Callable[[ServerConnection], Awaitable[None]]
StartServer = Callable[[Script], Awaitable[str]]


@pytest.fixture
async def feed_server() -> AsyncIterator[StartServer]:
    """Starts a WebSocket server running `script` per connection; yields a function returning its URL."""
    servers = []

    async def start(script: Script) -> str:
        server = await serve(script, "127.0.0.1", 0)
        servers.append(server)
        return f"ws://127.0.0.1:{server.sockets[0].getsockname()[1]}/ws"

    yield start
    for server in servers:
        server.close()
        await server.wait_closed()


def price(symbol: str, bid: str, ask: str, mid: str) -> str:
    return msgspec.json.encode({"type": "price", "symbol": symbol, "bid": bid, "ask": ask, "mid": mid,
                                "ts": 1_732_000_000_000}).decode()


async def test_tail_subscribes_and_shows_the_live_prices(feed_server: StartServer) -> None:
    requests: list[object] = []

    async def script(ws: ServerConnection) -> None:
        await ws.send('{"type":"welcome","server":"test"}')
        request = msgspec.json.decode(await ws.recv())
        requests.append(request)
        await ws.send(msgspec.json.encode({"type": "subscribed", "channels": request["channels"]}).decode())
        await ws.send(price("SOL_USDC", "185.05", "185.10", "185.075"))
        await ws.send("not json")
        await ws.send(price("SOL_USDC", "185.55", "185.60", "185.575"))
        await ws.wait_closed()

    url = await feed_server(script)
    out = io.StringIO()
    board = PriceBoard(["SOL_USDC"])
    updates = await asyncio.wait_for(tail_feed(url, board, Console(file=out, width=120), count=2), 3)

    assert updates == 2
    assert requests == [{"op": "subscribe", "channels": ["prices.SOL_USDC"]}]
    shown = out.getvalue()
    assert "185.55" in shown and "185.60" in shown and "+0.500 (+0.27%)" in shown


async def test_tail_reconnects_when_the_server_restarts(feed_server: StartServer) -> None:
    connections = 0

    async def script(ws: ServerConnection) -> None:
        nonlocal connections
        connections += 1
        await ws.recv()
        if connections == 1:
            await ws.send(price("BTC_USDC", "96500.0", "96500.5", "96500.25"))
            await ws.close(1012, "restart")
            return
        await ws.send(price("BTC_USDC", "96400.0", "96400.5", "96400.25"))
        await ws.wait_closed()

    url = await feed_server(script)
    out = io.StringIO()
    board = PriceBoard()
    assert await asyncio.wait_for(tail_feed(url, board, Console(file=out, width=120), count=2), 3) == 2
    assert connections == 2
    assert "-100.00 (-0.10%)" in out.getvalue()


async def test_tail_prints_one_line_of_json_per_price_with_json(feed_server: StartServer) -> None:
    async def script(ws: ServerConnection) -> None:
        await ws.recv()
        await ws.send('{"type":"subscribed","channels":["prices.SOL_USDC"]}')
        await ws.send(price("SOL_USDC", "185.05", "185.10", "185.075"))
        await ws.send(price("SOL_USDC", "185.55", "185.60", "185.575"))
        await ws.wait_closed()

    url = await feed_server(script)
    result = await asyncio.to_thread(runner.invoke, cli, ["prices", "tail", "SOL_USDC", "--url", url, "--json",
                                                          "-n", "2"])
    assert result.exit_code == 0, result.output
    assert [msgspec.json.decode(line) for line in result.output.splitlines()] == [
        {"symbol": "SOL_USDC", "bid": "185.05", "ask": "185.10", "mid": "185.075", "ts": 1_732_000_000_000},
        {"symbol": "SOL_USDC", "bid": "185.55", "ask": "185.60", "mid": "185.575", "ts": 1_732_000_000_000},
    ]
