"""Password hashes: bcrypt over a domain-separated pre-hash, run in a worker thread so the event loop keeps
serving.

Version 2, stored as `v2:` followed by the bcrypt string: every password is first reduced to
base64(HMAC-SHA256(domain key, password)), 44 bytes, within bcrypt's 72. Long passwords are not truncated,
and no other input stands in for a password: in particular not its plain SHA-256, which another site may
have leaked. The key is fixed and public on purpose: it separates this use of SHA-256 from every other
one; it is not a secret, so rotating the server's secrets never breaks a password.

Version 1, a bare bcrypt string (hashes made before version 2): the password itself, or base64(SHA-256)
of it when longer than 72 bytes. Still checked, and replaced by a version 2 hash at the next sign-in
(`needs_rehash`).
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
import hmac

import bcrypt

HASH_PREFIX = "v2:"
_DOMAIN_KEY = b"cfd-broker password hash v2"


def _prehash(password: str) -> bytes:
    return base64.b64encode(hmac.new(_DOMAIN_KEY, password.encode(), hashlib.sha256).digest())


def _v1_prehash(password: str) -> bytes:
    raw = password.encode()
    return raw if len(raw) <= 72 else base64.b64encode(hashlib.sha256(raw).digest())


def _parse(hashed: str) -> tuple[int, bytes]:
    """The version of a stored hash and its bcrypt string."""
    if hashed.startswith(HASH_PREFIX):
        return 2, hashed.removeprefix(HASH_PREFIX).encode()
    return 1, hashed.encode()


async def hash_password(password: str, rounds: int) -> str:
    """A version 2 hash of `password` at bcrypt cost `rounds`."""
    salt = bcrypt.gensalt(rounds)
    hashed = await asyncio.to_thread(bcrypt.hashpw, _prehash(password), salt)
    return HASH_PREFIX + hashed.decode()


async def check_password(password: str, hashed: str) -> bool:
    """Whether `password` matches a stored hash of either version."""
    version, stored = _parse(hashed)
    prehashed = _prehash(password) if version == 2 else _v1_prehash(password)
    try:
        return await asyncio.to_thread(bcrypt.checkpw, prehashed, stored)
    except ValueError:
        return False


def _looks_like_a_v1_prehash(password: str) -> bool:
    # 44 characters of standard base64 for 32 bytes: what version 1 made of a password over 72 bytes
    if len(password) != 44:
        return False
    try:
        return len(base64.b64decode(password, validate=True)) == 32
    except (binascii.Error, ValueError):
        return False


def needs_rehash(password: str, hashed: str, rounds: int) -> bool:
    """Whether a stored hash that `password` has just matched should be replaced by a fresh version 2 hash:
    it is version 1, or its bcrypt cost is not `rounds`.

    A version 1 hash is not replaced when the password that matched it looks like base64(SHA-256): that
    input also matches the version 1 hash of any password over 72 bytes with that SHA-256, so the account
    keeps its hash (and its owner's real password) until signed in to with a password that settles it."""
    version, stored = _parse(hashed)
    if version == 1:
        return not _looks_like_a_v1_prehash(password)
    try:
        cost = int(stored.split(b"$")[2])
    except (IndexError, ValueError):
        return True
    return cost != rounds


class DummyHash:
    """A version 2 hash of the configured cost, checked for unknown emails so they answer in the same time."""

    def __init__(self, rounds: int) -> None:
        self.value = HASH_PREFIX + bcrypt.hashpw(_prehash("no-such-user-password"), bcrypt.gensalt(rounds)).decode()
