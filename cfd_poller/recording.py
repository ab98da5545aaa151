"""Recording: ticks from any source written as Backpack-format JSONL frames, the replay source's input."""

from __future__ import annotations

import asyncio
import contextlib
from collections import Counter
from collections.abc import AsyncGenerator, Callable
from typing import BinaryIO

from cfd_poller.frames import tick_frame
from shared.contracts.bus import PriceTick


async def record_ticks(ticks: AsyncGenerator[PriceTick, None], out: BinaryIO, *, count: int | None = None,
                       seconds: float | None = None, stop: asyncio.Event | None = None,
                       on_tick: Callable[[PriceTick, int], None] | None = None) -> int:
    """Write one frame per line to `out` until `count` frames, `seconds` elapsed or `stop` is set.

    Returns the number of frames written. `on_tick(tick, written)` is called after each line (for progress).
    """
    if count is not None and count <= 0:
        return 0
    written = 0
    update_ids: Counter[str] = Counter()
    stop = stop or asyncio.Event()

    async def write_all() -> None:
        nonlocal written
        async with contextlib.aclosing(ticks) as stream:
            async for tick in stream:
                update_ids[tick.symbol] += 1
                out.write(tick_frame(tick, update_ids[tick.symbol]) + b"\n")
                written += 1
                if on_tick is not None:
                    on_tick(tick, written)
                if stop.is_set() or (count is not None and written >= count):
                    return

    writer = asyncio.ensure_future(write_all())
    stopper = asyncio.ensure_future(stop.wait())
    try:
        await asyncio.wait([writer, stopper], timeout=seconds, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in (writer, stopper):
            task.cancel()
        await asyncio.gather(writer, stopper, return_exceptions=True)
        out.flush()
    if writer.done() and not writer.cancelled() and (error := writer.exception()) is not None:
        raise error
    return written
