"""JWT access tokens whose sessions live in the cache by `jti`, so logout really ends them.

Ending sessions also ends them on the WebSocket feed of every server: each way to end them here announces
a `SessionsEnded` notice first (see `session_ends`), then changes the cache.
"""

from __future__ import annotations

import time
import uuid
from typing import TYPE_CHECKING

import jwt
import msgspec

from cfd_server.auth.keys import ApiKeys, is_key
from cfd_server.auth.session import Session
from cfd_server.auth.session_ends import SessionNotices, SessionsEnded
from shared.cache import Cache
from shared.clock import now_ms
from shared.contracts import encode
from shared.contracts.rest import User
from shared.errors import Unauthorized

if TYPE_CHECKING:
    from cfd_server.context import ServerContext

ALGORITHM = "HS256"
SESSION_PREFIX = "session:"
# The user's gate: "disabled", or "<ms>[:<jti>]": sessions issued before that time (epoch ms) no longer count,
# except the one `jti` (the session that signed every other one out).
GATE_PREFIX = "user-gate:"
DISABLED = b"disabled"
VERIFIED_KEPT = 10_000
"""Access tokens whose signature a server remembers having checked (the most recently seen)."""


class Sessions:
    def __init__(self, cache: Cache, secret: str, ttl_seconds: int, notices: SessionNotices | None = None) -> None:
        self.cache = cache
        self.secret = secret
        self.ttl = ttl_seconds
        self.notices = notices
        self.keys: ApiKeys | None = None  # set for a server (`for_server`)
        self._decoder = msgspec.json.Decoder(Session)
        self._verified: dict[str, tuple[int, str, str]] = {}
        """Per access token checked here: its `exp`, `jti` and `sub` (a bot's burst of requests with one token
        pays for the signature once)."""

    @classmethod
    def for_server(cls, ctx: ServerContext) -> Sessions:
        """The server's sessions: its cache and secret, and the bus that tells every server when they end."""
        settings = ctx.settings.auth
        sessions = cls(ctx.cache, settings.jwt_secret, settings.jwt_ttl_seconds,
                       SessionNotices(ctx.bus, ctx.topics.sessions))
        sessions.keys = ApiKeys(ctx, sessions.notices, sessions.check_gate)
        return sessions

    async def issue(self, user: User) -> tuple[str, Session]:
        now = int(time.time())
        jti = uuid.uuid4().hex
        session = Session(jti=jti, user=user, expires_at=now + self.ttl, issued_ms=now_ms())
        token = jwt.encode({"sub": user.id, "jti": jti, "iat": now, "exp": now + self.ttl}, self.secret,
                           algorithm=ALGORITHM)
        await self.cache.set(SESSION_PREFIX + jti, encode(session), ttl=self.ttl)
        return token, session

    def _claims(self, token: str) -> tuple[str, str]:
        """The `jti` and `sub` of a valid, unexpired access token; else `Unauthorized`. The signature is checked
        the first time a token is seen; after that only the expiry is."""
        verified = self._verified.pop(token, None)
        if verified is None:
            try:
                claims = jwt.decode(token, self.secret, algorithms=[ALGORITHM],
                                    options={"require": ["exp", "jti", "sub"]})
            except jwt.ExpiredSignatureError:
                raise Unauthorized("Your session has expired; please sign in again.",
                                   code="session_expired") from None
            except jwt.PyJWTError:
                raise Unauthorized("The access token is not valid; please sign in.", code="invalid_token") from None
            verified = (int(claims["exp"]), str(claims["jti"]), str(claims["sub"]))
        elif verified[0] <= time.time():  # expired since (PyJWT allows no leeway either)
            raise Unauthorized("Your session has expired; please sign in again.", code="session_expired")
        self._verified[token] = verified  # the most recently seen last
        if len(self._verified) > VERIFIED_KEPT:
            self._verified.pop(next(iter(self._verified)))
        return verified[1], verified[2]

    async def check_gate(self, user_id: str) -> None:
        """Refuse a disabled user (`account_disabled`)."""
        if await self.cache.get(GATE_PREFIX + user_id) == DISABLED:
            raise Unauthorized("This account is disabled; contact support.", code="account_disabled")

    async def resolve(self, token: str) -> Session:
        """The live session behind `token` (an access token, or an API key), or `Unauthorized`."""
        if self.keys is not None and is_key(token):
            return await self.keys.resolve(token)
        jti, sub = self._claims(token)
        # the session and the user's gate in one trip to the cache: every authenticated request pays for it
        raw, gate = await self.cache.get_many(SESSION_PREFIX + jti, GATE_PREFIX + sub)
        if raw is None:
            raise Unauthorized("This session has ended; please sign in again.", code="session_expired")
        if gate == DISABLED:
            raise Unauthorized("This account is disabled; contact support.", code="account_disabled")
        session = self._decoder.decode(raw)
        if gate is not None:
            before, _, kept = gate.decode().partition(":")
            if session.issued_ms < int(before) and session.jti != kept:
                raise Unauthorized("This session has ended; please sign in again.", code="session_expired")
        return session

    async def _announce(self, notice: SessionsEnded) -> None:
        if self.notices is not None:
            await self.notices.announce(notice)

    async def revoke(self, jti: str) -> None:
        """End one session (logout). The notice goes out before the session is deleted, so a failure leaves
        the session working and the logout can be retried."""
        raw = await self.cache.get(SESSION_PREFIX + jti)
        if raw is None:
            return  # already ended
        session = self._decoder.decode(raw)
        await self._announce(SessionsEnded(user_id=session.user.id, reason="logout", jti=jti))
        await self.cache.delete(SESSION_PREFIX + jti)

    async def end_all(self, user_id: str, *, keep_jti: str | None = None,
                      reason: str = "signed_out_everywhere") -> None:
        """End every session of `user_id` issued until now, except `keep_jti` (the caller's own, when it
        stays signed in). A disabled user stays disabled."""
        now = now_ms()
        await self._announce(SessionsEnded(user_id=user_id, reason=reason, before_ms=now, keep_jti=keep_jti))
        if await self.cache.get(GATE_PREFIX + user_id) != DISABLED:
            gate = f"{now}:{keep_jti}" if keep_jti else str(now)
            await self.cache.set(GATE_PREFIX + user_id, gate.encode(), ttl=self.ttl)

    async def set_disabled(self, user_id: str, disabled: bool) -> None:
        """Disabling ends every session of the user at once; enabling lets them sign in again, while the
        sessions that disabling ended stay ended. Unlike a logout, the cache changes first (the operator can
        always retry), so the REST API refuses the user even if the notice cannot go out."""
        now = now_ms()
        value = DISABLED if disabled else str(now).encode()
        await self.cache.set(GATE_PREFIX + user_id, value, ttl=self.ttl)
        if disabled:  # `now + 1`: a session issued this very millisecond ends too
            await self._announce(SessionsEnded(user_id=user_id, reason="disabled", before_ms=now + 1))
