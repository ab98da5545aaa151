"""What every HTTP answer and every write must satisfy, whatever the route: cross-site writes are refused,
and answers carry the headers that keep browsers and caches from misusing them.

Cross-site requests (`CrossSiteGuard`) follow the Fetch Metadata approach that browsers make reliable
(it is also what Go's `net/http.CrossOriginProtection` does): a write that carries an `Authorization:
Bearer` header cannot have come from another site's page, since browsers never add one by themselves, so
it passes. Any other write (POST, PUT, PATCH, DELETE) from a browser must come from this site: an `Origin`
in `CFD_ALLOWED_ORIGINS` passes; otherwise `Sec-Fetch-Site` must be `same-origin` or `none`, or, from a
browser too old to send it, the `Origin` must name the host the request was sent to. A request with
neither header is not from a browser and passes. A write signed in with the cookie must also send its body,
if it has one, as `application/json`: that is what a page of another site cannot send without asking the
server first (a CORS preflight, which this server never grants).
"""

from __future__ import annotations

from typing import cast
from urllib.parse import urlsplit

from litestar.connection import ASGIConnection
from litestar.datastructures import Headers, MutableScopeHeaders
from litestar.types import ASGIApp, HTTPScope, Message, Receive, Scope, Send

from cfd_server.auth.dependencies import COOKIE_NAME
from shared.errors import Forbidden

UNSAFE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
SAME_SITE_FETCHES = frozenset({"same-origin", "none"})  # `none`: the user's own action (address bar, bookmark)
API_PREFIX = "/api/"


class CrossSiteGuard:
    """ASGI middleware refusing cross-site writes with 403 `cross_site_request` before the handler runs."""

    def __init__(self, app: ASGIApp, allowed_origins: tuple[str, ...] = ()) -> None:
        self.app = app
        self.allowed_origins = frozenset(allowed_origins)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and cast("HTTPScope", scope)["method"] in UNSAFE_METHODS:
            self.check(scope)
        await self.app(scope, receive, send)

    def check(self, scope: Scope) -> None:
        headers = Headers.from_scope(scope)
        scheme, _, token = headers.get("authorization", "").partition(" ")
        if scheme.lower() == "bearer" and token.strip():
            return
        origin = headers.get("origin")
        if origin is None or origin.lower() not in self.allowed_origins:
            site = headers.get("sec-fetch-site")
            if site is not None:
                if site.lower() not in SAME_SITE_FETCHES:
                    raise _refused(f"This request came from another site (Sec-Fetch-Site: {site[:40]}).",
                                   "sec_fetch_site")
            elif origin is not None and not _same_host(origin, headers.get("host", "")):
                raise _refused(f"This request came from another site (Origin: {origin[:100]}).", "origin")
        if COOKIE_NAME in ASGIConnection(scope).cookies and _has_body(headers) and not _is_json(headers):
            raise Forbidden("A request signed in with the auth_token cookie must send its body as "
                            "Content-Type: application/json.", code="cross_site_request",
                            details={"reason": "content_type"})


def _refused(what: str, reason: str) -> Forbidden:
    return Forbidden(f"{what} The API takes writes only from its own pages: send it from this site, use an "
                     "Authorization: Bearer token, or ask the operator to allow your site's origin "
                     "(CFD_ALLOWED_ORIGINS).", code="cross_site_request", details={"reason": reason})


def _same_host(origin: str, host: str) -> bool:
    try:
        netloc = urlsplit(origin).netloc
    except ValueError:
        return False
    return bool(netloc) and netloc.lower() == host.lower()  # `Origin: null` has no host: refused


def _has_body(headers: Headers) -> bool:
    length = headers.get("content-length")
    if length is None:
        return "transfer-encoding" in headers
    try:
        return int(length) > 0
    except ValueError:
        return True


def _is_json(headers: Headers) -> bool:
    media_type = headers.get("content-type", "").split(";", 1)[0].strip().lower()
    return media_type == "application/json" or (media_type.startswith("application/") and
                                                media_type.endswith("+json"))


async def security_headers(message: Message, scope: Scope) -> None:
    """`before_send` hook: `nosniff` on every answer; `no-store` on every API answer (some carry tokens,
    all carry one user's data), unless the handler chose its own `Cache-Control`."""
    if message["type"] != "http.response.start":
        return
    headers = MutableScopeHeaders.from_message(message)
    headers["X-Content-Type-Options"] = "nosniff"
    if scope["path"].startswith(API_PREFIX) and headers.get("cache-control") is None:
        headers["Cache-Control"] = "no-store"
