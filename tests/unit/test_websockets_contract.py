"""The contract `cfd_server.ws.fast_send` has with the installed `websockets`: the internal names it uses are
there, the library still writes only through `send_data()`, and frames written past the library reach a
real client whole, with the outbox closed as the close frame goes out.

When this fails after a `websockets` upgrade, read `fast_send`'s docstring and check each point against the
new version before moving the pin in `pyproject.toml`.
"""

from __future__ import annotations

import ast
import asyncio
import contextlib
import inspect
from collections.abc import AsyncIterator

import pytest
import websockets
from websockets.asyncio import connection as ws_connection
from websockets.asyncio import server as ws_server
from websockets.asyncio.client import connect
from websockets.asyncio.server import ServerConnection, serve
from websockets.exceptions import ConnectionClosed
from websockets.protocol import State

from cfd_server.ws.fast_send import FeedConnection
from cfd_server.ws.protocol import text_frame


def test_the_internal_names_fast_send_uses_are_there():
    send_data = ServerConnection.send_data
    assert callable(send_data)
    assert list(inspect.signature(send_data).parameters) == ["self"], "send_data() takes arguments now"
    assert "connection_lost" in ws_connection.Connection.__dict__
    assert "create_connection" in inspect.signature(serve).parameters
    assert "protocol" in inspect.signature(ServerConnection.__init__).parameters
    assert {State.OPEN, State.CLOSING, State.CLOSED} <= set(State)


def _writers(module) -> list[str]:
    """The functions of `module` that call `….transport.write(…)`."""
    found = []
    for node in ast.walk(ast.parse(inspect.getsource(module))):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            for call in ast.walk(node):
                if (isinstance(call, ast.Call) and isinstance(call.func, ast.Attribute)
                        and call.func.attr in ("write", "writelines")
                        and isinstance(call.func.value, ast.Attribute) and call.func.value.attr == "transport"):
                    found.append(node.name)
    return found


def test_the_library_writes_to_a_server_connection_only_in_send_data():
    assert _writers(ws_connection) == ["send_data"], f"websockets {websockets.__version__} writes elsewhere too"
    assert _writers(ws_server) == []


class RecordingOutbox:
    """Stands in for the connection's `Outbox`: records the protocol state when it is closed."""

    def __init__(self, conn: FeedConnection) -> None:
        self.conn = conn
        self.closed_in: list[State] = []

    def close(self) -> None:
        self.closed_in.append(self.conn.protocol.state)


@contextlib.asynccontextmanager
async def feed_server(handler) -> AsyncIterator[str]:
    server = await serve(handler, "127.0.0.1", 0, compression=None, create_connection=FeedConnection)
    try:
        yield f"ws://127.0.0.1:{server.sockets[0].getsockname()[1]}/ws"
    finally:
        server.close(close_connections=True)
        await server.wait_closed()


async def test_frames_written_past_the_library_reach_a_client_whole_and_the_close_frame_closes_the_outbox():
    outboxes: list[RecordingOutbox] = []
    sent = [f'{{"n":{i},"pad":"{"x" * (i * 300)}"}}' for i in range(6)]  # up to 126+ bytes: longer headers

    async def handler(conn: FeedConnection) -> None:
        assert isinstance(conn, FeedConnection)
        outbox = conn.outbox = RecordingOutbox(conn)  # type: ignore[assignment]
        outboxes.append(outbox)
        for i, text in enumerate(sent):
            conn.transport.write(text_frame(text.encode()))
            if i == 2:
                await conn.send("from the library")  # its frames and ours interleave at frame boundaries
        assert outbox.closed_in == []
        await conn.close(4008, "too slow")

    async with feed_server(handler) as url, connect(url, compression=None) as client:
        received = [await asyncio.wait_for(client.recv(), 5) for _ in range(len(sent) + 1)]
        with pytest.raises(ConnectionClosed):
            await asyncio.wait_for(client.recv(), 5)
        assert client.close_code == 4008 and client.close_reason == "too slow"
    assert received == [*sent[:3], "from the library", *sent[3:]]
    (outbox,) = outboxes
    # closed first by send_data() as the close frame went out (CLOSING), then again when the connection was lost
    assert outbox.closed_in[0] is State.CLOSING, outbox.closed_in
    assert outbox.closed_in[-1] is State.CLOSED


async def test_a_close_from_the_client_closes_the_outbox_when_the_reply_goes_out():
    outboxes: list[RecordingOutbox] = []
    done = asyncio.Event()

    async def handler(conn: FeedConnection) -> None:
        outboxes.append(RecordingOutbox(conn))
        conn.outbox = outboxes[-1]  # type: ignore[assignment]
        with contextlib.suppress(ConnectionClosed):
            await conn.recv()
        done.set()

    async with feed_server(handler) as url:
        async with connect(url, compression=None) as client:
            await client.close(1000)
        await asyncio.wait_for(done.wait(), 5)
    (outbox,) = outboxes
    assert outbox.closed_in[0] is State.CLOSING, outbox.closed_in  # the reply close frame, by send_data()


async def test_a_lost_connection_closes_the_outbox():
    outboxes: list[RecordingOutbox] = []
    lost = asyncio.Event()

    async def handler(conn: FeedConnection) -> None:
        outboxes.append(RecordingOutbox(conn))
        conn.outbox = outboxes[-1]  # type: ignore[assignment]
        await conn.wait_closed()
        lost.set()

    async with feed_server(handler) as url:
        client = await connect(url, compression=None)
        client.transport.abort()  # no close frame: the TCP connection just goes
        await asyncio.wait_for(lost.wait(), 5)
    (outbox,) = outboxes
    assert outbox.closed_in and set(outbox.closed_in) == {State.CLOSED}
