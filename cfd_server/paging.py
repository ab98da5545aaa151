"""Keyset pages over REST: the `cursor` query parameter and the `Link: rel="next"` header."""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar
from urllib.parse import urlencode

from litestar import Request, Response
from litestar.datastructures import ResponseHeader

from shared.contracts.rest import Position
from shared.paging import encode_cursor

T = TypeVar("T")

CURSOR_HELP = "The `next` link's cursor of the page before; absent for the first (newest) page."
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
    params = {k: v for k, v in request.query_params.items() if k != "cursor"}
    params["cursor"] = encode_cursor(order, *last(rows[-1]))
    return Response(rows, headers={"Link": f'<{request.url.path}?{urlencode(params)}>; rel="next"'})


def position_order(status: str | None) -> str:
    """The order a positions list is read in: closed ones by when they closed, the rest by when they opened."""
    return "closed" if status == "closed" else "opened"


def position_key(order: str) -> Callable[[Position], tuple[int, str]]:
    """The sort key of a position in `order`, which the next page's cursor carries."""
    if order == "closed":
        return lambda p: (p.closed_at or 0, p.id)
    return lambda p: (p.opened_at, p.id)
