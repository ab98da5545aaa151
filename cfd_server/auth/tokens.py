"""JWT access tokens whose sessions live in the cache by `jti`, so logout really ends them."""

from __future__ import annotations

import time
import uuid

import jwt
import msgspec

from shared.cache import Cache
from shared.contracts import User, encode
from shared.errors import Unauthorized

ALGORITHM = "HS256"
SESSION_PREFIX = "session:"
GATE_PREFIX = "user-gate:"  # "disabled", or the time (ms) before which the user's sessions no longer count


class Session(msgspec.Struct, kw_only=True):
    jti: str
    user: User
    expires_at: int
    issued_ms: int = 0


class Sessions:
    def __init__(self, cache: Cache, secret: str, ttl_seconds: int) -> None:
        self.cache = cache
        self.secret = secret
        self.ttl = ttl_seconds
        self._decoder = msgspec.json.Decoder(Session)

    async def issue(self, user: User) -> tuple[str, Session]:
        now = int(time.time())
        jti = uuid.uuid4().hex
        session = Session(jti=jti, user=user, expires_at=now + self.ttl, issued_ms=time.time_ns() // 1_000_000)
        token = jwt.encode({"sub": user.id, "jti": jti, "iat": now, "exp": now + self.ttl}, self.secret,
                           algorithm=ALGORITHM)
        await self.cache.set(SESSION_PREFIX + jti, encode(session), ttl=self.ttl)
        return token, session

    def _claims(self, token: str) -> dict:
        try:
            return jwt.decode(token, self.secret, algorithms=[ALGORITHM], options={"require": ["exp", "jti", "sub"]})
        except jwt.ExpiredSignatureError:
            raise Unauthorized("Your session has expired; please sign in again.", code="session_expired") from None
        except jwt.PyJWTError:
            raise Unauthorized("The access token is not valid; please sign in.", code="invalid_token") from None

    async def resolve(self, token: str) -> Session:
        """The live session behind `token`, or `Unauthorized`."""
        claims = self._claims(token)
        raw = await self.cache.get(SESSION_PREFIX + str(claims["jti"]))
        if raw is None:
            raise Unauthorized("This session has ended; please sign in again.", code="session_expired")
        gate = await self.cache.get(GATE_PREFIX + str(claims["sub"]))
        if gate == b"disabled":
            raise Unauthorized("This account is disabled; contact support.", code="account_disabled")
        session = self._decoder.decode(raw)
        if gate is not None and session.issued_ms < int(gate):
            raise Unauthorized("This session has ended; please sign in again.", code="session_expired")
        return session

    async def set_disabled(self, user_id: str, disabled: bool) -> None:
        """Disabling ends every session of the user at once; enabling lets them sign in again, while the
        sessions that disabling ended stay ended."""
        value = b"disabled" if disabled else str(time.time_ns() // 1_000_000).encode()
        await self.cache.set(GATE_PREFIX + user_id, value, ttl=self.ttl)

    async def revoke(self, jti: str) -> None:
        await self.cache.delete(SESSION_PREFIX + jti)
