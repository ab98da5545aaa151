"""The WebSocket feed end to end: ticks on the bus → quote book → hub → real `websockets` clients.

Runs on the selected backend set (tests/conftest.py): the in-process bus and cache, or Kafka and Redis.
"""

from __future__ import annotations

import asyncio
import json
import socket
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from decimal import Decimal

import msgspec
import pytest
from helpers import REAL, RUN_ID
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from cfd_server.auth.session_ends import SessionNotices
from cfd_server.auth.tokens import Sessions
from cfd_server.context import ServerContext
from cfd_server.market import MarketRuntime, start_market
from cfd_server.ws import Limits
from shared.bus import Bus, Topics, create_bus
from shared.bus.kafka import KafkaBus
from shared.bus.rpc import RequestClient
from shared.cache import create_cache
from shared.contracts import encode
from shared.contracts.bus import PriceTick
from shared.contracts.rest import User
from shared.errors import BackendDown, Unauthorized
from shared.markets import MARKETS, broker_quote
from shared.settings import Settings

TIMEOUT = 10.0 if REAL else 3.0

Feed = Callable[..., Awaitable[MarketRuntime]]


@pytest.fixture
async def settings(make_settings, tmp_path) -> Settings:
    """The run's backend set, with topics of this test's own (no other consumer sees its ticks)."""
    return make_settings(data_dir=tmp_path, bus={"topic_prefix": f"t{RUN_ID}.ws{uuid.uuid4().hex[:8]}."})


@pytest.fixture
async def bus(settings: Settings) -> AsyncIterator[Bus]:
    """The in-process bus, or Kafka on the real backend set."""
    the_bus = create_bus(settings.bus, settings.instance_id)
    await the_bus.start()
    await the_bus.ensure_topics(Topics(settings.bus).all())
    yield the_bus
    await the_bus.stop()


@pytest.fixture
async def feed(settings: Settings, bus: Bus) -> AsyncIterator[Feed]:
    """Start the market runtime (quote book + hub + WebSocket server) with the given limits."""
    started: list[tuple[MarketRuntime, RequestClient]] = []
    cache = create_cache(settings.cache)

    async def start(limits: Limits | None = None) -> MarketRuntime:
        topics = Topics(settings.bus)
        rpc = RequestClient(bus, topics.routes(), topics.replies, settings.instance_id, 2.0)
        await rpc.start()
        ctx = ServerContext(settings=settings, bus=bus, cache=cache, mailer=None, rpc=rpc,  # type: ignore[arg-type]
                            mail=None, topics=topics)  # type: ignore[arg-type]
        runtime = await start_market(ctx, limits=limits)
        started.append((runtime, rpc))
        return runtime

    yield start
    for runtime, rpc in started:
        await runtime.stop()
        await rpc.stop()
    await cache.close()


_last_us = 0


def _tick(symbol: str, bid: str, ask: str, ts_ms: int | None = None) -> PriceTick:
    """A tick at `ts_ms`, or now: each later than the last, as an exchange's microsecond clock is."""
    global _last_us
    ts_us = ts_ms * 1000 if ts_ms is not None else max(time.time_ns() // 1000, _last_us + 1)
    _last_us = max(_last_us, ts_us)
    return PriceTick(symbol=symbol, bid=Decimal(bid), ask=Decimal(ask), exchange_time_us=ts_us,
                     ingest_time_us=ts_us)


async def publish(bus: Bus, settings: Settings, tick: PriceTick) -> None:
    await bus.publish(Topics(settings.bus).prices, encode(tick), key=tick.symbol.encode())


def expected_frame(tick: PriceTick) -> dict:
    quote = broker_quote(MARKETS[tick.symbol], tick.bid, tick.ask, tick.exchange_time_us // 1000)
    return {"type": "price", "symbol": tick.symbol, "bid": str(quote.bid), "ask": str(quote.ask),
            "mid": str(quote.mid), "ts": quote.ts}


async def recv(ws: ClientConnection, timeout: float = TIMEOUT) -> dict:
    return json.loads(await asyncio.wait_for(ws.recv(), timeout))


async def recv_type(ws: ClientConnection, kind: str, timeout: float = TIMEOUT) -> dict:
    """The next frame of type `kind`, skipping others."""
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        frame = await recv(ws, max(0.01, deadline - asyncio.get_running_loop().time()))
        if frame["type"] == kind:
            return frame


async def open_client(runtime: MarketRuntime, **kwargs) -> ClientConnection:
    ws = await connect(f"ws://127.0.0.1:{runtime.ws_port}/ws", **kwargs)
    welcome = await recv(ws)
    assert welcome["type"] == "welcome" and welcome["version"]
    return ws


async def subscribe(ws: ClientConnection, *channels: str) -> dict:
    await ws.send(json.dumps({"op": "subscribe", "channels": list(channels)}))
    return await recv_type(ws, "subscribed")


async def wait_until(predicate: Callable[[], bool], timeout: float = TIMEOUT) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not predicate():
        assert asyncio.get_running_loop().time() < deadline, "timed out waiting"
        await asyncio.sleep(0.01)


async def test_a_subscriber_receives_the_broker_quote_of_a_tick(feed, bus, settings):
    runtime = await feed()
    async with await open_client(runtime) as ws:
        assert (await subscribe(ws, "prices.SOL_USDC"))["channels"] == ["prices.SOL_USDC"]
        first = _tick("SOL_USDC", "185.00", "185.04")
        await publish(bus, settings, _tick("BTC_USDC", "96500.0", "96500.5"))  # not subscribed
        await publish(bus, settings, first)
        frame = await recv(ws)
        assert frame == expected_frame(first)
        assert Decimal(frame["bid"]) < first.bid and Decimal(frame["ask"]) > first.ask  # the markup is applied
        second = _tick("SOL_USDC", "185.10", "185.12")
        await publish(bus, settings, second)
        assert await recv(ws) == expected_frame(second)


async def test_a_new_subscriber_gets_the_latest_price_first(feed, bus, settings):
    runtime = await feed()
    tick = _tick("ETH_USDC", "3450.10", "3450.20")
    await publish(bus, settings, tick)
    await wait_until(lambda: runtime.quotes.get("ETH_USDC") is not None)
    async with await open_client(runtime) as ws:
        await subscribe(ws, "prices.eth_usdc")
        assert await recv(ws) == expected_frame(tick)


async def test_the_wildcard_gets_every_market_once(feed, bus, settings):
    runtime = await feed()
    async with await open_client(runtime) as ws:
        subscribed = await subscribe(ws, "prices.*", "prices.SOL_USDC")
        assert subscribed["channels"] == ["prices.*", "prices.SOL_USDC"]
        ticks = [_tick("SOL_USDC", "185.00", "185.04"), _tick("BTC_USDC", "96500.0", "96500.5"),
                 _tick("DOGE_USDC", "0.32001", "0.32004")]
        for tick in ticks:
            await publish(bus, settings, tick)
        received = [await recv(ws) for _ in ticks]
        assert sorted(received, key=lambda f: f["symbol"]) == sorted(map(expected_frame, ticks),
                                                                     key=lambda f: f["symbol"])
        await ws.send(json.dumps({"op": "unsubscribe", "channels": ["prices.*"]}))
        assert (await recv_type(ws, "unsubscribed"))["channels"] == ["prices.*"]
        await publish(bus, settings, _tick("BTC_USDC", "96501.0", "96501.5"))
        last = _tick("SOL_USDC", "185.20", "185.24")
        await publish(bus, settings, last)
        assert await recv(ws) == expected_frame(last)  # BTC is no longer sent; SOL still is


async def test_bad_frames_get_error_frames_and_the_connection_stays(feed):
    runtime = await feed()
    async with await open_client(runtime) as ws:
        bad = [
            ("not json", "invalid_json"),
            ("[1, 2]", "invalid_frame"),
            ('{"channels": []}', "invalid_frame"),
            ('{"op": "dance"}', "unknown_op"),
            ('{"op": "subscribe", "channels": "prices.SOL_USDC"}', "invalid_frame"),
            ('{"op": "subscribe", "channels": ["prices.NOPE_USDC"]}', "unknown_channel"),
            ('{"op": "subscribe", "channels": ["candles.2m.SOL_USDC"]}', "unknown_channel"),
            ('{"op": "subscribe", "channels": ["account"]}', "auth_required"),
            ('{"op": "auth", "token": "not-a-jwt"}', "invalid_token"),
            ('{"op": "ping", "id": 1, "extra": true}', "invalid_frame"),
        ]
        for text, code in bad:
            await ws.send(text)
            frame = await recv(ws)
            assert frame["type"] == "error" and frame["code"] == code, (text, frame)
            assert frame["message"]
        await ws.send(b'{"op": "ping"}')
        assert (await recv(ws))["code"] == "invalid_frame"
        await ws.send(json.dumps({"op": "ping", "id": 7}))
        pong = await recv(ws)
        assert pong["type"] == "pong" and pong["id"] == 7 and pong["server_time"] > 0
        # the refused subscribe above changed nothing
        assert [c.channels for c in runtime.hub.clients] == [set()]


async def test_too_many_errors_close_the_connection_with_1008(feed):
    runtime = await feed(Limits(max_errors=3))
    async with await open_client(runtime) as ws:
        for _ in range(3):
            await ws.send("nope")
        codes = [(await recv(ws))["code"] for _ in range(3)]
        assert codes == ["invalid_json"] * 3
        with pytest.raises(ConnectionClosed):
            await recv(ws)
        assert ws.close_code == 1008 and ws.close_reason == "too many errors"


async def test_the_outbox_closes_as_soon_as_the_close_frame_is_written(feed):
    runtime = await feed()
    async with await open_client(runtime) as ws:
        await subscribe(ws, "prices.SOL_USDC")
        (client,) = runtime.hub.clients
        closing = asyncio.create_task(client.conn.close(1001))
        await asyncio.sleep(0)  # the close frame is out; the handshake is not over
        assert client in runtime.hub.clients and client.outbox.done
        await closing
        with pytest.raises(ConnectionClosed):
            await recv(ws)
        assert ws.close_code == 1001


async def test_an_oversized_frame_closes_the_connection_with_1009(feed):
    runtime = await feed(Limits(max_frame_bytes=4096))
    async with await open_client(runtime) as ws:
        await ws.send(json.dumps({"op": "subscribe", "channels": ["prices.SOL_USDC"] * 400}))
        with pytest.raises(ConnectionClosed):
            await recv(ws)
        assert ws.close_code == 1009


async def test_the_subscription_limit_refuses_the_whole_request(feed):
    runtime = await feed(Limits(max_subscriptions=3))
    async with await open_client(runtime) as ws:
        await ws.send(json.dumps({"op": "subscribe", "channels": ["prices.SOL_USDC", "prices.BTC_USDC",
                                                                  "prices.ETH_USDC", "prices.BNB_USDC"]}))
        frame = await recv(ws)
        assert frame["code"] == "too_many_subscriptions"
        assert len((await subscribe(ws, "prices.SOL_USDC", "prices.BTC_USDC", "candles.1m.SOL_USDC"))
                   ["channels"]) == 3
        await subscribe(ws, "prices.SOL_USDC")  # already held: not a new channel
        await ws.send(json.dumps({"op": "subscribe", "channels": ["prices.ETH_USDC"]}))
        assert (await recv(ws))["code"] == "too_many_subscriptions"


def new_user(name: str = "ws") -> User:
    return User(id=str(uuid.uuid4()), email=f"{name}-{uuid.uuid4().hex[:8]}@example.com", name=name, created_at=0)


async def signed_in_feed(runtime: MarketRuntime, token: str, *channels: str) -> ClientConnection:
    """A connection authenticated with `token`, on `account` and any other `channels`."""
    ws = await open_client(runtime)
    await ws.send(json.dumps({"op": "auth", "token": token}))
    assert (await recv(ws))["type"] == "authenticated"
    assert (await subscribe(ws, "account", *channels))["channels"] == ["account", *channels]
    return ws


async def no_account_frame_before_pong(ws: ClientConnection) -> None:
    """Ping and read up to the pong: nothing of the account came in between."""
    await ws.send(json.dumps({"op": "ping", "id": "barrier"}))
    while (frame := await recv(ws))["type"] != "pong":
        assert frame["type"] not in ("account", "position"), frame


async def test_auth_lets_a_client_subscribe_to_its_account(feed):
    runtime = await feed()
    sessions = Sessions.for_server(runtime.ctx)
    user = new_user()
    token, _ = await sessions.issue(user)
    async with await open_client(runtime) as ws:
        await ws.send(json.dumps({"op": "auth", "token": token}))
        assert await recv(ws) == {"type": "authenticated", "user_id": user.id}
        assert (await subscribe(ws, "account"))["channels"] == ["account"]
        assert len(runtime.hub.connections_of(user.id)) == 1
        runtime.hub.publish_account(user.id, b'{"type":"account","balance":"10000"}')
        assert await recv(ws) == {"type": "account", "balance": "10000"}
    await wait_until(lambda: not runtime.hub.connections_of(user.id))


async def test_a_logout_on_another_server_ends_the_feed_sign_in_at_once(feed):
    here, elsewhere = await feed(), await feed()  # two servers on one bus and cache
    sessions = Sessions.for_server(elsewhere.ctx)
    user = new_user()
    token, session = await sessions.issue(user)
    other_token, _ = await sessions.issue(user)
    ended = await signed_in_feed(here, token, "prices.SOL_USDC")
    still = await signed_in_feed(here, other_token)
    await sessions.revoke(session.jti)  # what POST /auth/logout does on the other server
    frame = await recv_type(ended, "error")
    assert frame["code"] == "session_ended" and "auth" in frame["message"]
    here.hub.publish_account(user.id, b'{"type":"account","event":"snapshot"}')
    assert (await recv(still))["event"] == "snapshot"  # the user's other session is not touched
    await no_account_frame_before_pong(ended)
    await ended.send(json.dumps({"op": "subscribe", "channels": ["account"]}))
    assert (await recv(ended))["code"] == "auth_required"  # the sign-in is gone, not only the channel
    await ended.send(json.dumps({"op": "auth", "token": token}))
    assert (await recv(ended))["code"] == "session_expired"
    assert (await subscribe(ended, "prices.BTC_USDC"))["channels"] == ["prices.BTC_USDC"]  # the connection stays
    await ended.close()
    await still.close()


async def test_disabling_the_user_ends_every_feed_sign_in(feed):
    runtime = await feed()
    sessions = Sessions.for_server(runtime.ctx)
    user, bystander = new_user("disabled"), new_user("bystander")
    connections = [await signed_in_feed(runtime, (await sessions.issue(user))[0]) for _ in range(2)]
    bystander_ws = await signed_in_feed(runtime, (await sessions.issue(bystander))[0])
    await sessions.set_disabled(user.id, True)
    for ws in connections:
        assert (await recv_type(ws, "error"))["code"] == "account_disabled"
        await no_account_frame_before_pong(ws)
    runtime.hub.publish_account(bystander.id, b'{"type":"account","event":"snapshot"}')
    assert (await recv(bystander_ws))["event"] == "snapshot"
    token, _ = await sessions.issue(user)  # a token issued anyway is refused while disabled
    await connections[0].send(json.dumps({"op": "auth", "token": token}))
    assert (await recv(connections[0]))["code"] == "account_disabled"
    for ws in (*connections, bystander_ws):
        await ws.close()


async def test_the_feed_sign_in_ends_when_the_token_expires(feed):
    runtime = await feed()
    ctx = runtime.ctx
    short = Sessions(ctx.cache, ctx.settings.auth.jwt_secret, 2)  # `exp` is in whole seconds: 1-2 s from now
    user = new_user()
    token, _ = await short.issue(user)
    async with await signed_in_feed(runtime, token) as ws:
        frame = await recv_type(ws, "error", timeout=TIMEOUT + 2)
        assert frame["code"] == "session_expired"
        runtime.hub.publish_account(user.id, b'{"type":"account","event":"snapshot"}')
        await no_account_frame_before_pong(ws)
        assert not runtime.hub.connections_of(user.id)


async def test_signing_out_everywhere_but_here_keeps_this_sign_in_only(feed):
    runtime = await feed()
    sessions = Sessions.for_server(runtime.ctx)
    user = new_user()
    (kept_token, kept), (other_token, _) = await sessions.issue(user), await sessions.issue(user)
    kept_ws, other_ws = await signed_in_feed(runtime, kept_token), await signed_in_feed(runtime, other_token)
    await sessions.end_all(user.id, keep_jti=kept.jti)
    assert (await recv_type(other_ws, "error"))["code"] == "session_ended"
    runtime.hub.publish_account(user.id, b'{"type":"account","event":"snapshot"}')
    assert (await recv(kept_ws))["event"] == "snapshot"
    assert (await sessions.resolve(kept_token)).jti == kept.jti
    with pytest.raises(Unauthorized):
        await sessions.resolve(other_token)
    await no_account_frame_before_pong(other_ws)
    await kept_ws.close()
    await other_ws.close()


async def test_when_the_bus_cannot_carry_the_notice_a_logout_changes_nothing_and_a_disable_still_holds(settings):
    # A Kafka bus that never started answers every publish as during an outage (BackendDown, a 503).
    down = KafkaBus(msgspec.structs.replace(settings.bus, bootstrap="127.0.0.1:1"), settings.instance_id)
    cache = create_cache(settings.cache)
    try:
        sessions = Sessions(cache, settings.auth.jwt_secret, settings.auth.jwt_ttl_seconds,
                            SessionNotices(down, Topics(settings.bus).sessions))
        user = new_user()
        token, session = await sessions.issue(user)
        with pytest.raises(BackendDown):
            await sessions.revoke(session.jti)
        assert (await sessions.resolve(token)).jti == session.jti  # still signed in: the logout can be retried
        with pytest.raises(BackendDown):
            await sessions.set_disabled(user.id, True)
        with pytest.raises(Unauthorized) as refused:  # but the REST API refuses a disabled user at once
            await sessions.resolve(token)
        assert refused.value.code == "account_disabled"
    finally:
        await cache.close()


def _small_receive_socket(port: int) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.connect(("127.0.0.1", port))
    sock.setblocking(False)
    return sock


SLOW_LIMITS = dict(write_buffer_high=16 * 1024, socket_send_buffer=8 * 1024, drain_poll=0.01)


async def test_a_slow_client_gets_conflated_quotes_and_does_not_slow_a_fast_one(feed, bus, settings):
    runtime = await feed(Limits(stuck_after=30, **SLOW_LIMITS))
    fast = await open_client(runtime)
    slow = await open_client(runtime, sock=_small_receive_socket(runtime.ws_port), max_queue=1)
    await subscribe(fast, "prices.*")
    await subscribe(slow, "prices.*")
    count = 1500
    base = time.time_ns() // 1_000_000
    last: dict[str, PriceTick] = {}
    received_fast = 0
    for i in range(count):
        symbol = "SOL_USDC" if i % 2 else "BTC_USDC"
        price = Decimal(185 if i % 2 else 96500) + Decimal(i) / 100
        tick = _tick(symbol, str(price), str(price + 1), base + i)
        last[symbol] = tick
        await publish(bus, settings, tick)
        if i % 50 == 49:  # the fast client reads as it goes
            for _ in range(50):
                await recv(fast)
            received_fast += 50
    assert received_fast == count
    slow_outbox = next(c.outbox for c in runtime.hub.clients if c.outbox.slow_episodes)
    assert slow_outbox.conflated > 0
    # now the slow client reads: it gets fewer frames than were published, ending with the latest quotes
    frames: list[dict] = []
    latest: dict[str, dict] = {}
    while latest != {s: expected_frame(t) for s, t in last.items()}:
        frame = await recv(slow)
        frames.append(frame)
        latest[frame["symbol"]] = frame
    assert len(frames) < count
    await fast.close()
    await slow.close()


async def test_a_client_that_stays_stuck_is_closed_with_4008(feed, bus, settings):
    runtime = await feed(Limits(stuck_after=0.3, close_timeout=0.2, **SLOW_LIMITS))
    stuck = await open_client(runtime, sock=_small_receive_socket(runtime.ws_port), max_queue=1)
    await subscribe(stuck, "prices.*", "candles.1m.SOL_USDC")
    base = time.time_ns() // 1_000_000
    for i in range(1000):
        await publish(bus, settings, _tick("SOL_USDC", str(185 + i), str(186 + i), base + i))
        if i % 50 == 49:
            await asyncio.sleep(0.005)  # let the hub flush between bursts, as a live feed would
    await wait_until(lambda: runtime.hub.stats.closed_slow == 1)
    await wait_until(lambda: not runtime.hub.clients)
    with pytest.raises(ConnectionClosed):
        while True:
            await recv(stuck)


async def test_candle_frames_follow_ticks_across_a_minute_boundary(feed, bus, settings):
    runtime = await feed()
    minute = (time.time_ns() // 1_000_000 // 60_000 - 10) * 60_000  # ten minutes ago, on a boundary
    prices = [("185.00", minute + 10_000), ("185.50", minute + 20_000), ("184.50", minute + 30_000),
              ("185.20", minute + 59_999), ("186.00", minute + 60_000)]
    async with await open_client(runtime) as ws:
        await subscribe(ws, "candles.1m.SOL_USDC")
        mids = []
        for bid, ts in prices:
            tick = _tick("SOL_USDC", bid, bid, ts)
            mids.append(Decimal(expected_frame(tick)["mid"]))
            await publish(bus, settings, tick)
        frames = [await recv_type(ws, "candle") for _ in range(len(prices) + 1)]
    closed = [f for f in frames if f["closed"]]
    assert len(closed) == 1
    assert closed[0] == {"type": "candle", "symbol": "SOL_USDC", "interval": "1m", "t": minute,
                         "o": str(mids[0]), "h": str(max(mids[:4])), "l": str(min(mids[:4])), "c": str(mids[3]),
                         "n": 4, "closed": True}
    assert frames[-1] == {"type": "candle", "symbol": "SOL_USDC", "interval": "1m", "t": minute + 60_000,
                          "o": str(mids[4]), "h": str(mids[4]), "l": str(mids[4]), "c": str(mids[4]), "n": 1,
                          "closed": False}


async def test_unknown_paths_are_refused_and_the_port_is_exposed(feed):
    runtime = await feed()
    assert runtime.ws_port > 0
    with pytest.raises(Exception) as info:
        await connect(f"ws://127.0.0.1:{runtime.ws_port}/elsewhere")
    assert "404" in str(info.value)
