"""An access token's signature is checked once per server, but what makes a token invalid still holds on every
request: its expiry, a forged or altered token, and the session behind it ending."""

from __future__ import annotations

import asyncio
import time
import uuid

import pytest

from cfd_server.auth.tokens import Sessions
from shared.cache.memory import MemoryCache
from shared.contracts.rest import User
from shared.errors import Unauthorized

SECRET = "a-test-secret-of-enough-length-for-hs256"


def _user() -> User:
    return User(id=str(uuid.uuid4()), email="t@example.com", name="T", created_at=0)


async def _refused(sessions: Sessions, token: str) -> str:
    with pytest.raises(Unauthorized) as refused:
        await sessions.resolve(token)
    return refused.value.code


async def test_a_token_checked_before_is_refused_once_it_expires():
    sessions = Sessions(MemoryCache(), SECRET, ttl_seconds=1)  # `exp` in whole seconds: 0-1 s from now
    token, session = await sessions.issue(_user())
    assert (await sessions.resolve(token)).jti == session.jti
    await asyncio.sleep(max(0.0, session.expires_at - time.time()) + 0.05)
    # the session is still in the cache; only the token's expiry refuses it
    assert await _refused(sessions, token) == "session_expired"


async def test_an_altered_token_is_refused_though_the_genuine_one_was_checked():
    sessions = Sessions(MemoryCache(), SECRET, ttl_seconds=600)
    token, _ = await sessions.issue(_user())
    await sessions.resolve(token)
    header, payload, signature = token.split(".")
    forged = Sessions(MemoryCache(), "another-secret-of-enough-length-for-hs256", 600)
    other, _ = await forged.issue(_user())
    assert await _refused(sessions, f"{header}.{payload}.{signature[:-2]}AA") == "invalid_token"
    assert await _refused(sessions, other) == "invalid_token"
    assert await _refused(sessions, f"{header}.{other.split('.')[1]}.{signature}") == "invalid_token"


async def test_a_checked_token_whose_session_ended_is_refused():
    sessions = Sessions(MemoryCache(), SECRET, ttl_seconds=600)
    token, session = await sessions.issue(_user())
    await sessions.resolve(token)
    await sessions.revoke(session.jti)
    assert await _refused(sessions, token) == "session_expired"
