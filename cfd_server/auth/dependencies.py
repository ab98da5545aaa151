"""Request-scoped dependencies: the auth service and the caller's session."""

from __future__ import annotations

from litestar import Request
from litestar.datastructures import State

from cfd_server.auth.service import AuthService
from cfd_server.auth.tokens import Session
from shared.errors import Forbidden, Unauthorized

COOKIE_NAME = "auth_token"


def bearer_token(request: Request) -> str | None:
    header = request.headers.get("authorization", "")
    scheme, _, value = header.partition(" ")
    if scheme.lower() == "bearer" and value.strip():
        return value.strip()
    return request.cookies.get(COOKIE_NAME) or None


async def provide_auth(state: State) -> AuthService:
    return state.auth


WRITES = frozenset({"POST", "PUT", "PATCH", "DELETE"})


async def provide_session(request: Request, state: State) -> Session:
    """The caller's session, or the API key standing for them. A read-only key may read, never write
    (403 `insufficient_scope`)."""
    token = bearer_token(request)
    if not token:
        raise Unauthorized("Sign in first: send the auth_token cookie or an Authorization: Bearer header.")
    await state.limits.hold_early(request, token)
    session = await state.auth.sessions.resolve(token)
    if session.key_id is not None and request.method in WRITES and "trade" not in session.scopes:
        raise Forbidden("This API key may only read; create one with the trade scope to trade.",
                        code="insufficient_scope", details={"scopes": list(session.scopes)})
    await state.limits.check(request, session, token)
    return session


async def provide_person(request: Request, state: State) -> Session:
    """A signed-in session, not an API key: managing keys, the password and sessions needs the person
    (403 `key_not_allowed`)."""
    session = await provide_session(request, state)
    if session.key_id is not None:
        raise Forbidden("An API key cannot manage API keys, the password or sessions; sign in to do that.",
                        code="key_not_allowed")
    return session
