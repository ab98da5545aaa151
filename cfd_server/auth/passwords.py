"""bcrypt hashing and checking, run in a worker thread so the event loop keeps serving."""

from __future__ import annotations

import asyncio

import bcrypt


def _prehash(password: str) -> bytes:
    # bcrypt reads at most 72 bytes; 128 characters of UTF-8 can be longer, so longer inputs are
    # reduced with SHA-256 (base64) first rather than silently truncated.
    raw = password.encode()
    if len(raw) <= 72:
        return raw
    import base64
    import hashlib

    return base64.b64encode(hashlib.sha256(raw).digest())


async def hash_password(password: str, rounds: int) -> str:
    salt = bcrypt.gensalt(rounds)
    hashed = await asyncio.to_thread(bcrypt.hashpw, _prehash(password), salt)
    return hashed.decode()


async def check_password(password: str, hashed: str) -> bool:
    try:
        return await asyncio.to_thread(bcrypt.checkpw, _prehash(password), hashed.encode())
    except ValueError:
        return False


class DummyHash:
    """A hash of the configured cost, checked for unknown emails so they answer in the same time."""

    def __init__(self, rounds: int) -> None:
        self.value = bcrypt.hashpw(b"no-such-user-password", bcrypt.gensalt(rounds)).decode()
