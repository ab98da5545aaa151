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
DISABLED_PREFIX = "user-disabled:"


class Session(msgspec.Struct, kw_only=True):
    jti: str
    user: User
    expires_at: int


class Sessions:
    def __init__(self, cache: Cache, secret: str, ttl_seconds: int) -> None:
        self.cache = cache
        self.secret = secret
        self.ttl = ttl_seconds
        self._decoder = msgspec.json.Decoder(Session)

    async def issue(self, user: User) -> tuple[str, Session]:
        now = int(time.time())
        jti = uuid.uuid4().hex
        session = Session(jti=jti, user=user, expires_at=now + self.ttl)
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
        if await self.cache.get(DISABLED_PREFIX + str(claims["sub"])) is not None:
            raise Unauthorized("This account is disabled; contact support.", code="account_disabled")
        return self._decoder.decode(raw)

    async def set_disabled(self, user_id: str, disabled: bool) -> None:
        """Make every session of the user stop (or start again) working at once."""
        if disabled:
            await self.cache.set(DISABLED_PREFIX + user_id, b"1", ttl=self.ttl)
        else:
            await self.cache.delete(DISABLED_PREFIX + user_id)

    async def revoke(self, jti: str) -> None:
        await self.cache.delete(SESSION_PREFIX + jti)
