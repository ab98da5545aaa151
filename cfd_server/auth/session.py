"""A signed-in session: what an access token stands for while it lives in the cache.

Its own module because both sides use it: `auth.tokens` issues and resolves sessions, and the WebSocket
hub (`ws.hub`, `ws.client`) keeps the session each connection signed in with, to end it when it ends.
"""

from __future__ import annotations

import msgspec

from shared.contracts.rest import User


class Session(msgspec.Struct, kw_only=True):
    """A signed-in session, or an API key standing for its owner (`key_id`, with its `scopes`)."""

    jti: str
    user: User
    expires_at: int  # epoch seconds, the token's `exp`
    issued_ms: int = 0
    key_id: str | None = None
    scopes: tuple[str, ...] = ("read", "trade")
