"""The credentials directory: every user's sign-in credentials, kept in the cache by the dbproc.

Sign-in needs the user's password hash before it can run bcrypt. Asking the dbproc costs a bus round trip
and a database read (about 5 ms on Kafka and PostgreSQL); reading the directory costs one cache read, made
together with the read of whether the client's address is familiar to that email.

The directory is used only whole. The dbproc loads every user into it and then sets its completeness mark;
the server trusts the directory only while the mark is there, and otherwise asks the dbproc. Which path a
sign-in takes therefore depends on the mark, never on the email: an unknown email and a registered one
cost the same either way, so timing tells nobody who has an account. Entries have no expiry; a flushed or
restarted cache loses the mark with them, and sign-in falls back to the dbproc until it has refilled the
directory. The cache must not evict keys that have no TTL (Redis: any `volatile-*` or `noeviction` policy).
"""

from __future__ import annotations

from collections.abc import Iterable

import msgspec

from shared.cache import Cache
from shared.contracts.bus import Credentials

_decoder = msgspec.json.Decoder(Credentials)


class CredentialsDirectory:
    """Reads (server) and writes (dbproc) the directory under this deployment's key prefix."""

    def __init__(self, cache: Cache, prefix: str = "") -> None:
        self.cache = cache
        self.prefix = f"{prefix}credentials:"
        self.complete_key = f"{prefix}credentials-complete"

    def key(self, email: str) -> str:
        return self.prefix + email

    async def lookup(self, email: str, *also: str) -> tuple[Credentials | None, list[bytes | None]]:
        """The credentials of `email` (an empty `Credentials` when unknown), or None while the directory is
        incomplete; plus the values of the keys in `also`, read in the same round trip."""
        complete, entry, *others = await self.cache.get_many(self.complete_key, self.key(email), *also)
        if complete is None:
            return None, others
        return (Credentials() if entry is None else _decoder.decode(entry)), others

    async def put(self, credentials: Credentials) -> None:
        """Record a user's current credentials (after every change the dbproc commits)."""
        assert credentials.user is not None
        await self.cache.set(self.key(credentials.user.email), msgspec.json.encode(credentials))

    async def fill(self, entries: Iterable[Credentials]) -> int:
        """Add the users not in the directory yet; never overwrites an entry (a newer `put` may have made it)."""
        items = {self.key(c.user.email): msgspec.json.encode(c) for c in entries if c.user is not None}
        return await self.cache.set_many(items, only_if_absent=True)

    async def is_complete(self) -> bool:
        return (await self.cache.get(self.complete_key)) is not None

    async def mark_complete(self) -> None:
        await self.cache.set(self.complete_key, b"1")
