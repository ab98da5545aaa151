"""The ids the engine gives what it makes: users, accounts, positions (and the closed parts of partial closes),
orders, alerts, ledger entries, audit rows.

Normally each is a random UUID (version 4). In a seeded sandbox (`cfd up --replay FILE --seed N`, or
`cfd_cli.sandbox.sandbox(..., seed=N)`) they come from a generator seeded with N: still version-4 UUIDs, but the
same sequence every run, so the same commands applied in the same order get the same ids, and two runs of a bot
book ledgers with the same references. What the seed does not fix: wall-clock times, and the order in which
commands of different users interleave (each user's commands are applied in order, but two users trading at once
may take their ids in another order). Secrets (API keys, one-time codes, tokens) never come from here.

A seeded generator is only sound with one dbproc on an empty database: two dbprocs with one seed, or a database
holding the ids of an earlier run, would deal the same ids twice. `cfd_cli.platform.Platform` checks the latter.
"""

from __future__ import annotations

import random
import uuid


class Ids:
    """Makes ids: random ones, or with `seed` the same sequence every time."""

    def __init__(self, seed: int | None = None) -> None:
        self.seed = seed
        self._random = random.Random(f"cfd-ids:{seed}") if seed is not None else None

    @property
    def seeded(self) -> bool:
        return self._random is not None

    def uuid(self) -> uuid.UUID:
        """The next id as a version-4 UUID."""
        if self._random is None:
            return uuid.uuid4()
        return uuid.UUID(int=self._random.getrandbits(128), version=4)

    def __call__(self) -> str:
        """The next id as the string the wire carries."""
        return str(self.uuid())
