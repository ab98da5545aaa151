"""API keys for bots: `cfdk_<id>_<secret>`, sent as `Authorization: Bearer <key>` on REST and in the WebSocket
`auth` op, standing for their owner with their scopes (`read`, or `read` and `trade`) until revoked.

The server makes the secret (256 random bits) and shows it once; the dbproc keeps only its SHA-256. A server
checks a key against the cache (one read), filling it from the dbproc on a miss; a revocation writes a
tombstone there that no fill can overwrite, so every instance refuses the key from its next request, and a
`sessions-ended` notice ends the WebSocket sign-ins made with it. Keys are not sessions: signing out
everywhere or changing the password leaves them working; disabling the user stops them.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

import msgspec

from cfd_server.auth.session import Session
from cfd_server.auth.session_ends import SessionNotices, SessionsEnded
from shared import operations as ops
from shared.contracts import encode
from shared.contracts.bus import CreateKeyCommand, KeyQuery, KeyRecord, KeysQuery, RevokeKeyCommand
from shared.contracts.rest import ApiKey, ApiKeyCreate, ApiKeyCreated
from shared.errors import Unauthorized

if TYPE_CHECKING:
    from cfd_server.context import ServerContext

KEY_PREFIX = "cfdk_"
_KEY = re.compile(r"^cfdk_([0-9a-f]{16})_([A-Za-z0-9_-]{43})$")
CACHE_PREFIX = "apikey:"
CACHE_TTL = 3600
REVOKED = b"revoked"
KEY_SESSION_SECONDS = 10 * 365 * 86400  # a key does not expire; its WebSocket sign-in ends when it is revoked


def is_key(token: str) -> bool:
    return token.startswith(KEY_PREFIX)


def secret_hash(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


USE_GRANULARITY = 60.0
"""Seconds: a key's `last_used_at` is noted at most this often per server process."""
USED_TTL = 400 * 86400.0
"""How long the cache keeps a key's last use."""


class ApiKeys:
    """Create, list, revoke and resolve API keys."""

    def __init__(self, ctx: ServerContext, notices: SessionNotices | None,
                 check_gate: Callable[[str], Awaitable[None]]) -> None:
        """`notices` tells every server a key was revoked; `check_gate` refuses a disabled user."""
        self.ctx = ctx
        self.cache = ctx.cache
        self.notices = notices
        self.check_gate = check_gate
        self.prefix = ctx.settings.bus.topic_prefix + CACHE_PREFIX
        self._decoder = msgspec.json.Decoder(KeyRecord)
        self._used_noted: dict[str, float] = {}  # key id → when this process last noted its use (monotonic)

    async def create(self, user_id: str, body: ApiKeyCreate) -> ApiKeyCreated:
        key_id, secret = secrets.token_hex(8), secrets.token_urlsafe(32)
        scopes = ["read", "trade"] if "trade" in body.scopes else ["read"]
        created = await self.ctx.rpc.call(ops.KEY_CREATE, CreateKeyCommand(
            user_id=user_id, key_id=key_id, name=body.name, scopes=scopes, secret_hash=secret_hash(secret)),
            key=user_id, command_id=f"key.create:{key_id}")
        return ApiKeyCreated(id=created.id, name=created.name, scopes=created.scopes, created_at=created.created_at,
                             key=f"{KEY_PREFIX}{key_id}_{secret}")

    async def list(self, user_id: str) -> list[ApiKey]:
        """The user's keys, each with when it was last used (to the minute, as the cache remembers it)."""
        keys = await self.ctx.rpc.call(ops.KEYS, KeysQuery(user_id=user_id), key=user_id)
        if not keys:
            return keys
        used = await self.cache.get_many(*(self._used_key(k.id) for k in keys))
        return [msgspec.structs.replace(k, last_used_at=int(raw)) if raw is not None else k
                for k, raw in zip(keys, used, strict=True)]

    def _used_key(self, key_id: str) -> str:
        return f"{self.prefix}used:{key_id}"

    async def _note_use(self, key_id: str) -> None:
        """Remember when the key was used, at most once a minute per key and process (a cache write, no more)."""
        now = time.monotonic()
        if now - self._used_noted.get(key_id, -USE_GRANULARITY) < USE_GRANULARITY:
            return
        if len(self._used_noted) > 10_000:
            self._used_noted.clear()
        self._used_noted[key_id] = now
        await self.cache.set(self._used_key(key_id), str(int(time.time() * 1000)).encode(), ttl=USED_TTL)

    async def revoke(self, user_id: str, key_id: str) -> None:
        """Revoke at once on every instance: the dbproc first (the key is refused from then on wherever it is
        read), then the tombstone in the cache, then the notice that ends its WebSocket sign-ins."""
        await self.ctx.rpc.call(ops.KEY_REVOKE, RevokeKeyCommand(user_id=user_id, key_id=key_id), key=user_id,
                                command_id=f"key.revoke:{key_id}")
        await self.cache.set(self.prefix + key_id, REVOKED, ttl=2 * CACHE_TTL)
        if self.notices is not None:
            await self.notices.announce(SessionsEnded(user_id=user_id, reason="key_revoked",
                                                               jti=f"key:{key_id}"))

    async def resolve(self, token: str) -> Session:
        """The session a bearer key stands for, or `Unauthorized` (`invalid_key`, `key_revoked`)."""
        match = _KEY.match(token)
        if match is None:
            raise Unauthorized("This is not a valid API key; create one with POST /api-keys.", code="invalid_key")
        key_id, secret = match.groups()
        raw = await self.cache.get(self.prefix + key_id)
        if raw is None:
            record = await self.ctx.rpc.call(ops.KEY_LOOKUP, KeyQuery(key_id=key_id), key=key_id)
            raw = REVOKED if record.revoked else encode(record)
            # only if absent: a revocation's tombstone written meanwhile wins over this older read
            await self.cache.set(self.prefix + key_id, raw, ttl=CACHE_TTL, only_if_absent=True)
            raw = await self.cache.get(self.prefix + key_id) or raw
        if raw == REVOKED:
            raise Unauthorized("This API key was revoked; create a new one.", code="key_revoked")
        record = self._decoder.decode(raw)
        if record.user is None or not hmac.compare_digest(record.secret_hash, secret_hash(secret)):
            raise Unauthorized("This is not a valid API key; create one with POST /api-keys.", code="invalid_key")
        await self.check_gate(record.user.id)
        await self._note_use(key_id)
        return Session(jti=f"key:{key_id}", user=record.user, expires_at=int(time.time()) + KEY_SESSION_SECONDS,
                       key_id=key_id, scopes=tuple(record.scopes))
