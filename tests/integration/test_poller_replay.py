"""Replay of recorded Backpack frames, and recording then replaying a feed."""

from __future__ import annotations

import asyncio
import time
from decimal import Decimal
from pathlib import Path

import msgspec
import pytest
from helpers import start_poller_of

from cfd_poller.frames import book_ticker_frame, encode_frame
from cfd_poller.metrics import PollerMetrics
from cfd_poller.recording import record_ticks
from cfd_poller.sources.replay import ReplaySource
from cfd_poller.sources.sim import SimSource
from shared import operations as ops
from shared.bus import Message, Topics
from shared.bus.memory import MemoryBus
from shared.bus.rpc import RequestClient, envelope
from shared.contracts.bus import BusRequest, PriceTick, ReplayStepCommand
from shared.errors import Conflict, SettingsError
from shared.markets import MARKETS
from shared.settings import load_settings

E0 = 1_732_000_000_000_000  # a recorded event time, in microseconds


def write_jsonl(path: Path, lines: list[bytes | str]) -> Path:
    path.write_bytes(b"".join((line.encode() if isinstance(line, str) else line) + b"\n" for line in lines))
    return path


def recorded(symbol: str, bid: str, ask: str, after_ms: int, *, as_string: bool = False) -> bytes:
    event = E0 + after_ms * 1000
    frame = book_ticker_frame(symbol, bid, ask, event_time_us=event, bid_qty="1", ask_qty="2")
    if as_string:
        frame["data"]["E"] = str(event)
        frame["data"]["T"] = str(event)
    return encode_frame(frame)


async def collect(source: ReplaySource) -> list[PriceTick]:
    return [tick async for tick in source.ticks()]


async def test_replay_publishes_the_files_prices_in_order_at_the_recorded_pace(tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "feed.jsonl", [
        recorded("SOL_USDC", "185.05", "185.10", 0),
        "this line is not json",
        "",
        recorded("BTC_USDC", "96500.1", "96500.6", 100, as_string=True),
        recorded("SOL_USDC", "185.20", "185.10", 150),  # crossed: skipped
        recorded("SOL_USDC", "185.07", "185.12", 200),
    ])
    settings = load_settings({}, prices={"source": "replay", "replay_file": path, "replay_speed": 2.0})
    bus = MemoryBus()
    messages: asyncio.Queue[Message] = asyncio.Queue()

    async def handler(message: Message) -> None:
        await messages.put(message)

    subscription = await bus.subscribe([Topics(settings.bus).prices], handler, group=None)
    started = time.monotonic()
    poller = await start_poller_of(settings, bus)
    try:
        await asyncio.wait_for(poller.wait_finished(), 3)
        elapsed = time.monotonic() - started
    finally:
        await poller.stop()
        await subscription.stop()

    ticks = []
    while not messages.empty():
        ticks.append(msgspec.json.decode((await messages.get()).value, type=PriceTick))
    assert [(t.symbol, t.bid, t.ask) for t in ticks] == [
        ("SOL_USDC", Decimal("185.05"), Decimal("185.10")),
        ("BTC_USDC", Decimal("96500.1"), Decimal("96500.6")),
        ("SOL_USDC", Decimal("185.07"), Decimal("185.12")),
    ]
    assert 0.09 <= elapsed < 2  # 200 ms of recording at speed 2
    # times are shifted to now, keeping the recorded spacing (scaled by the speed)
    assert abs(ticks[0].exchange_time_us - time.time_ns() // 1000) < 5_000_000
    assert ticks[2].exchange_time_us - ticks[0].exchange_time_us == 100_000
    assert poller.metrics.invalid_frames == {"malformed": 1, "crossed": 1}
    assert poller.metrics.ticks_published == 3
    assert not poller.running


async def test_a_missing_replay_file_stops_start_up_with_a_clear_error(tmp_path: Path) -> None:
    settings = load_settings({}, prices={"source": "replay", "replay_file": tmp_path / "nope.jsonl"})
    with pytest.raises(SettingsError, match=r"nope\.jsonl is not a readable file"):
        await start_poller_of(settings, MemoryBus())


async def test_recording_then_replaying_gives_back_the_same_prices(tmp_path: Path) -> None:
    path = tmp_path / "recorded.jsonl"
    markets = [MARKETS["BTC_USDC"], MARKETS["DOGE_USDC"], MARKETS["ETH_USDC"]]
    live: list[PriceTick] = []
    with path.open("wb") as out:
        written = await record_ticks(SimSource(markets, tick_hz=500, seed=11).ticks(), out, count=30,
                                     on_tick=lambda tick, _: live.append(tick))
    assert written == 30 and len(path.read_bytes().splitlines()) == 30

    metrics = PollerMetrics()
    replayed = await asyncio.wait_for(collect(ReplaySource(path, metrics=metrics, speed=1000)), 3)
    assert [(t.symbol, t.bid, t.ask) for t in replayed] == [(t.symbol, t.bid, t.ask) for t in live]
    assert [str(t.bid) for t in replayed] == [str(t.bid) for t in live]  # digits too, e.g. DOGE's 0.31990
    assert metrics.invalid_total == 0


async def test_recording_stops_after_the_given_time(tmp_path: Path) -> None:
    path = tmp_path / "timed.jsonl"
    with path.open("wb") as out:
        started = time.monotonic()
        written = await record_ticks(SimSource(list(MARKETS.values()), tick_hz=100, seed=1).ticks(), out,
                                     seconds=0.2)
    assert 0.19 <= time.monotonic() - started < 1.0
    assert 20 <= written <= 150  # about 500 ticks per second of five markets
    assert len(path.read_bytes().splitlines()) == written


async def test_a_stop_request_ends_recording(tmp_path: Path) -> None:
    stop = asyncio.Event()
    path = tmp_path / "stopped.jsonl"

    def stop_after_five(_tick: PriceTick, written: int) -> None:
        if written == 5:
            stop.set()

    with path.open("wb") as out:
        written = await asyncio.wait_for(
            record_ticks(SimSource([MARKETS["SOL_USDC"]], tick_hz=1000).ticks(), out, stop=stop,
                         on_tick=stop_after_five), 3)
    assert written == 5
    assert len(path.read_bytes().splitlines()) == written


async def test_replay_of_an_empty_file_ends_quietly(tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "empty.jsonl", [])
    source = ReplaySource(path, speed=1)
    assert await asyncio.wait_for(collect(source), 1) == []



async def test_a_lockstep_replay_plays_only_when_stepped_and_ignores_a_step_its_server_gave_up_on(
        tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "feed.jsonl", [recorded("SOL_USDC", "185.05", f"185.{10 + i}", i * 100)
                                                 for i in range(5)])
    settings = load_settings({}, prices={"source": "replay", "replay_file": path, "replay_lockstep": True})
    topics = Topics(settings.bus)
    bus = MemoryBus()
    await bus.start()
    await bus.ensure_topics(topics.all())
    published: list[Message] = []

    async def seen(message: Message) -> None:
        published.append(message)

    prices = await bus.subscribe([topics.prices], seen, group=None)
    # a step a server sent, and gave up on, while no poller ran: still on the topic when the poller starts
    stale = envelope(ops.REPLAY_STEP, ReplayStepCommand(count=3), command_id="old", correlation_id="old",
                     reply_to="gone")
    old = msgspec.json.decode(stale, type=BusRequest)
    old.sent_at_ms -= 60_000
    await bus.publish(topics.replay_requests, msgspec.json.encode(old), key=b"replay")
    poller = await start_poller_of(settings, bus)
    client = RequestClient(bus, topics.routes(), topics.replies, "server", timeout=5)
    await client.start()
    try:
        await asyncio.sleep(0.2)
        assert published == [] and poller.running  # nothing plays by itself, nor for the stale step
        first = await client.call(ops.REPLAY_STEP, ReplayStepCommand(count=2), key="replay", command_id="a")
        assert [t.ask for t in first.ticks] == [Decimal("185.10"), Decimal("185.11")]
        assert (first.played, first.ended) == (2, False)
        assert await client.call(ops.REPLAY_STEP, ReplayStepCommand(count=2), key="replay", command_id="a") == first
        rest = await client.call(ops.REPLAY_STEP, ReplayStepCommand(count=10), key="replay", command_id="b")
        assert (len(rest.ticks), rest.played, rest.ended) == (3, 5, True)
        with pytest.raises(Conflict, match="has ended"):
            await client.call(ops.REPLAY_STEP, ReplayStepCommand(count=1), key="replay", command_id="c")
        await asyncio.sleep(0.05)
        assert len(published) == 5 and not poller.running
    finally:
        await client.stop()
        await poller.stop()
        await prices.stop()
        await bus.stop()
