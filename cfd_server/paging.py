"""Keyset pages over REST: the `cursor`, `since` and `until` query parameters and the `Link: rel="next"` header.

`since` and `until` (epoch ms) keep a list to a window of its sort time: at or after `since`, before `until`.
The next page's link repeats them with the cursor, so a walk stays inside the window."""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Literal, TypeVar, cast
from urllib.parse import urlencode

import msgspec
from litestar import Request, Response
from litestar.datastructures import ResponseHeader
from litestar.params import QueryParameter

from shared import operations as ops
from shared.bus.rpc import RequestClient
from shared.contracts.bus import OrdersQuery, PositionsQuery
from shared.contracts.rest import Order, OrderStatus, Position
from shared.paging import decode_cursor, encode_cursor

T = TypeVar("T")

CURSOR_HELP = "The `next` link's cursor of the page before; absent for the first (newest) page."
MAX_MS = 2**63 - 1
Since = Annotated[int | None, QueryParameter(
    ge=0, le=MAX_MS, description="Epoch ms: only items whose time (the list's sort time) is at or after this.")]
Until = Annotated[int | None, QueryParameter(
    ge=0, le=MAX_MS, description="Epoch ms: only items whose time (the list's sort time) is before this.")]
NEXT_PAGE_HEADER = ResponseHeader(
    name="Link", required=False, documentation_only=True,
    description='`<URL>; rel="next"`: the next page, when there is one (the same query with its `cursor`).')


def paged(request: Request, rows: list[T], limit: int, order: str,
          last: Callable[[T], tuple[int, str]]) -> Response[list[T]]:
    """A page of at most `limit` rows (the dbproc was asked for one more, to tell whether another page follows),
    with a `Link: <...>; rel="next"` header when one does."""
    if len(rows) <= limit:
        return Response(rows)
    rows = rows[:limit]
    return Response(rows, headers=next_page(request, cursor=encode_cursor(order, *last(rows[-1]))))


def next_page(request: Request, **changed: str | int) -> dict[str, str]:
    """The `Link` header naming the next page: this request's query with `changed` parameters."""
    params: dict[str, str | int] = {k: v for k, v in request.query_params.items() if k not in changed}
    params.update(changed)
    return {"Link": f'<{request.url.path}?{urlencode(params)}>; rel="next"'}


async def positions_page(request: Request, rpc: RequestClient, *, user_id: str | None,
                         status: Literal["open", "closed"] | None, limit: int, cursor: str | None,
                         key: str, since: int | None = None, until: int | None = None) -> Response[list[Position]]:
    """One page of a trader's positions (or, without `user_id`, every trader's), newest first: closed ones by
    when they closed, the rest by when they opened (the time `since` and `until` bound); a cursor of another
    list is a 400 `invalid_cursor`."""
    order = "closed" if status == "closed" else "opened"
    if cursor is not None:
        decode_cursor(cursor, order)
    rows = await rpc.call_rows(ops.POSITIONS, PositionsQuery(user_id=user_id, status=status, limit=limit + 1,
                                                             cursor=cursor, since=since, until=until), key=key)
    return as_sent(paged(request, rows, limit, order, _row_key("closed_at" if order == "closed" else "opened_at")))


async def orders_page(request: Request, rpc: RequestClient, *, user_id: str | None, status: OrderStatus | None,
                      limit: int, cursor: str | None, key: str, since: int | None = None,
                      until: int | None = None) -> Response[list[Order]]:
    """One page of a trader's orders (or, without `user_id`, every trader's), newest first by when they were
    placed (the time `since` and `until` bound)."""
    if cursor is not None:
        decode_cursor(cursor, "created")
    rows = await rpc.call_rows(ops.ORDERS, OrdersQuery(user_id=user_id, status=status, limit=limit + 1,
                                                       cursor=cursor, since=since, until=until), key=key)
    return as_sent(paged(request, rows, limit, "created", _row_key("created_at")))


class _Keys(msgspec.Struct):
    """What a page's cursor is made of, read from a row as the dbproc encoded it (the rest is not decoded)."""

    id: str
    opened_at: int = 0
    closed_at: int | None = None
    created_at: int = 0


_keys = msgspec.json.Decoder(_Keys)


def _row_key(time: str) -> Callable[[msgspec.Raw], tuple[int, str]]:
    """A row's cursor key: its sort time (`time`, 0 when unset) and its id."""

    def key(raw: msgspec.Raw) -> tuple[int, str]:
        keys = _keys.decode(raw)
        return getattr(keys, time) or 0, keys.id

    return key


def as_sent(page: Response[list[msgspec.Raw]]) -> Response[list[T]]:
    """A page of rows as the dbproc encoded them, answered as the list of records its route documents (each
    row goes out as it came, spliced into the JSON array)."""
    return cast("Response[list[T]]", page)
