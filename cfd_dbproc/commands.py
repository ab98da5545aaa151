"""Applying a command once: the processed-commands table remembers every command's reply."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, NamedTuple, TypeVar, cast

import msgspec

from cfd_dbproc.db import Database
from cfd_dbproc.db.statements import RowInsert, Statement
from cfd_dbproc.db.tables import ProcessedCommands
from shared.clock import now_ms
from shared.contracts import encode
from shared.operations import Operation

Rep = TypeVar("Rep")
_REPLY = Statement('SELECT "reply" FROM "processed_commands" WHERE "command_id" = {}')
_RECORD = RowInsert(ProcessedCommands)


class Checked(NamedTuple):
    """What a `lock` of `apply_once` returns when it has looked the command up too, in the same statement."""

    reply: str | None
    """The stored reply (JSON) when the command was applied before; None when it was not."""


async def apply_once(
    db: Database, op: Operation[Any, Rep], command_id: str, owner: str, apply: Callable[[], Awaitable[Rep]], *,
    lock: Callable[[], Awaitable[Checked | None]] | None = None,
) -> Rep:
    """Run `apply` in one transaction unless `command_id` was applied before; return its reply (the stored one
    when it was).

    `lock` runs first in that transaction, before the check: when two instances get the same owner's commands
    at once (a consumer-group rebalance), the second waits for the first to commit, then sees its work. A lock
    that looked the command up with it (`Checked`) saves the check its own trip."""
    async with db.transaction():
        checked = None if lock is None else await lock()
        if checked is None:
            rows = await db.fetch(_REPLY, command_id)
            checked = Checked(rows[0]["reply"] if rows else None)
        if checked.reply is not None:
            return cast(Rep, None if op.reply is None else msgspec.json.decode(checked.reply, type=op.reply))
        reply = await apply()
        await db.fetch(_RECORD.statement, *_RECORD.args(dict(
            command_id=command_id, type=op.name, user_id=owner, reply=encode(reply).decode(), created_at=now_ms())))
        return reply
