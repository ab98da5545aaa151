"""A short soak: `cfd up` on the embedded backends under steady load must not keep growing its memory.

The platform runs in a process of its own (`benchmarks/soak_load.py`, shared with `benchmarks/soak.py`):
ten REST traders opening, reading and closing positions as fast as they can, each with an `account`
subscription, and WebSocket clients on `prices.*` reconnecting all the time. After a warm-up the test
samples the process's RSS every few seconds. It fails when memory keeps climbing: the least-squares slope
over the second half of the samples is above `SLOPE_MB_PER_MIN` AND the last sample is more than
`RISE_MB` above the first one after the warm-up. Both must hold, so one step (an allocator arena, a cache
filling once) does not fail it, and neither does noise around a flat line.

This guards against a regression of memory held per message or per request; it asserts nothing about speed.
About two and a half minutes; on the embedded set only (the real set's processes hold no bus or cache).
"""

from __future__ import annotations

import asyncio
import sys
import tempfile
from pathlib import Path

import httpx
import pytest
from helpers import REAL, ROOT

sys.path.insert(0, str(ROOT / "benchmarks"))
from _support import Codes
from soak_load import PlatformProcess, Window, sign_up, slope, start_load

pytestmark = [pytest.mark.slow, pytest.mark.skipif(REAL, reason="the embedded backends' memory is measured")]

WARM_UP_S = 40
MEASURE_S = 90
SAMPLE_S = 5
TRADERS = 10
WS_CLIENTS = 40
CHURN_PER_S = 4
SLOPE_MB_PER_MIN = 4.0
RISE_MB = 12.0


async def test_memory_stays_flat_under_steady_load():
    data_dir = Path(tempfile.mkdtemp(prefix="cfd-soak-test-"))
    platform = PlatformProcess(real=False, data_dir=data_dir)
    await platform.start()
    stop = asyncio.Event()
    tasks: list[asyncio.Task] = []
    window, frames = Window(), [0]
    samples: list[tuple[float, float]] = []
    try:
        limits = httpx.Limits(max_connections=TRADERS + 8)
        async with httpx.AsyncClient(base_url=platform.api, timeout=30, limits=limits) as api:
            codes = Codes(outbox=data_dir / "outbox")
            accounts = [await sign_up(api, codes) for _ in range(TRADERS)]
            tasks = start_load(platform, api, accounts, window, frames, stop, rps=None, clients=WS_CLIENTS,
                               churn=CHURN_PER_S)
            await asyncio.sleep(WARM_UP_S)
            loop = asyncio.get_running_loop()
            started = loop.time()
            requests = 0
            while loop.time() - started < MEASURE_S:
                samples.append((loop.time() - started, platform.sample_process()["rss_mb"]))
                requests += window.take()["requests"]
                await asyncio.sleep(SAMPLE_S)
            samples.append((loop.time() - started, platform.sample_process()["rss_mb"]))
            requests += window.take()["requests"]
    finally:
        stop.set()
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await platform.stop()

    second_half = samples[len(samples) // 2:]
    per_minute = slope(second_half) * 60
    rise = samples[-1][1] - samples[0][1]
    figures = (f"RSS {samples[0][1]:.1f} → {samples[-1][1]:.1f} MB over {samples[-1][0]:.0f} s "
               f"({rise:+.1f} MB), second-half slope {per_minute:+.2f} MB/min, "
               f"{requests / samples[-1][0]:.0f} requests/s; samples: {[round(s[1], 1) for s in samples]}")
    print(figures)
    assert requests > 0, "no load reached the platform"
    assert not (per_minute > SLOPE_MB_PER_MIN and rise > RISE_MB), f"memory keeps climbing: {figures}"
