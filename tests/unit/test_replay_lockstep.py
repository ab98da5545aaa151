"""The pieces of a reproducible run: seeded ids, a lockstep replay that moves only when stepped, and the marks a
step waits on."""

from __future__ import annotations

import asyncio
import uuid
from decimal import Decimal
from pathlib import Path

import pytest

from cfd_poller.frames import book_ticker_frame, encode_frame
from cfd_poller.metrics import PollerMetrics
from cfd_poller.sources import create_source
from cfd_poller.sources.replay import LockstepReplay
from cfd_server.market.replay import check_lockstep
from shared.errors import Conflict, NotFound, SettingsError
from shared.ids import Ids
from shared.settings import load_settings
from shared.watermarks import Watermarks

E0 = 1_767_621_600_000_000  # a recorded event time, in microseconds


def frame(symbol: str, bid: str, ask: str, after_ms: int) -> bytes:
    return encode_frame(book_ticker_frame(symbol, bid, ask, event_time_us=E0 + after_ms * 1000))


def recording(path: Path, *lines: bytes | str) -> Path:
    path.write_bytes(b"".join((line.encode() if isinstance(line, str) else line) + b"\n" for line in lines))
    return path


# --- ids ---------------------------------------------------------------------------------------------------


def test_a_seed_deals_the_same_ids_every_time_and_another_seed_others():
    first, again, other = Ids(7), Ids(7), Ids(8)
    dealt = [first() for _ in range(100)]
    assert dealt == [again() for _ in range(100)]
    assert not set(dealt) & {other() for _ in range(100)}
    assert len(set(dealt)) == 100
    assert all(uuid.UUID(i).version == 4 for i in dealt)  # still what the wire and the database expect


def test_without_a_seed_ids_are_random():
    assert Ids()() != Ids()()
    assert not Ids().seeded and Ids(0).seeded


# --- the lockstep source -----------------------------------------------------------------------------------


async def test_a_lockstep_replay_plays_nothing_until_stepped_then_the_next_ticks_in_order(tmp_path):
    path = recording(tmp_path / "r.jsonl", frame("SOL_USDC", "100.00", "100.02", 0), "not json", "",
                     frame("BTC_USDC", "96500.1", "96500.6", 50), frame("SOL_USDC", "100.10", "100.12", 250))
    clock = iter(range(5_000_000, 6_000_000, 7))
    replay = LockstepReplay(path, clock_us=lambda: next(clock))
    assert replay.played == 0
    first = await replay.next_ticks(2)
    assert [(t.symbol, t.bid) for t in first] == [("SOL_USDC", Decimal("100.00")), ("BTC_USDC", Decimal("96500.1"))]
    assert await replay.next_ticks(2) == first  # nothing published yet: the same two again
    replay.published()
    replay.published()
    (last,) = await replay.next_ticks(5)
    # the first tick happens when played; the others keep the recording's spacing
    assert first[1].exchange_time_us - first[0].exchange_time_us == 50_000
    assert last.exchange_time_us - first[0].exchange_time_us == 250_000
    assert not await replay.ended()
    replay.published()
    assert await replay.ended() and await replay.next_ticks(1) == []
    assert replay.played == 3 and replay.metrics.invalid_total == 1


async def test_a_markets_ticks_only_move_forward_whatever_the_file_says(tmp_path):
    path = recording(tmp_path / "r.jsonl", frame("SOL_USDC", "100.00", "100.02", 100),
                     frame("SOL_USDC", "100.01", "100.03", 100), frame("SOL_USDC", "100.02", "100.04", 50))
    replay = LockstepReplay(path)
    ticks = await replay.next_ticks(3)
    times = [t.exchange_time_us for t in ticks]
    assert times[0] < times[1] < times[2]  # otherwise the quotes would refuse the later ones as redeliveries


async def test_read_as_a_stream_a_lockstep_replay_plays_straight_through(tmp_path):
    path = recording(tmp_path / "r.jsonl", *(frame("SOL_USDC", "100.00", f"100.{i:02d}", i) for i in range(1, 30)))
    replay = LockstepReplay(path)
    assert len([tick async for tick in replay.ticks()]) == 29 and await replay.ended()


def test_lockstep_settings_choose_the_lockstep_source_and_need_a_replay(tmp_path):
    path = recording(tmp_path / "r.jsonl", frame("SOL_USDC", "100.00", "100.02", 0))
    settings = load_settings({}, prices={"source": "replay", "replay_file": path, "replay_lockstep": True})
    assert isinstance(create_source(settings.prices, PollerMetrics()), LockstepReplay)
    assert settings.prices.quotes_stale_after == float("inf")  # a paused replay is not a quiet feed
    with pytest.raises(SettingsError, match="CFD_REPLAY_LOCKSTEP needs CFD_PRICE_SOURCE=replay"):
        load_settings({"CFD_REPLAY_LOCKSTEP": "true"})


def test_a_step_is_refused_unless_a_lockstep_replay_runs(tmp_path):
    path = recording(tmp_path / "r.jsonl", frame("SOL_USDC", "100.00", "100.02", 0))
    with pytest.raises(NotFound) as none:
        check_lockstep(load_settings({}))
    assert none.value.code == "replay_not_running"
    with pytest.raises(Conflict) as timed:
        check_lockstep(load_settings({}, prices={"source": "replay", "replay_file": path}))
    assert timed.value.code == "replay_not_lockstep"
    check_lockstep(load_settings({}, prices={"source": "replay", "replay_file": path, "replay_lockstep": True}))


# --- watermarks --------------------------------------------------------------------------------------------


async def test_a_wait_returns_once_every_mark_is_reached_and_times_out_otherwise():
    marks = Watermarks()
    waiting = asyncio.ensure_future(marks.wait({"SOL_USDC": 10, "BTC_USDC": 5}, timeout=2))
    marks.advance("SOL_USDC", 12)
    await asyncio.sleep(0.01)
    assert not waiting.done()
    marks.advance("BTC_USDC", 4)
    marks.advance("BTC_USDC", 5)
    await asyncio.wait_for(waiting, 1)
    marks.advance("SOL_USDC", 3)  # an older value changes nothing
    assert marks.get("SOL_USDC") == 12
    await marks.wait({}, timeout=0.01)
    with pytest.raises(TimeoutError):
        await marks.wait({"ETH_USDC": 1}, timeout=0.05)
