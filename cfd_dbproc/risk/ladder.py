"""Crossing indexes: keys that fire once a price series reaches them, in O(log n) per key.

Each index is a binary heap ordered so that the key nearest to firing is on top: a tick pops exactly the
keys it reached and peeks at one more, so a tick that reaches nothing costs O(1) however many keys wait.
Removal is lazy: `PriceLadder.cancel` forgets the key's ticket in O(1); a heap item whose ticket is gone is
dropped when it surfaces, and the heaps are rebuilt without them once they outnumber the live keys
(amortised O(1)). Keys are Decimals and are compared exactly.

Heap items are tuples of a Decimal, an int and a str: the garbage collector stops tracking them, so a
book of 100,000 positions does not make every full collection walk its indexes.
"""

from __future__ import annotations

import heapq
from decimal import Decimal
from itertools import count
from typing import Literal

Series = Literal["bid", "ask", "spread"]
SERIES: tuple[Series, ...] = ("bid", "ask", "spread")

COMPACT_MIN = 256
"""Dead items a ladder tolerates before it considers a rebuild (it also needs more dead than live)."""

_tickets = count()  # unique per key: the heap tie-breaker and the key's identity


class CrossingIndex:
    """Keys that fire when the price reaches them: `rising` fires when price ≥ key, else when price ≤ key."""

    __slots__ = ("heap", "rising")

    def __init__(self, rising: bool) -> None:
        self.rising = rising
        self.heap: list[tuple[Decimal, int, str]] = []  # min-heap on the key, or on −key when falling

    def push(self, key: Decimal, ticket: int, ref: str) -> None:
        heapq.heappush(self.heap, (key if self.rising else key.copy_negate(), ticket, ref))  # exact, unlike -key

    def reached(self, price: Decimal, live: set[int]) -> tuple[list[str], int]:
        """Pop the keys `price` reaches: the refs of the live ones, and how many dead items went."""
        heap = self.heap
        fired: list[str] = []
        dead = 0
        if heap:
            bound = price if self.rising else price.copy_negate()
            while heap and heap[0][0] <= bound:
                _, ticket, ref = heapq.heappop(heap)
                if ticket in live:
                    live.remove(ticket)
                    fired.append(ref)
                else:
                    dead += 1
        return fired, dead


class PriceLadder:
    """One market's crossing indexes, on the bid, the ask and the spread (ask − bid), in both directions.

    `add` returns a ticket; `cancel(ticket)` withdraws that key. A key fires at most once."""

    __slots__ = ("_indexes", "_live", "_stale")

    def __init__(self) -> None:
        self._indexes: dict[tuple[Series, bool], CrossingIndex] = {
            (series, rising): CrossingIndex(rising) for series in SERIES for rising in (True, False)
        }
        self._live: set[int] = set()
        self._stale = 0

    def __len__(self) -> int:
        """Live keys."""
        return len(self._live)

    def add(self, series: Series, rising: bool, key: Decimal, ref: str) -> int:
        """Fire `ref` once `series` ≥ `key` (rising) or ≤ `key` (falling); O(log n)."""
        ticket = next(_tickets)
        self._indexes[series, rising].push(key, ticket, ref)
        self._live.add(ticket)
        return ticket

    def cancel(self, ticket: int) -> None:
        """Withdraw a key (O(1) amortised; a no-op once it fired or was cancelled)."""
        if ticket in self._live:
            self._live.remove(ticket)
            self._stale += 1
            if self._stale > COMPACT_MIN and self._stale > len(self._live):
                self._compact()

    def reached(self, bid: Decimal, ask: Decimal, spread: Decimal) -> list[str]:
        """Remove and return the refs of every live key this quote reaches (`spread` is ask − bid, exactly)."""
        prices = {"bid": bid, "ask": ask, "spread": spread}
        fired: list[str] = []
        for (series, _), index in self._indexes.items():
            if index.heap:
                refs, dead = index.reached(prices[series], self._live)
                fired += refs
                self._stale -= dead
        return fired

    def _compact(self) -> None:
        live = self._live
        for index in self._indexes.values():
            index.heap = [item for item in index.heap if item[1] in live]
            heapq.heapify(index.heap)
        self._stale = 0
