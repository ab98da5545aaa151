"""Request limits per signed-in user or API key, by class (`reads`, `trading`), counted in the cache so every
server instance counts alike, and announced with the IETF `RateLimit-Policy` and `RateLimit` headers
(draft-ietf-httpapi-ratelimit-headers): `RateLimit-Policy: "trading";q=100;w=10` and
`RateLimit: "trading";r=97;t=8` (quota, window; remaining, seconds until the window resets). Over the limit:
429 `rate_limited` with `Retry-After`, and nothing done.

The sign-up, verify and sign-in attempt limits are their own (`cfd_server.auth.service`): they count guesses by
email and client address, before anyone is signed in.
"""

from __future__ import annotations

import math

from litestar import Request
from litestar.types import ASGIApp, Message, Receive, Scope, Send

from cfd_server.auth.session import Session
from shared.cache import Budget, Cache
from shared.errors import Throttled
from shared.settings import AuthSettings, RateLimit

WRITES = frozenset({"POST", "PUT", "PATCH", "DELETE"})
_NOUNS = {"reads": "reads", "trading": "writes", "subscribe": "subscribes", "replay": "replay steps"}
HEADERS_STATE = "ratelimit_headers"


class RequestLimits:
    """Counts each signed-in request against its class's budget (per user, or per API key)."""

    def __init__(self, cache: Cache, settings: AuthSettings, prefix: str) -> None:
        self.cache = cache
        self.classes = {"reads": settings.rate_limit_reads, "trading": settings.rate_limit_trading,
                        "subscribe": settings.rate_limit_subscribe, "replay": settings.rate_limit_replay}
        self.prefix = prefix

    def budget(self, session: Session, kind: str) -> Budget:
        limit = self.classes[kind]
        who = f"key:{session.key_id}" if session.key_id else f"user:{session.user.id}"
        return Budget(f"{self.prefix}rate:{kind}:{who}:{limit.seconds}", limit.count, limit.seconds)

    async def take(self, session: Session, kind: str) -> tuple[int, int, RateLimit]:
        """Count one request of `kind`: (remaining, seconds to reset, the limit); `Throttled` when over it."""
        budget = self.budget(session, kind)
        taken = await self.cache.take(budget)
        limit = self.classes[kind]
        reset = max(1, math.ceil(taken.resets_in[0])) if taken.resets_in[0] > 0 else limit.seconds
        if not taken.admitted:
            wait = taken.retry_after((budget,))
            raise Throttled(f"Too many {_NOUNS[kind]}: at most {limit.count} in {limit.seconds} s per "
                            f"{'API key' if session.key_id else 'user'}; try again in {wait} s.",
                            code="rate_limited", retry_after=wait,
                            details={"class": kind, "limit": limit.count, "window": limit.seconds,
                                     "retry_after": wait})
        return limit.count - taken.counts[0], reset, limit

    async def check(self, request: Request, session: Session) -> None:
        """Count a REST request and leave its headers for `RateLimitHeaders` (also on the 429). A handler may name
        a class of its own (`opt={"rate_class": ...}`: the replay's steps); else reads and writes are counted."""
        kind = request.route_handler.opt.get("rate_class") or ("trading" if request.method in WRITES else "reads")
        limit = self.classes[kind]
        headers = request.scope.setdefault("state", {})
        try:
            remaining, reset, _ = await self.take(session, kind)
        except Throttled as exc:
            headers[HEADERS_STATE] = _headers(kind, limit, 0, exc.retry_after or limit.seconds)
            raise
        headers[HEADERS_STATE] = _headers(kind, limit, remaining, reset)


def _headers(kind: str, limit: RateLimit, remaining: int, reset: int) -> list[tuple[bytes, bytes]]:
    return [(b"ratelimit-policy", f'"{kind}";q={limit.count};w={limit.seconds}'.encode()),
            (b"ratelimit", f'"{kind}";r={max(remaining, 0)};t={reset}'.encode())]


class RateLimitHeaders:
    """ASGI middleware: adds the `RateLimit-Policy` and `RateLimit` headers a request's limit check left."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                extra = scope.get("state", {}).get(HEADERS_STATE)
                if extra:
                    message["headers"] = [*message.get("headers", []), *extra]
            await send(message)

        await self.app(scope, receive, send_with_headers)
