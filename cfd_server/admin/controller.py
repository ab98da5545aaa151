"""`/api/v1/admin`: what the `cfd` CLI asks on an operator's behalf; needs the operator token."""

from __future__ import annotations

import hashlib
import hmac
import uuid
from typing import Annotated, Literal

from litestar import Controller, Request, Response, delete, get, post
from litestar.connection import ASGIConnection
from litestar.datastructures import State
from litestar.handlers import BaseRouteHandler
from litestar.params import FromPath, JSONBody, QueryParameter

from cfd_server.context import rpc
from cfd_server.paging import CURSOR_HELP, NEXT_PAGE_HEADER, Since, Until, orders_page, positions_page
from shared import operations as ops
from shared.contracts.bus import (
    AccountQuery,
    DepositCommand,
    ExposureQuery,
    KeyQuery,
    SetDisabledCommand,
    UserQuery,
    UsersQuery,
)
from shared.contracts.rest import (
    Account,
    ApiKey,
    DepositRequest,
    MarketExposure,
    Order,
    OrderStatus,
    Position,
    User,
    UserSummary,
)
from shared.errors import Forbidden, NotFound, Unauthorized
from shared.paging import MAX_PAGE
from shared.settings import Settings, local_secret
from shared.status import ProcessStatus


def operator_token(settings: Settings) -> str | None:
    """The configured token; in dev and test mode the data directory's own, made on first use and kept where
    the local CLI finds it (owner-only)."""
    if settings.auth.admin_token:
        return settings.auth.admin_token
    if settings.env == "prod":
        return None
    return local_secret(settings.admin_token_file)  # servers sharing a data directory share its token


def operator_guard(connection: ASGIConnection, _handler: BaseRouteHandler) -> None:
    expected = connection.app.state.operator_token
    if expected is None:
        raise Forbidden("The operator API is off: set CFD_ADMIN_TOKEN on the server.", code="admin_disabled")
    scheme, _, given = connection.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not hmac.compare_digest(given.strip().encode(), expected.encode()):
        raise Unauthorized("The operator token is missing or wrong.", code="invalid_admin_token")


def user_id(value: str) -> str:
    try:
        return str(uuid.UUID(value))
    except ValueError:
        raise NotFound("No such user.", code="user_not_found") from None


class AdminController(Controller):
    path = "/admin"
    tags = ["operators"]
    guards = [operator_guard]

    @get("/status", operation_id="admin_status",
         summary="Every platform process heard on the bus: its services, partitions, clients and tick ages")
    async def status(self, state: State) -> list[ProcessStatus]:
        return state.status_board.processes()

    @get("/users", operation_id="admin_list_users", summary="Users with their balance, newest first")
    async def users(self, state: State, search: Annotated[str | None, QueryParameter(max_length=254)] = None,
                    limit: Annotated[int, QueryParameter(ge=1, le=1000)] = 100) -> list[UserSummary]:
        return await rpc(state).call(ops.USERS, UsersQuery(search=search, limit=limit), key="operator")

    @get("/users/{user:str}/api-keys", operation_id="admin_user_api_keys", summary="A user's live API keys")
    async def api_keys(self, state: State, user: FromPath[str]) -> list[ApiKey]:
        return await state.auth.keys.list(user_id(user))

    @delete("/api-keys/{key:str}", operation_id="admin_revoke_api_key", status_code=204,
            summary="Revoke any user's API key, on every server at once")
    async def revoke_api_key(self, state: State, key: FromPath[str]) -> None:
        record = await rpc(state).call(ops.KEY_LOOKUP, KeyQuery(key_id=key), key=key)
        if record.user is None:
            raise NotFound("No such API key, or it is revoked already.", code="key_not_found")
        await state.auth.keys.revoke(record.user.id, key)

    @get("/users/{user:str}/account", operation_id="admin_user_account", summary="A user's account")
    async def account(self, state: State, user: FromPath[str]) -> Account:
        uid = user_id(user)
        return await rpc(state).call(ops.ACCOUNT, AccountQuery(user_id=uid), key=uid)

    @post("/users/{user:str}/{action:str}", operation_id="admin_set_user_state", status_code=200,
          summary="Disable (ending every session) or enable a user")
    async def set_state(self, state: State, user: FromPath[str],
                        action: FromPath[Literal["disable", "enable"]]) -> User:
        uid = user_id(user)
        disabled = action == "disable"
        await rpc(state).call(ops.SET_DISABLED, SetDisabledCommand(user_id=uid, disabled=disabled), key=uid)
        await state.auth.sessions.set_disabled(uid, disabled)
        return await rpc(state).call(ops.USER_PROFILE, UserQuery(user_id=uid), key=uid)

    @post("/users/{user:str}/deposit", operation_id="admin_deposit", status_code=200,
          summary="Credit (or, negative, debit) a user's balance through the ledger")
    async def deposit(self, request: Request, state: State, user: FromPath[str],
                      data: JSONBody[DepositRequest]) -> Account:
        uid = user_id(user)
        key = request.headers.get("idempotency-key")
        command = f"deposit:{hashlib.sha256(f'{uid}:{key}'.encode()).hexdigest()}" if key else None
        return await rpc(state).call(ops.DEPOSIT, DepositCommand(user_id=uid, amount=data.amount), key=uid,
                                     command_id=command)

    @get("/positions", operation_id="admin_list_positions", summary="Positions of every user (or one), newest first",
         response_headers=[NEXT_PAGE_HEADER])
    async def positions(self, request: Request, state: State,
                        status: Annotated[Literal["open", "closed"] | None, QueryParameter()] = None,
                        user: Annotated[str | None, QueryParameter()] = None,
                        limit: Annotated[int, QueryParameter(ge=1, le=MAX_PAGE)] = 200,
                        cursor: Annotated[str | None, QueryParameter(description=CURSOR_HELP)] = None,
                        since: Since = None, until: Until = None,
                        ) -> Response[list[Position]]:
        uid = user_id(user) if user else None
        return await positions_page(request, rpc(state), user_id=uid, status=status, limit=limit, cursor=cursor,
                                    key=uid or "operator", since=since, until=until)

    @get("/orders", operation_id="admin_list_orders", summary="Pending orders of every user (or one), newest first",
         response_headers=[NEXT_PAGE_HEADER])
    async def orders(self, request: Request, state: State,
                     status: Annotated[OrderStatus | None, QueryParameter()] = None,
                     user: Annotated[str | None, QueryParameter()] = None,
                     limit: Annotated[int, QueryParameter(ge=1, le=MAX_PAGE)] = 200,
                     cursor: Annotated[str | None, QueryParameter(description=CURSOR_HELP)] = None,
                     since: Since = None, until: Until = None,
                     ) -> Response[list[Order]]:
        uid = user_id(user) if user else None
        return await orders_page(request, rpc(state), user_id=uid, status=status, limit=limit, cursor=cursor,
                                 key=uid or "operator", since=since, until=until)

    @get("/exposure", operation_id="admin_exposure", summary="The broker's net exposure and PnL per market")
    async def exposure(self, state: State) -> list[MarketExposure]:
        return await rpc(state).call(ops.EXPOSURE, ExposureQuery(), key="operator")
