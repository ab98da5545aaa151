"""User requests: existence, creation with the demo deposit, credentials and profile lookups, and the
replacement of an outdated password hash."""

from __future__ import annotations

import uuid
from decimal import Decimal
from typing import TYPE_CHECKING

import msgspec

from cfd_dbproc.commands import apply_once, now_ms
from shared.contracts import (
    BusRequest,
    CreateUser,
    Credentials,
    CredentialsQuery,
    PasswordRehashed,
    RehashPassword,
    User,
    UserExists,
    UserExistsQuery,
    UserQuery,
    encode,
)
from shared.db import Database
from shared.db.tables import Accounts, LedgerEntries, Users
from shared.errors import Conflict, NotFound

if TYPE_CHECKING:
    from cfd_dbproc.directory import DirectoryKeeper


def user_from_row(row: dict) -> User:
    return User(
        id=str(row["id"]),
        email=row["email"],
        name=row["name"],
        status="disabled" if row["disabled"] else "active",
        created_at=row["created_at"],
    )


def credentials_from_row(row: dict) -> Credentials:
    return Credentials(user=user_from_row(row), password_hash=row["password_hash"])


_USER_COLUMNS = (Users.id, Users.email, Users.name, Users.disabled, Users.created_at)
CREDENTIALS_COLUMNS = (*_USER_COLUMNS, Users.password_hash)


class UserHandlers:
    def __init__(self, db: Database, demo_deposit: Decimal, directory: DirectoryKeeper) -> None:
        self.db = db
        self.demo_deposit = demo_deposit
        self.directory = directory

    async def exists(self, request: BusRequest) -> bytes:
        query = msgspec.json.decode(request.body, type=UserExistsQuery)
        found = await Users.exists().where(Users.email == query.email.lower()).run()
        return encode(UserExists(exists=found))

    async def create(self, request: BusRequest) -> bytes:
        command = msgspec.json.decode(request.body, type=CreateUser)
        email = command.email.lower()

        async def apply() -> bytes:
            if await Users.exists().where(Users.email == email).run():
                raise Conflict("An account with this email already exists; sign in instead.", code="email_taken")
            user_id = uuid.uuid4()
            created = now_ms()
            await Users.insert(
                Users(id=user_id, email=email, name=command.name, password_hash=command.password_hash,
                      disabled=False, created_at=created)
            ).run()
            await Accounts.insert(
                Accounts(id=uuid.uuid4(), user_id=user_id, currency="USD", balance=self.demo_deposit,
                         created_at=created)
            ).run()
            await LedgerEntries.insert(
                LedgerEntries(id=uuid.uuid4(), user_id=user_id, kind="deposit", amount=self.demo_deposit,
                              balance_after=self.demo_deposit, reference="demo", command_id=request.command_id,
                              created_at=created)
            ).run()
            user = User(id=str(user_id), email=email, name=command.name, created_at=created)
            return encode(user)

        created = await apply_once(self.db, request, email, apply)
        # Before the reply: the new user can sign in as soon as the server hears back.
        await self.directory.changed(uuid.UUID(msgspec.json.decode(created, type=User).id))
        return created

    async def credentials(self, request: BusRequest) -> bytes:
        query = msgspec.json.decode(request.body, type=CredentialsQuery)
        row = await Users.select(*CREDENTIALS_COLUMNS).where(Users.email == query.email.lower()).first().run()
        return encode(Credentials() if row is None else credentials_from_row(row))

    async def rehash(self, request: BusRequest) -> bytes:
        """Replace a password hash by a current one of the same password (the server made it at sign-in),
        unless the hash changed meanwhile: then the newer change stands."""
        command = msgspec.json.decode(request.body, type=RehashPassword)
        try:
            user_id = uuid.UUID(command.user_id)
        except ValueError:
            raise NotFound("No such user.", code="user_not_found") from None
        async with self.db.transaction():
            await Users.update({Users.password_hash: command.new_hash}).where(
                (Users.id == user_id) & (Users.password_hash == command.old_hash)).run()
            row = await Users.select(Users.password_hash).where(Users.id == user_id).first().run()
        replaced = row is not None and row["password_hash"] == command.new_hash
        if replaced:
            await self.directory.changed(user_id)  # sign-in reads the new hash from the directory at once
        return encode(PasswordRehashed(replaced=replaced))

    async def profile(self, request: BusRequest) -> bytes:
        query = msgspec.json.decode(request.body, type=UserQuery)
        try:
            user_id = uuid.UUID(query.user_id)
        except ValueError:
            raise NotFound("No such user.", code="user_not_found") from None
        row = await Users.select(*_USER_COLUMNS).where(Users.id == user_id).first().run()
        if row is None:
            raise NotFound("No such user.", code="user_not_found")
        return encode(user_from_row(row))
