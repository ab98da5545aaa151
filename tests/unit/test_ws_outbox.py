"""The per-client outbox: lossless while the client keeps up, conflated when it does not, bounded always."""

from __future__ import annotations

import asyncio

from cfd_server.ws.limits import Limits
from cfd_server.ws.outbox import Outbox


class FakeTransport:
    """Records writes; `buffered` plays the bytes the kernel did not take yet."""

    def __init__(self) -> None:
        self.writes: list[bytes] = []
        self.buffered = 0
        self.closing = False

    def write(self, data: bytes) -> None:
        self.writes.append(data)

    def get_write_buffer_size(self) -> int:
        return self.buffered

    def is_closing(self) -> bool:
        return self.closing


class Harness:
    def __init__(self, **limits) -> None:
        self.transport = FakeTransport()
        self.scheduled: list[Outbox] = []
        self.stuck: list[str] = []
        self.limits = Limits(write_buffer_high=1000, drain_poll=0.001, **limits)
        self.outbox = Outbox(self.transport, self.limits, schedule=self.scheduled.append,  # type: ignore[arg-type]
                             on_stuck=self.stuck.append)

    def flush(self) -> None:
        scheduled = list(self.scheduled)
        self.scheduled.clear()
        for outbox in scheduled:
            outbox.flush()


def test_the_first_frame_of_an_iteration_is_written_at_once_and_a_burst_is_coalesced():
    h = Harness()
    h.outbox.put_now("SOL", b"0")
    assert h.transport.writes == [b"0"] and h.scheduled == []
    h.outbox.put("SOL", b"1")
    h.outbox.put("SOL", b"2")
    h.outbox.put("BTC", b"3")
    assert h.scheduled == [h.outbox]  # scheduled once, not per frame
    h.flush()
    h.outbox.put(None, b"4")
    h.flush()
    h.outbox.put(None, b"5")
    h.outbox.put_now("SOL", b"6")  # something is queued: it waits its turn
    h.flush()
    assert h.transport.writes == [b"0", b"123", b"4", b"56"]
    assert h.outbox.sent == 7 and h.outbox.conflated == 0


async def test_a_slow_client_gets_the_latest_frame_per_key_and_every_keyless_one():
    h = Harness()
    h.transport.buffered = 5000  # the kernel stopped taking data: the client is not reading
    h.outbox.put("SOL", b"s1")
    h.flush()
    assert h.outbox.slow and h.transport.writes == []
    for key, frame in (("SOL", b"s2"), ("BTC", b"b1"), ("SOL", b"s3"), ("BTC", b"b2")):
        h.outbox.put(key, frame)
    h.outbox.put(None, b"reply1")
    h.outbox.put(None, b"reply2")
    assert h.scheduled == []  # while slow nothing is scheduled; the drainer owns the client
    assert h.outbox.conflated == 3
    h.transport.buffered = 400  # the client read: below half the limit
    await asyncio.sleep(0.02)
    assert not h.outbox.slow
    assert h.transport.writes == [b"s3b2reply1reply2"]  # latest SOL, latest BTC, both replies, in time order
    h.outbox.put("SOL", b"s4")
    h.flush()
    assert h.transport.writes[-1] == b"s4"  # fast again


async def test_a_client_whose_buffer_never_drains_is_reported_stuck():
    h = Harness(stuck_after=0.02)
    h.transport.buffered = 5000
    h.outbox.put("SOL", b"1")
    h.flush()
    await asyncio.sleep(0.1)
    assert h.stuck and "write buffer full" in h.stuck[0]
    assert h.outbox.done
    h.outbox.put("SOL", b"2")
    h.flush()
    assert h.transport.writes == []


async def test_the_backlog_is_bounded_even_for_frames_that_cannot_be_conflated():
    h = Harness(max_backlog=10, stuck_after=60)
    h.transport.buffered = 5000
    h.outbox.put(None, b"x")
    h.flush()
    for i in range(8):
        h.outbox.put(None, b"%d" % i)
    assert not h.stuck
    for _ in range(1000):
        h.outbox.put("SOL", b"p")  # conflated: one entry however many arrive
    assert not h.stuck
    h.outbox.put(None, b"one too many")
    assert h.stuck and "more than 10 frames" in h.stuck[0]


def test_nothing_is_written_once_the_connection_is_closing():
    h = Harness()
    h.outbox.put("SOL", b"1")
    h.outbox.close()  # the connection wrote its close frame
    h.flush()
    h.outbox.put_now("SOL", b"2")
    h.outbox.put("SOL", b"3")
    h.flush()
    assert h.transport.writes == []
