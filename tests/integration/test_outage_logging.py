"""A bus outage is logged once when it starts, as counts while it lasts, and once when it ends, by every service.

Before, each failed call wrote its own line: in a 20-second Kafka outage the poller wrote 20,079 log lines (319
`Future exception was never retrieved`), each dbproc ~8,900 and each server ~6,300. The embedded test makes
the in-process bus fail; the real one stops a Kafka of its own (never the shared one) under a whole platform.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import os
import subprocess
import time
import uuid
from collections import Counter
from pathlib import Path

import httpx
import pytest
from helpers import REAL, Mailbox, free_port, real_only, sign_up, signed_in

from cfd_cli.platform import Platform
from shared import outage
from shared.bus import Topics

REPO = Path(__file__).resolve().parents[2]
START, SUMMARY, END = "(repeats are counted and summarised every", " more in the last ", " over after "


def classify(records: list[logging.LogRecord]) -> dict[str, list[str]]:
    """Outage lines by kind; `other` holds every warning or error that is not one (a line per failure)."""
    found: dict[str, list[str]] = {"start": [], "summary": [], "end": [], "other": []}
    for record in records:
        message = record.getMessage()
        if START in message:
            found["start"].append(message)
        elif SUMMARY in message and record.levelno == logging.WARNING:
            found["summary"].append(message)
        elif END in message and record.levelno == logging.INFO:
            found["end"].append(message)
        elif record.levelno >= logging.WARNING:
            found["other"].append(f"{record.name}: {message}")
    return found


async def _orders(api: httpx.AsyncClient, auth: dict, seconds: float, traders: int = 6) -> list[int]:
    """Open positions for `seconds` from `traders` concurrent loops (one user: the dbproc applies them one by
    one, so many loops queue behind each other)."""
    statuses: list[int] = []
    end = asyncio.get_running_loop().time() + seconds

    async def trader() -> None:
        while asyncio.get_running_loop().time() < end:
            response = await api.post("/positions", headers=auth, json={"symbol": "DOGE_USDC", "side": "long",
                                                                       "qty": "1"})
            statuses.append(response.status_code)

    await asyncio.gather(*(trader() for _ in range(traders)))
    return statuses


@pytest.mark.skipif(REAL, reason="makes the in-process bus fail; the real set stops a Kafka of its own")
async def test_an_in_process_bus_outage_is_logged_once_per_kind_with_counts(make_settings, tmp_path, monkeypatch,
                                                                           caplog):
    monkeypatch.setattr(outage, "SUMMARY_SECONDS", 1.0)
    monkeypatch.setattr(outage, "_outages", {})
    settings = make_settings(data_dir=tmp_path, database={"url": f"sqlite:///{tmp_path / 'cfd.sqlite3'}"},
                             bus={"request_timeout": 0.5}, prices={"sim_tick_hz": 40, "candle_history_hours": 0})
    # No candle history to hand over at start: storing a day of it kept the dbproc past the half-second timeout.
    platform = Platform(settings, ("dbproc", "server", "poller"), migrate_db=True)
    await platform.start()
    poller = platform.poller
    try:
        async with httpx.AsyncClient(base_url=platform.base_url + "/api/v1", timeout=10) as api:
            auth = await signed_in(api, Mailbox(outbox=tmp_path / "outbox"), "outage@example.com")
            for _ in range(100):  # the poller's first prices
                if platform.dbproc.quotes.fresh().get("DOGE_USDC"):
                    break
                await asyncio.sleep(0.05)
            # Healthy, one at a time: each answered within the short request timeout, whatever the machine's load.
            assert set(await _orders(api, auth, 0.2, traders=1)) == {201}
            caplog.set_level(logging.INFO)
            caplog.clear()
            topics = Topics(settings.bus)
            # Requests still reach the dbproc, but prices, replies and account events are lost: every service fails.
            platform.bus.fail("the broker is down", topics=[topics.prices, topics.replies, topics.events])
            statuses = await _orders(api, auth, 3.0)
            platform.bus.fail(None)
            await asyncio.sleep(2.5)  # quiet: every outage is over
            assert set(await _orders(api, auth, 0.2, traders=1)) == {201}
    finally:
        await platform.stop()

    assert statuses.count(504) >= 10, statuses  # requests applied, their replies lost
    assert poller.metrics.publish_failures >= 100  # ticks refused
    found = classify(caplog.records)
    assert found["other"] == [], found["other"]  # not one line per failure
    assert not [r for r in caplog.records if r.exc_info], "a traceback per failure"
    starts = Counter(message.split(": ")[0] for message in found["start"])
    kinds = set(starts)
    # Each kind of failure starts once (twice at most, on a machine so busy that failures paused for a second).
    assert len(kinds) >= 5 and max(starts.values()) <= 2, found["start"]
    assert any("requests answered 504 request_timeout" in k for k in kinds), kinds  # the server
    assert any("prices cannot be published" in k for k in kinds), kinds  # the poller
    assert any("replies cannot be published" in k for k in kinds), kinds  # the dbproc
    assert any("account events cannot be published" in k for k in kinds), kinds  # the dbproc's engine
    assert len(found["summary"]) <= len(kinds) * 5
    # and each one ended (an outage an earlier test started may end in this window too: its timer runs on)
    ends = Counter(message.split(": ")[0] for message in found["end"])
    assert Counter({kind: count for kind, count in ends.items() if kind in starts}) == starts


def _services(state: Path, kafka_port: int, controller_port: int, *command: str) -> None:
    env = {**os.environ, "CFD_SERVICES_DIR": str(state), "CFD_KAFKA_PORT": str(kafka_port),
           "CFD_KAFKA_CONTROLLER_PORT": str(controller_port), "NO_COLOR": "1"}
    done = subprocess.run([str(REPO / "scripts" / "services.sh"), *command, "kafka"], env=env, capture_output=True,
                          text=True, timeout=180, stdin=subprocess.DEVNULL)
    assert done.returncode == 0, done.stdout + done.stderr


@real_only
@pytest.mark.slow
async def test_a_kafka_outage_under_a_whole_platform_is_logged_once_per_kind(make_settings, mailbox, platform,
                                                                            tmp_path, monkeypatch, caplog):
    """A Kafka of this test's own (scripts/services.sh on free ports) is stopped for 10 s under a poller, a dbproc
    and a server taking orders; the database is the session's."""
    monkeypatch.setattr(outage, "SUMMARY_SECONDS", 3.0)
    monkeypatch.setattr(outage, "_outages", {})
    state, kafka_port, controller_port = tmp_path / "services", free_port(), free_port()
    _services(state, kafka_port, controller_port, "up")
    ours = None
    try:
        settings = make_settings(bus={"bootstrap": f"127.0.0.1:{kafka_port}",
                                      "topic_prefix": f"out{uuid.uuid4().hex[:6]}.", "request_timeout": 2.0},
                                 prices={"sim_tick_hz": 20}, auth={"jwt_secret": platform.settings.auth.jwt_secret})
        ours = Platform(settings, ("dbproc", "server", "poller"))
        await ours.start()
        async with httpx.AsyncClient(base_url=ours.base_url, timeout=30) as probe:
            for _ in range(120):  # a new Kafka needs a few seconds before its consumer groups work
                if (await probe.get("/ready")).status_code == 200:
                    break
                await asyncio.sleep(0.5)
        async with httpx.AsyncClient(base_url=ours.base_url + "/api/v1", timeout=30) as api:
            email = f"kafka-outage-{uuid.uuid4().hex[:8]}@example.com"
            auth = {"Authorization": f"Bearer {(await sign_up(api, mailbox, email))['access_token']}"}
            await asyncio.wait_for(ours.dbproc.joined.wait(), 30)
            caplog.set_level(logging.INFO)
            caplog.clear()
            _services(state, kafka_port, controller_port, "down")
            down_at = time.monotonic()
            statuses = await _orders(api, auth, 10.0)
            _services(state, kafka_port, controller_port, "up")
            outage_seconds = time.monotonic() - down_at
            for _ in range(120):  # until orders go through again
                if (await _orders(api, auth, 0.1)) and set(await _orders(api, auth, 0.5)) == {201}:
                    break
                await asyncio.sleep(0.5)
            await asyncio.sleep(4)  # quiet: every outage is over
    finally:
        if ours is not None:
            await ours.stop()
        _services(state, kafka_port, controller_port, "down")

    gc.collect()  # an exception nobody retrieved from a future is logged when the future is collected
    assert statuses and 201 not in statuses, statuses
    never_retrieved = [r for r in caplog.records if "never retrieved" in r.getMessage()]
    assert never_retrieved == []
    found = classify(caplog.records)
    warnings = [r for r in caplog.records if r.levelno >= logging.WARNING]
    # Each kind of failure: a start, a summary every 3 s; aiokafka: each kind of retry once per period.
    assert len(warnings) <= 100, (len(warnings), outage_seconds, found["other"][:40])
    kinds = {message.split(": ")[0] for message in found["start"]}
    assert any("prices cannot be published" in k or "price-updates" in k for k in kinds), kinds
    assert any("requests answered 50" in k for k in kinds), kinds
