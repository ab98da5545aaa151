"""FeedClient against a local WebSocket server: resubscribe and re-auth after a drop, state, staleness."""

from __future__ import annotations

import asyncio
import json
from decimal import Decimal

import pytest
from websockets.asyncio.server import serve

from cfd_client import FeedClient, FeedState, StateChanged
from cfd_client.models import PositionFrame
from shared.backoff import Backoff
from shared.contracts.ws import PriceFrame


class FakeFeedServer:
    """Speaks enough of the feed protocol; records each connection's client ops."""

    def __init__(self) -> None:
        self.connections: list[list[dict]] = []
        self.live: set = set()
        self.server = None
        self.port = 0

    async def start(self, port: int = 0) -> None:
        self.server = await serve(self._handle, "127.0.0.1", port)
        self.port = self.server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        self.server.close(close_connections=True)
        await self.server.wait_closed()

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/ws"

    async def _handle(self, ws) -> None:
        ops: list[dict] = []
        self.connections.append(ops)
        self.live.add(ws)
        await ws.send(json.dumps({"type": "welcome", "version": "t", "server_time": 0, "max_frame_bytes": 4096,
                                  "max_subscriptions": 50}))
        try:
            async for raw in ws:
                op = json.loads(raw)
                ops.append(op)
                if op["op"] == "subscribe":
                    await ws.send(json.dumps({"type": "subscribed", "channels": op["channels"]}))
                elif op["op"] == "auth":
                    await ws.send(json.dumps({"type": "authenticated", "user_id": "u1"}))
        finally:
            self.live.discard(ws)

    async def broadcast(self, frame: dict) -> None:
        for ws in list(self.live):
            await ws.send(json.dumps(frame))

    async def drop_all(self) -> None:
        for ws in list(self.live):
            await ws.close(1001, "going away")


async def next_of(feed: FeedClient, kind, timeout: float = 5.0, where=lambda e: True):
    async def find():
        async for event in feed.events():
            if isinstance(event, kind) and where(event):
                return event
        raise AssertionError("the feed ended")

    return await asyncio.wait_for(find(), timeout)


def price(mid: str = "185.00") -> dict:
    return {"type": "price", "symbol": "SOL_USDC", "bid": "184.90", "ask": "185.10", "mid": mid, "ts": 1}


@pytest.fixture
async def server():
    running = FakeFeedServer()
    await running.start()
    yield running
    await running.stop()


async def test_subscribes_then_signs_in_then_subscribes_to_account_and_yields_typed_frames(server):
    feed = FeedClient(server.url, channels=["prices.*", "account"], token="tok",
                      backoff=Backoff(initial=0.05, cap=0.2))
    async with feed:
        await next_of(feed, StateChanged, where=lambda e: e.state is FeedState.LIVE)
        await asyncio.sleep(0.1)
        assert server.connections[0] == [{"op": "subscribe", "channels": ["prices.*"]},
                                         {"op": "auth", "token": "tok"},
                                         {"op": "subscribe", "channels": ["account"]}]
        await server.broadcast(price())
        frame = await next_of(feed, PriceFrame)
        assert frame.bid == Decimal("184.90")
        await server.broadcast({"type": "position", "event": "opened", "user_id": "u1", "balance": "10000",
                                "position": {"id": "p", "symbol": "SOL_USDC", "side": "short", "qty": "2",
                                             "entry_price": "184.90", "leverage": 3, "margin": "123.27",
                                             "status": "open", "opened_at": 1, "updated_at": 1}})
        event = await next_of(feed, PositionFrame)
        assert event.position.side == "short" and event.balance == Decimal(10000)


async def test_after_a_drop_it_reconnects_resubscribes_and_signs_in_again(server):
    feed = FeedClient(server.url, channels=["prices.*", "account"], token="tok",
                      backoff=Backoff(initial=0.05, cap=0.2))
    async with feed:
        await next_of(feed, StateChanged, where=lambda e: e.state is FeedState.LIVE)
        await feed.subscribe(["candles.1m.SOL_USDC"])
        await asyncio.sleep(0.05)
        await server.drop_all()
        lost = await next_of(feed, StateChanged, where=lambda e: e.state is FeedState.RECONNECTING)
        assert lost.retry_in is not None and lost.retry_in <= 0.2 and lost.attempt == 1
        await next_of(feed, StateChanged, where=lambda e: e.state is FeedState.LIVE)
        await asyncio.sleep(0.1)
        again = server.connections[-1]
        assert {"op": "auth", "token": "tok"} in again
        subscribed = {c for op in again if op["op"] == "subscribe" for c in op["channels"]}
        assert subscribed == {"prices.*", "candles.1m.SOL_USDC", "account"}
        assert feed.connections == 2


async def test_keeps_retrying_while_the_server_is_down_and_recovers_when_it_returns(server):
    feed = FeedClient(server.url, channels=["prices.*"], backoff=Backoff(initial=0.05, cap=0.1))
    port = server.port
    async with feed:
        await next_of(feed, StateChanged, where=lambda e: e.state is FeedState.LIVE)
        await server.stop()
        await next_of(feed, StateChanged, where=lambda e: e.state is FeedState.RECONNECTING and e.attempt >= 3)
        await server.start(port)
        await next_of(feed, StateChanged, where=lambda e: e.state is FeedState.LIVE)
        await server.broadcast(price("186.00"))
        assert (await next_of(feed, PriceFrame)).mid == Decimal("186.00")


async def test_a_quiet_feed_turns_stale_and_the_next_price_makes_it_live(server):
    feed = FeedClient(server.url, channels=["prices.*"], stale_after=0.3, backoff=Backoff(initial=0.05, cap=0.1))
    async with feed:
        await next_of(feed, StateChanged, where=lambda e: e.state is FeedState.LIVE)
        stale = await next_of(feed, StateChanged, where=lambda e: e.state is FeedState.STALE)
        assert "no price" in stale.detail and feed.state is FeedState.STALE
        await server.broadcast(price())
        await next_of(feed, StateChanged, where=lambda e: e.state is FeedState.LIVE)


async def test_frames_it_cannot_read_are_skipped_not_fatal(server):
    feed = FeedClient(server.url, channels=["prices.*"], backoff=Backoff(initial=0.05, cap=0.1))
    async with feed:
        await next_of(feed, StateChanged, where=lambda e: e.state is FeedState.LIVE)
        await server.broadcast({"type": "from_the_future", "x": 1})
        await server.broadcast({"type": "price", "symbol": "SOL_USDC"})
        await server.broadcast(price("187.00"))
        assert (await next_of(feed, PriceFrame)).mid == Decimal("187.00")
        assert feed.skipped == 2


def snapshot(seq: int | None) -> dict:
    return {"type": "account", "event": "mark" if seq is None else "snapshot", "user_id": "u1", "seq": seq}


async def test_account_events_resume_after_the_last_one_and_none_is_yielded_twice(server):
    from cfd_client.models import AccountFrame

    feed = FeedClient(server.url, channels=["account"], token="tok", backoff=Backoff(initial=0.05, cap=0.2))
    got: list[int | None] = []

    async def take(count: int) -> None:
        for _ in range(count):
            got.append((await next_of(feed, AccountFrame)).seq)

    async with feed:
        await next_of(feed, StateChanged, where=lambda e: e.state is FeedState.LIVE)
        await asyncio.sleep(0.1)
        for seq in (1, 2, None):
            await server.broadcast(snapshot(seq))
        await take(3)
        await server.drop_all()
        await next_of(feed, StateChanged, where=lambda e: e.state is FeedState.LIVE)
        await asyncio.sleep(0.1)
        assert server.connections[-1][-1] == {"op": "subscribe", "channels": ["account"], "since": 2}
        for seq in (2, 3):  # a server that sends one it had sent already
            await server.broadcast(snapshot(seq))
        await take(1)
        await server.broadcast(snapshot(5))  # 4 went missing: not yielded; the client asks from 3 again
        await asyncio.sleep(0.1)
        assert server.connections[-1][-1] == {"op": "subscribe", "channels": ["account"], "since": 3}
        for seq in (4, 5):
            await server.broadcast(snapshot(seq))
        await take(2)
    assert got == [1, 2, None, 3, 4, 5] and feed.account_seq == 5


async def test_after_resume_gap_it_goes_on_from_the_state_it_was_sent(server):
    from cfd_client.models import AccountFrame, AccountStateFrame
    from shared.contracts.ws import ErrorFrame

    feed = FeedClient(server.url, channels=["account"], token="tok", backoff=Backoff(initial=0.05, cap=0.2))
    async with feed:
        await next_of(feed, StateChanged, where=lambda e: e.state is FeedState.LIVE)
        await server.broadcast({"type": "error", "code": "resume_gap", "message": "gone"})
        account = {"currency": "USD", "balance": "10", "equity": "10", "used_margin": "0.00", "free_margin": "10",
                   "margin_level": None, "unrealized_pnl": "0.00"}
        await server.broadcast({"type": "account_state", "seq": 40, "account": account, "positions": [],
                                "orders": []})
        assert (await next_of(feed, ErrorFrame)).code == "resume_gap"
        state = await next_of(feed, AccountStateFrame)
        assert state.seq == 40 and state.account.balance == Decimal(10) and feed.account_seq == 40
        for seq in (40, 41):
            await server.broadcast(snapshot(seq))
        assert (await next_of(feed, AccountFrame)).seq == 41
