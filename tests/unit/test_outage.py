"""A repeated failure is logged once when it starts, as counts while it lasts, and once when it ends."""

from __future__ import annotations

import asyncio
import logging

import pytest

from shared.outage import Outage, RepeatFilter


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


def messages(caplog) -> list[tuple[str, str]]:
    return [(r.levelname, r.getMessage()) for r in caplog.records if r.name == "test.outage"]


def test_a_thousand_failures_over_25_s_make_four_lines(caplog, clock):
    caplog.set_level(logging.INFO, logger="test.outage")
    outage = Outage("publishing to prices fails", logging.getLogger("test.outage"), every=10, clock=clock)
    for n in range(1000):
        clock.now = 1000 + n * 0.025  # 40 a second for 25 s
        outage.failed(ConnectionError("Connect call failed"))
    clock.now = 1025.5
    outage.recovered()
    logged = messages(caplog)
    assert logged == [
        ("WARNING", "publishing to prices fails: ConnectionError: Connect call failed (repeats are counted and "
                    "summarised every 10 s until it stops)"),
        ("WARNING", "publishing to prices fails: 400 more in the last 10 s (401 since it started 10 s ago); "
                    "the last: ConnectionError: Connect call failed"),
        ("WARNING", "publishing to prices fails: 400 more in the last 10 s (801 since it started 20 s ago); "
                    "the last: ConnectionError: Connect call failed"),
        ("INFO", "publishing to prices fails: over after 25.5 s (1000 in all)"),
    ]
    outage.recovered()  # a success when nothing is failing says nothing
    assert len(messages(caplog)) == 4


def test_without_a_success_to_end_it_an_outage_is_over_after_a_quiet_period(caplog, clock):
    caplog.set_level(logging.INFO, logger="test.outage")
    outage = Outage("requests answered 503 backend_unavailable", logging.getLogger("test.outage"), every=10,
                    clock=clock)
    outage.failed("GET /api/v1/account: The bus is unavailable")
    clock.now += 3
    outage.failed("GET /api/v1/account: The bus is unavailable")
    clock.now += 30  # quiet, then a new failure: the first outage ended, a second one starts
    outage.failed("POST /api/v1/positions: The cache is unavailable")
    logged = messages(caplog)
    assert [level for level, _ in logged] == ["WARNING", "INFO", "WARNING"]
    assert logged[1][1] == "requests answered 503 backend_unavailable: none for 10 s; over after 3.0 s (2 in all)"
    assert logged[2][1].startswith("requests answered 503 backend_unavailable: POST /api/v1/positions")


async def test_the_end_is_logged_by_a_timer_when_failures_just_stop(caplog):
    caplog.set_level(logging.INFO, logger="test.outage")
    outage = Outage("risk commands cannot be published", logging.getLogger("test.outage"), every=0.05)
    outage.failed("bus down")
    outage.failed("bus down")
    await asyncio.sleep(0.2)
    logged = messages(caplog)
    assert [level for level, _ in logged] == ["WARNING", "INFO"], logged
    assert "none for 0.05 s; over after" in logged[1][1] and "(2 in all)" in logged[1][1]
    assert not outage.down


def test_a_library_retrying_ten_times_a_second_is_heard_once_per_period(caplog, clock):
    caplog.set_level(logging.INFO, logger="test.chatty")
    chatty = logging.getLogger("test.chatty")
    repeats = RepeatFilter(every=10, clock=clock)
    chatty.addFilter(repeats)
    try:
        for n in range(300):  # 30 s of retries
            clock.now = 1000 + n * 0.1
            chatty.error("Unable connect to node with id %s: %s", 1, "[Errno 111] Connect call failed")
            if n % 50 == 0:
                chatty.warning("Heartbeat failed for group %s", "cfd-dbproc")
    finally:
        chatty.removeFilter(repeats)
    logged = [r.getMessage() for r in caplog.records if r.name == "test.chatty"]
    unable = [m for m in logged if m.startswith("Unable connect")]
    assert len(unable) == 3  # at 0 s, 10 s and 20 s
    assert unable[0] == "Unable connect to node with id 1: [Errno 111] Connect call failed"
    assert unable[1].endswith("[and 99 more like it in the last 10 s]")
    assert len([m for m in logged if m.startswith("Heartbeat failed")]) == 3  # each kind on its own
