"""Request limits per signed-in user or API key, by class (`reads`, `trading`, `subscribe`), counted in the cache
so every server instance counts alike, and announced with the IETF `RateLimit-Policy` and `RateLimit` headers
(draft-ietf-httpapi-ratelimit-headers): `RateLimit-Policy: "trading";q=100;w=10` and
`RateLimit: "trading";r=7;t=1` (quota, window; remaining now, seconds until the whole burst is back). Over the
limit: 429 `rate_limited` with `Retry-After`, and nothing done.

A limit of q per w seconds is kept as a steady pace (the generic cell rate algorithm, `Cache.pace`): up to
`burst_of(limit)` requests at once, then one every w/q seconds. So a client's requests reach the platform
spread out, never as a crowd at the start of a window, and a storm from one user cannot queue another's
requests behind a burst.

The sign-up, verify and sign-in attempt limits are their own (`cfd_server.auth.service`): they count guesses by
email and client address, before anyone is signed in.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Callable

from litestar import Request
from litestar.types import ASGIApp, Message, Receive, Scope, Send

from cfd_server.auth.session import Session
from shared.cache import Cache, Pace, Paced
from shared.errors import Throttled
from shared.settings import AuthSettings, RateLimit

WRITES = frozenset({"POST", "PUT", "PATCH", "DELETE"})
_NOUNS = {"reads": "reads", "trading": "writes", "subscribe": "subscribes", "replay": "replay steps"}
HEADERS_STATE = "ratelimit_headers"


REPEAT_PAUSE_SECONDS = 1.0
"""How long a request that came before the `Retry-After` its credential was given is held before it is handled."""
MAX_REFUSALS = 10_000
"""Refusals remembered at once, per server process: a storm of many identities costs memory up to here."""


class RateLimited(Throttled):
    """429 `rate_limited`: over a class's limit; `wait` is the exact number of seconds until the next request of
    the class is admitted (`Retry-After` is it in whole seconds, rounded up)."""

    def __init__(self, kind: str, limit: RateLimit, per_key: bool, wait: float) -> None:
        retry_after = max(1, math.ceil(wait))
        super().__init__(f"Too many {_NOUNS[kind]}: at most {limit.count} in {limit.seconds} s per "
                         f"{'API key' if per_key else 'user'}; try again in {retry_after} s.",
                         code="rate_limited", retry_after=retry_after,
                         details={"class": kind, "limit": limit.count, "window": limit.seconds,
                                  "retry_after": retry_after})
        self.wait = wait


class RequestLimits:
    """Counts each signed-in request against its class's budget (per user, or per API key).

    A refusal is remembered in this process, by the credential that drew it and the class, until its next
    request is due: one that comes before that is held for `REPEAT_PAUSE_SECONDS` before it is even looked at,
    so a client that ignores `Retry-After` and asks again at once, in a loop, costs the server one request a
    second per connection instead of all it can send."""

    def __init__(self, cache: Cache, settings: AuthSettings, prefix: str,
                 clock: Callable[[], float] = time.monotonic, repeat_pause: float = REPEAT_PAUSE_SECONDS) -> None:
        self.cache = cache
        self.classes = {"reads": settings.rate_limit_reads, "trading": settings.rate_limit_trading,
                        "subscribe": settings.rate_limit_subscribe, "replay": settings.rate_limit_replay}
        self.prefix = prefix
        self.clock = clock
        self.repeat_pause = repeat_pause
        self._refused: dict[tuple[str, str], float] = {}  # (credential, class) → when its next request is due

    @staticmethod
    def kind_of(request: Request) -> str:
        """The class a REST request is counted in: the one its handler names (`opt={"rate_class": ...}`: the
        replay's steps), else reads or writes (`trading`)."""
        return request.route_handler.opt.get("rate_class") or ("trading" if request.method in WRITES else "reads")

    async def hold_early(self, request: Request, credential: str) -> None:
        """Hold a request for `repeat_pause` seconds if its credential was refused this class of request and
        the `Retry-After` it was given has not passed: a client that asks again at once, in a loop, gets its
        answers (counted as usual afterwards) at most once a second per connection, and cannot spin."""
        key = (credential, self.kind_of(request))
        due = self._refused.get(key)
        if due is None:
            return
        if due <= self.clock():
            del self._refused[key]
            return
        await asyncio.sleep(self.repeat_pause)

    def _remember(self, credential: str, kind: str, wait: float) -> None:
        if len(self._refused) >= MAX_REFUSALS:
            now = self.clock()
            self._refused = {k: due for k, due in self._refused.items() if due > now}
            if len(self._refused) >= MAX_REFUSALS:
                return  # full of live refusals: this one is counted in the cache as usual
        self._refused[(credential, kind)] = self.clock() + wait

    def pace(self, session: Session, kind: str) -> Pace:
        """The class's limit as a steady pace for this user or key: `count` per `seconds` on average, up to
        `burst_of(limit)` at once."""
        limit = self.classes[kind]
        who = f"key:{session.key_id}" if session.key_id else f"user:{session.user.id}"
        return Pace(f"{self.prefix}pace:{kind}:{who}:{limit.count}:{limit.seconds}", limit.seconds / limit.count,
                    burst_of(limit))

    async def take(self, session: Session, kind: str) -> tuple[int, int, RateLimit]:
        """Count one request of `kind`: (remaining now, seconds until the whole burst is back, the limit);
        `Throttled` when over it."""
        paced = await self._pace(session, kind)
        return paced.remaining, max(1, math.ceil(paced.full_in)), self.classes[kind]

    async def _pace(self, session: Session, kind: str) -> Paced:
        paced = await self.cache.pace(self.pace(session, kind))
        if not paced.admitted:
            raise RateLimited(kind, self.classes[kind], session.key_id is not None, paced.next_in)
        return paced

    async def check(self, request: Request, session: Session, credential: str) -> None:
        """Count a REST request and leave its headers for `RateLimitHeaders` (also on the 429); a refusal is
        remembered for `hold_early` under `credential` (the token or key the request came with)."""
        kind = self.kind_of(request)
        limit = self.classes[kind]
        headers = request.scope.setdefault("state", {})
        try:
            paced = await self._pace(session, kind)
        except RateLimited as exc:
            headers[HEADERS_STATE] = _headers(kind, limit, 0, exc.retry_after or 1)
            self._remember(credential, kind, exc.wait)
            raise
        headers[HEADERS_STATE] = _headers(kind, limit, paced.remaining, max(1, math.ceil(paced.full_in)))


def burst_of(limit: RateLimit) -> int:
    """How many requests of a class may go at once: a tenth of the limit, at least 10 (all of a smaller
    limit). The rest of the limit comes at its steady pace, so one client's requests reach the platform spread
    out, not in a crowd at the start of each window."""
    return min(limit.count, max(10, limit.count // 10))


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
