"""Applying a command once: the processed-commands table remembers every write's reply."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable

from shared.contracts import BusRequest
from shared.db import Database
from shared.db.tables import ProcessedCommands


def now_ms() -> int:
    return time.time_ns() // 1_000_000


async def apply_once(
    db: Database, request: BusRequest, owner: str, apply: Callable[[], Awaitable[bytes]], *,
    lock: Callable[[], Awaitable[object]] | None = None,
) -> bytes:
    """Run `apply` in one transaction unless `request.command_id` was applied before; return its reply.

    `lock` runs first in that transaction, before the check: when two instances get the same owner's commands
    at once (a consumer-group rebalance), the second waits for the first to commit, then sees its work."""
    async with db.transaction():
        if lock is not None:
            await lock()
        done = await ProcessedCommands.select(ProcessedCommands.reply).where(
            ProcessedCommands.command_id == request.command_id
        ).first().run()
        if done is not None:
            return done["reply"].encode()
        reply = await apply()
        await ProcessedCommands.insert(
            ProcessedCommands(
                command_id=request.command_id, type=request.type, user_id=owner,
                reply=reply.decode(), created_at=now_ms(),
            )
        ).run()
        return reply
