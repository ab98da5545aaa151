#!/usr/bin/env python3
"""Make the two recordings that ship in examples/recordings/, for replays and reproducible bot runs.

    .venv/bin/python scripts/make_recordings.py [--out examples/recordings]

Both are synthetic: the simulator's seeded random walk (`cfd_poller.sources.sim.RandomWalk`, the same maths as
`CFD_PRICE_SOURCE=sim`), every market in turn, 2 quotes a second each (2,000 frames, about 300 KB), written as
Backpack `bookTicker` frames exactly as `cfd prices record` writes them. No real market data is in them.

- `calm.jsonl`: 200 seconds of the walk as it is, quiet markets that a 2 % stop-loss never reaches;
- `crash.jsonl`: 200 seconds with a scripted crash laid over the walk, every market together (crypto falls as
  one): a calm first minute, a gap down of 5 % in one tick, a slide of another 8 % over fifteen seconds, a short
  squeeze (a gap up of 4 %), then a slower fall and a partial recovery. The gaps go straight through
  stop-losses, so a bot's stops fire (at the gap's price, not the stop's).

The same script always writes the same bytes (fixed seeds, a fixed start time: 2026-01-05 14:00 UTC).
"""

from __future__ import annotations

import argparse
import math
import random
import sys
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from cfd_poller.frames import book_ticker_frame, encode_frame  # noqa: E402
from cfd_poller.simulation import SIMULATION  # noqa: E402
from cfd_poller.sources.sim import RandomWalk, quantised_quote  # noqa: E402
from shared.markets import BPS, MARKETS  # noqa: E402

START = datetime(2026, 1, 5, 14, 0, tzinfo=UTC)
TICK_HZ = 2.0  # quotes per second per market
SECONDS = 200

Shape = Callable[[float], float]
"""Seconds since the start → the factor the walk's mid is multiplied by."""


def calm(_: float) -> float:
    return 1.0


def crash(t: float) -> float:
    """The crash, as a multiple of the walk: piecewise, with two gaps (a step in one tick)."""
    if t < 60:
        return 1.0
    if t < 75:  # gap down 5 %, then slide 8 % more over fifteen seconds
        return 0.95 * (1 - 0.08 * (t - 60) / 15)
    low = 0.95 * 0.92
    if t < 100:  # bottom, drifting
        return low
    if t < 130:  # a squeeze: a gap up of 4 %, then most of it given back
        return low * (1.04 - 0.03 * (t - 100) / 30)
    if t < 170:  # a second leg down, slower
        return low * 1.01 * (1 - 0.05 * (t - 130) / 40)
    return low * 1.01 * 0.95 * (1 + 0.03 * (t - 170) / 30)  # a partial recovery


def frames(shape: Shape, seed: str) -> list[bytes]:
    dt = 1 / TICK_HZ
    markets = [MARKETS[s] for s in MARKETS]
    walks = [RandomWalk(m, random.Random(f"{seed}:{m.symbol}"), dt) for m in markets]
    start_us = int(START.timestamp() * 1_000_000)
    step_us = int(1_000_000 / TICK_HZ / len(walks))
    out = []
    for i in range(int(SECONDS * TICK_HZ)):
        for j, walk in enumerate(walks):
            walk.step()
            event_us = start_us + (i * len(walks) + j) * step_us
            mid = walk.mid * shape((event_us - start_us) / 1e6)
            half = float(SIMULATION[walk.market.symbol].spread_bps / 2 / BPS)
            bid, ask = quantised_quote(walk.market, mid * (1 - half), mid * (1 + half))
            assert math.isfinite(mid) and bid < ask
            out.append(encode_frame(book_ticker_frame(walk.market.symbol, bid, ask, event_time_us=event_us,
                                                      update_id=i + 1)))
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=ROOT / "examples" / "recordings")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    for name, shape in (("calm", calm), ("crash", crash)):
        lines = frames(shape, seed=f"recording:{name}")
        path = args.out / f"{name}.jsonl"
        path.write_bytes(b"".join(line + b"\n" for line in lines))
        print(f"{path}: {len(lines)} frames, {path.stat().st_size / 1024:.0f} KiB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
