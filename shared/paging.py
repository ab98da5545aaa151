"""Keyset (cursor) paging for the list endpoints: `GET /positions`, `GET /ledger` and `GET /admin/audit`.

A list is read newest first, ordered by a time and then the row's id, so the order is total even when two
rows share a millisecond. A cursor names the last row of a page (its time and id) and the order it belongs
to; the next page is what sorts after it. Rows added meanwhile are newer, so they sort before the cursor:
a walk sees every row that existed when it started exactly once, however many arrive during it.

To a client the cursor is opaque: URL-safe base64 of a small JSON array.
"""

from __future__ import annotations

import base64
import binascii
import uuid

import msgspec

from shared.errors import BadRequest

MAX_PAGE = 1000
"""The largest `limit` of a list endpoint."""

ORDERS = ("opened", "closed", "ledger", "audit")
"""What a cursor's list is sorted by: positions by opening or closing time, ledger and audit entries by time."""


class Cursor(msgspec.Struct, array_like=True, frozen=True):
    order: str
    at: int
    id: str


def encode_cursor(order: str, at: int, row_id: str) -> str:
    raw = msgspec.json.encode(Cursor(order, at, row_id))
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(text: str, order: str) -> Cursor:
    """The cursor `text` of a list sorted by `order`; a 400 `invalid_cursor` for anything else."""
    if len(text) > 200:
        raise _invalid()
    try:
        raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
        cursor = msgspec.json.decode(raw, type=Cursor)
        cursor = Cursor(cursor.order, cursor.at, str(uuid.UUID(cursor.id)))
    except (binascii.Error, ValueError, msgspec.DecodeError):
        raise _invalid() from None
    if cursor.order != order or not 0 <= cursor.at < 2**63:
        raise _invalid()
    return cursor


def _invalid() -> BadRequest:
    return BadRequest("This cursor is not one this list gave out; start again without it.", code="invalid_cursor",
                      details={"field": "cursor"})
