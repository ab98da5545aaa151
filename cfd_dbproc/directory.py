"""Keeps the credentials directory (`shared.credentials`) in step with the users table.

Every change to a user's sign-in credentials is written to the directory right after its transaction
commits. At start, and whenever the directory's completeness mark is gone (a flushed or new cache), every
user is loaded into it, in batches, without overwriting newer entries; then the mark is set. A write that
fails because the cache is down is owed and retried until it lands.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid

from cfd_dbproc.db.tables import Users
from cfd_dbproc.user_rows import CREDENTIALS_COLUMNS, credentials_from_row
from shared.credentials import CredentialsDirectory
from shared.errors import BackendDown

log = logging.getLogger(__name__)


class DirectoryKeeper:
    """The dbproc's side of the credentials directory."""

    def __init__(self, directory: CredentialsDirectory, *, check_every: float = 2.0, batch: int = 1000) -> None:
        self.directory = directory
        self.check_every = check_every
        self.batch = batch
        self._owed: set[uuid.UUID] = set()
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def changed(self, user_id: uuid.UUID) -> None:
        """Write one user's committed credentials; if the cache is down, owe the write."""
        try:
            row = await Users.select(*CREDENTIALS_COLUMNS).where(Users.id == user_id).first().run()
            if row is not None:
                await self.directory.put(credentials_from_row(row))
            self._owed.discard(user_id)
        except Exception as exc:  # the change is committed; the directory catches up on the next upkeep
            self._owed.add(user_id)
            log.warning("credentials directory: write for user %s owed (%s)", user_id,
                        exc.message if isinstance(exc, BackendDown) else repr(exc))

    async def fill(self) -> int:
        """Load every user not yet in the directory, then mark it complete. Returns how many were added."""
        added = seen = 0
        after = ""
        while True:
            rows = await Users.select(*CREDENTIALS_COLUMNS).where(Users.email > after).order_by(Users.email).limit(
                self.batch).run()
            if not rows:
                break
            added += await self.directory.fill(credentials_from_row(row) for row in rows)
            seen += len(rows)
            after = rows[-1]["email"]
            if seen % (self.batch * 20) == 0:
                log.info("credentials directory: %d users loaded so far", seen)
        await self.directory.mark_complete()
        if added:
            log.info("credentials directory: complete (%d users, %d added)", seen, added)
        return added

    async def _run(self) -> None:
        filled = False
        while True:
            try:
                for user_id in list(self._owed):
                    await self.changed(user_id)
                if not filled or not await self.directory.is_complete():
                    await self.fill()
                    filled = True
            except BackendDown as exc:
                log.warning("credentials directory: cache unavailable (%s); retrying in %g s", exc.message,
                            self.check_every)
            except Exception:
                log.exception("credentials directory: upkeep failed; retrying in %g s", self.check_every)
            await asyncio.sleep(self.check_every)
