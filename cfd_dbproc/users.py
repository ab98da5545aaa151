"""User requests: existence, creation with the demo deposit, credentials and profile lookups, and the
replacement of an outdated password hash."""

from __future__ import annotations

import uuid
from decimal import Decimal

from cfd_dbproc.commands import apply_once
from cfd_dbproc.db import Database
from cfd_dbproc.db.tables import Accounts, LedgerEntries, Users
from cfd_dbproc.directory import DirectoryKeeper
from cfd_dbproc.user_rows import CREDENTIALS_COLUMNS, USER_COLUMNS, credentials_from_row, user_from_row
from shared import operations as ops
from shared.bus.rpc import handles
from shared.clock import now_ms
from shared.contracts.bus import (
    CreateUser,
    Credentials,
    CredentialsQuery,
    PasswordRehashed,
    RehashPassword,
    UserExists,
    UserExistsQuery,
    UserQuery,
)
from shared.contracts.rest import User
from shared.errors import Conflict, NotFound
from shared.ids import Ids
from shared.trading import CURRENCY


class UserHandlers:
    def __init__(self, db: Database, demo_deposit: Decimal, directory: DirectoryKeeper, ids: Ids | None = None) -> None:
        self.db = db
        self.demo_deposit = demo_deposit
        self.directory = directory
        self.ids = ids or Ids()

    @handles(ops.USER_EXISTS)
    async def exists(self, query: UserExistsQuery) -> UserExists:
        return UserExists(exists=await Users.exists().where(Users.email == query.email.lower()).run())

    @handles(ops.USER_CREATE)
    async def create(self, command: CreateUser, command_id: str) -> User:
        email = command.email.lower()

        async def apply() -> User:
            if await Users.exists().where(Users.email == email).run():
                raise Conflict("An account with this email already exists; sign in instead.", code="email_taken")
            user_id = self.ids.uuid()
            created = now_ms()
            await Users.insert(
                Users(id=user_id, email=email, name=command.name, password_hash=command.password_hash,
                      disabled=False, created_at=created)
            ).run()
            await Accounts.insert(
                Accounts(id=self.ids.uuid(), user_id=user_id, currency=CURRENCY, balance=self.demo_deposit,
                         created_at=created)
            ).run()
            await LedgerEntries.insert(
                LedgerEntries(id=self.ids.uuid(), user_id=user_id, kind="deposit", amount=self.demo_deposit,
                              balance_after=self.demo_deposit, reference="demo", command_id=command_id,
                              created_at=created)
            ).run()
            return User(id=str(user_id), email=email, name=command.name, created_at=created)

        user = await apply_once(self.db, ops.USER_CREATE, command_id, email, apply)
        # Before the reply: the new user can sign in as soon as the server hears back.
        await self.directory.changed(uuid.UUID(user.id))
        return user

    @handles(ops.USER_CREDENTIALS)
    async def credentials(self, query: CredentialsQuery) -> Credentials:
        row = await Users.select(*CREDENTIALS_COLUMNS).where(Users.email == query.email.lower()).first().run()
        return Credentials() if row is None else credentials_from_row(row)

    @handles(ops.USER_REHASH)
    async def rehash(self, command: RehashPassword, command_id: str) -> PasswordRehashed:
        """Replace a password hash by a current one of the same password (the server made it at sign-in),
        unless the hash changed meanwhile: then the newer change stands. Applying it twice is harmless."""
        user_id = _user_id(command.user_id)
        async with self.db.transaction():
            await Users.update({Users.password_hash: command.new_hash}).where(
                (Users.id == user_id) & (Users.password_hash == command.old_hash)).run()
            row = await Users.select(Users.password_hash).where(Users.id == user_id).first().run()
        replaced = row is not None and row["password_hash"] == command.new_hash
        if replaced:
            await self.directory.changed(user_id)  # sign-in reads the new hash from the directory at once
        return PasswordRehashed(replaced=replaced)

    @handles(ops.USER_PROFILE)
    async def profile(self, query: UserQuery) -> User:
        row = await Users.select(*USER_COLUMNS).where(Users.id == _user_id(query.user_id)).first().run()
        if row is None:
            raise NotFound("No such user.", code="user_not_found")
        return user_from_row(row)


def _user_id(value: str) -> uuid.UUID:
    try:
        return uuid.UUID(value)
    except ValueError:
        raise NotFound("No such user.", code="user_not_found") from None
