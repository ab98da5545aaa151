"""Applying a command once: the processed-commands table remembers every command's reply."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, TypeVar, cast

import msgspec

from cfd_dbproc.db import Database
from cfd_dbproc.db.tables import ProcessedCommands
from shared.clock import now_ms
from shared.contracts import encode
from shared.operations import Operation

Rep = TypeVar("Rep")


async def apply_once(
    db: Database, op: Operation[Any, Rep], command_id: str, owner: str, apply: Callable[[], Awaitable[Rep]], *,
    lock: Callable[[], Awaitable[object]] | None = None,
) -> Rep:
    """Run `apply` in one transaction unless `command_id` was applied before; return its reply (the stored one
    when it was).

    `lock` runs first in that transaction, before the check: when two instances get the same owner's commands
    at once (a consumer-group rebalance), the second waits for the first to commit, then sees its work."""
    async with db.transaction():
        if lock is not None:
            await lock()
        done = await ProcessedCommands.select(ProcessedCommands.reply).where(
            ProcessedCommands.command_id == command_id
        ).first().run()
        if done is not None:
            return cast(Rep, None if op.reply is None else msgspec.json.decode(done["reply"], type=op.reply))
        reply = await apply()
        await ProcessedCommands.insert(
            ProcessedCommands(command_id=command_id, type=op.name, user_id=owner, reply=encode(reply).decode(),
                              created_at=now_ms())
        ).run()
        return reply
