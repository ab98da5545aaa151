"""Request-scoped dependencies: the auth service and the caller's session."""

from __future__ import annotations

from litestar import Request
from litestar.datastructures import State

from cfd_server.auth.service import AuthService
from cfd_server.auth.tokens import Session
from shared.errors import Unauthorized

COOKIE_NAME = "auth_token"


def bearer_token(request: Request) -> str | None:
    header = request.headers.get("authorization", "")
    scheme, _, value = header.partition(" ")
    if scheme.lower() == "bearer" and value.strip():
        return value.strip()
    return request.cookies.get(COOKIE_NAME) or None


async def provide_auth(state: State) -> AuthService:
    return state.auth


async def provide_session(request: Request, state: State) -> Session:
    token = bearer_token(request)
    if not token:
        raise Unauthorized("Sign in first: send the auth_token cookie or an Authorization: Bearer header.")
    return await state.auth.sessions.resolve(token)
