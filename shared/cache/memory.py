"""The in-process cache: a dict with expiry times, and a heap of those times swept by the clock.

An expired key is gone within about a second whether or not anything is written: every operation first
drops what has expired (the heap's head, so the cost is only what expired), and while the cache is used in
an event loop a timer does the same every `SWEEP_SECONDS`. Nothing needs a running loop: a cache made and
used outside one sweeps on each operation.

With a snapshot file (the local platform's, in its data directory), the keys that expire (sessions,
one-time codes, throttles) are written there on a clean stop and read back, once, on the next start, so
a restart keeps everyone signed in. The file is deleted as it is read: after a crash nothing comes back,
rather than sessions revoked since the last clean stop. Keys without expiry (the credentials directory)
are never written: the dbproc refills them from the database it runs on.
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import logging
import os
import time
from pathlib import Path

import msgspec

from shared.cache import Budget, Cache, Pace, Paced, Taken, gcra

log = logging.getLogger(__name__)

_Snapshot = list[tuple[str, bytes, float]]  # key, value, wall-clock expiry


class MemoryCache(Cache):
    name = "in-process"

    SWEEP_SECONDS = 0.5

    def __init__(self, clock=time.monotonic, *, snapshot: Path | None = None) -> None:
        self._clock = clock
        self._data: dict[str, tuple[bytes, float | None]] = {}
        self._expiries: list[tuple[float, str]] = []  # a heap; an entry whose key was re-set or deleted is stale
        self._timer: asyncio.TimerHandle | None = None
        self._timer_loop: asyncio.AbstractEventLoop | None = None
        self.snapshot = snapshot
        if snapshot is not None:
            self._restore(snapshot)

    def _restore(self, path: Path) -> None:
        try:
            entries = msgspec.msgpack.decode(path.read_bytes(), type=_Snapshot)
        except FileNotFoundError:
            return
        except (OSError, msgspec.DecodeError) as exc:
            log.warning("ignoring the cache snapshot %s: %s", path, exc)
            entries = []
        with contextlib.suppress(OSError):
            path.unlink()
        offset = self._clock() - time.time()
        for key, value, expires in entries:
            if expires > time.time():
                self._put(key, value, expires + offset)

    def _save(self, path: Path) -> None:
        offset = time.time() - self._clock()
        now = self._clock()
        entries = [(key, value, expires + offset) for key, (value, expires) in self._data.items()
                   if expires is not None and expires > now]
        path.parent.mkdir(parents=True, exist_ok=True)
        draft = path.with_name(f".{path.name}.{os.getpid()}")
        draft.touch(mode=0o600)
        draft.write_bytes(msgspec.msgpack.encode(entries))
        draft.replace(path)

    def _put(self, key: str, value: bytes, expires: float | None) -> None:
        previous = self._data.get(key)
        self._data[key] = (value, expires)
        if expires is not None and (previous is None or previous[1] != expires):
            heapq.heappush(self._expiries, (expires, key))
            if len(self._expiries) > 2 * len(self._data) + 1024:  # mostly stale: keys re-set with new expiries
                self._expiries = [(exp, k) for k, (_, exp) in self._data.items() if exp is not None]
                heapq.heapify(self._expiries)

    def _live(self, key: str) -> tuple[bytes, float | None] | None:
        self._sweep()
        return self._data.get(key)

    def _sweep(self) -> None:
        """Drop every key whose expiry has passed (the heap's head: the cost is what expired)."""
        self._keep_sweeping()
        expiries = self._expiries
        if not expiries:
            return
        now = self._clock()
        data = self._data
        while expiries and expiries[0][0] <= now:
            expires, key = heapq.heappop(expiries)
            item = data.get(key)
            if item is not None and item[1] == expires:
                del data[key]

    def _keep_sweeping(self) -> None:
        """Sweep every `SWEEP_SECONDS` in the running event loop, if there is one (started on first use)."""
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return
        if self._timer_loop is not loop:
            self._timer_loop = loop
            self._timer = loop.call_later(self.SWEEP_SECONDS, self._tick)

    def _tick(self) -> None:
        self._timer = None
        self._timer_loop = None
        self._sweep()  # and schedules the next tick

    def expiring(self) -> int:
        """How many keys with an expiry the cache holds now (for tests and diagnostics)."""
        return sum(1 for _, expires in self._data.values() if expires is not None)

    async def get(self, key: str) -> bytes | None:
        item = self._live(key)
        return item[0] if item else None

    async def set(self, key: str, value: bytes, ttl: float | None = None, *, only_if_absent: bool = False) -> bool:
        if only_if_absent and self._live(key) is not None:
            return False
        self._put(key, value, self._clock() + ttl if ttl else None)
        return True

    async def get_many(self, *keys: str) -> list[bytes | None]:
        return [item[0] if (item := self._live(key)) else None for key in keys]

    async def set_many(self, items: dict[str, bytes], *, only_if_absent: bool = False) -> int:
        self._sweep()
        stored = 0
        for key, value in items.items():
            if not (only_if_absent and self._live(key) is not None):
                self._data[key] = (value, None)
                stored += 1
        return stored

    async def getdel(self, key: str) -> bytes | None:
        item = self._live(key)
        if item is None:
            return None
        del self._data[key]
        return item[0]

    async def delete(self, *keys: str) -> int:
        return sum(self._data.pop(k, None) is not None for k in keys if self._live(k) is not None)

    async def incr(self, key: str, ttl: float) -> int:
        item = self._live(key)
        if item is None:
            self._put(key, b"1", self._clock() + ttl)
            return 1
        count = int(item[0]) + 1
        self._data[key] = (str(count).encode(), item[1])
        return count

    async def take(self, *budgets: Budget) -> Taken:
        # No await between reading and writing: on one event loop this is atomic.
        now = self._clock()
        items = [self._live(budget.key) for budget in budgets]
        counts = [int(item[0]) if item else 0 for item in items]
        resets = [max(0.0, item[1] - now) if item and item[1] is not None else 0.0 for item in items]
        if any(count >= budget.limit for count, budget in zip(counts, budgets, strict=True)):
            return Taken(False, tuple(counts), tuple(resets))
        for i, (budget, item) in enumerate(zip(budgets, items, strict=True)):
            counts[i] += 1
            if item is None or item[1] is None:  # this take opens the window
                item, resets[i] = (b"", now + budget.window), budget.window
            self._put(budget.key, str(counts[i]).encode(), item[1])
        return Taken(True, tuple(counts), tuple(resets))

    async def pace(self, pace: Pace) -> Paced:
        now = self._clock()
        item = self._live(pace.key)
        paced, tat = gcra(pace, float(item[0]) if item else 0.0, now)
        if tat is not None:
            self._put(pace.key, repr(tat).encode(), tat)
        return paced

    async def give_back(self, *keys: str) -> None:
        for key in keys:
            item = self._live(key)
            if item is not None and int(item[0]) > 0:
                self._data[key] = (str(int(item[0]) - 1).encode(), item[1])

    async def ttl(self, key: str) -> float | None:
        item = self._live(key)
        if item is None or item[1] is None:
            return None
        return max(0.0, item[1] - self._clock())

    async def ping(self) -> None:
        pass

    async def close(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = self._timer_loop = None
        if self.snapshot is not None and self._data:
            try:
                self._save(self.snapshot)
            except OSError as exc:
                log.warning("could not write the cache snapshot %s: %s", self.snapshot, exc)
        self._data.clear()
        self._expiries.clear()
