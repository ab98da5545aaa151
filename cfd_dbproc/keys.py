"""API keys: created, listed and revoked for their owner, and looked up by id for a server checking a bearer
key. The secret never reaches the dbproc: the server sends its SHA-256."""

from __future__ import annotations

import uuid

from cfd_dbproc.commands import apply_once
from cfd_dbproc.db import Database
from cfd_dbproc.db.tables import ApiKeys, Users
from cfd_dbproc.user_rows import USER_COLUMNS, user_from_row
from shared import operations as ops
from shared.bus.rpc import handles
from shared.clock import now_ms
from shared.contracts.bus import CreateKeyCommand, KeyQuery, KeyRecord, KeysQuery, RevokeKeyCommand
from shared.contracts.rest import ApiKey
from shared.errors import Conflict, NotFound, Rejected

MAX_KEYS = 20
"""Live API keys one account may hold."""


def key_from_row(row: dict) -> ApiKey:
    return ApiKey(id=row["id"], name=row["name"], scopes=row["scopes"].split(","), created_at=row["created_at"])


def _user_id(value: str) -> uuid.UUID:
    try:
        return uuid.UUID(value)
    except ValueError:
        raise NotFound("No such user.", code="user_not_found") from None


class KeyHandlers:
    def __init__(self, db: Database) -> None:
        self.db = db

    @handles(ops.KEY_CREATE)
    async def create(self, command: CreateKeyCommand, command_id: str) -> ApiKey:
        user_id = _user_id(command.user_id)

        async def create() -> ApiKey:
            if not await Users.exists().where(Users.id == user_id).run():
                raise NotFound("No such user.", code="user_not_found")
            live = await ApiKeys.count().where((ApiKeys.user_id == user_id) & ApiKeys.revoked_at.is_null()).run()
            if live >= MAX_KEYS:
                raise Rejected(f"An account may have {MAX_KEYS} API keys; revoke one first.", code="too_many_keys",
                               details={"limit": MAX_KEYS})
            at = now_ms()
            await ApiKeys.insert(ApiKeys(id=command.key_id, user_id=user_id, name=command.name,
                                         scopes=",".join(command.scopes), secret_hash=command.secret_hash,
                                         created_at=at)).run()
            return ApiKey(id=command.key_id, name=command.name, scopes=command.scopes, created_at=at)

        return await apply_once(self.db, ops.KEY_CREATE, command_id, command.user_id, create)

    @handles(ops.KEYS)
    async def keys(self, query: KeysQuery) -> list[ApiKey]:
        rows = await ApiKeys.select().where((ApiKeys.user_id == _user_id(query.user_id))
                                            & ApiKeys.revoked_at.is_null()).order_by(ApiKeys.created_at).run()
        return [key_from_row(r) for r in rows]

    @handles(ops.KEY_REVOKE)
    async def revoke(self, command: RevokeKeyCommand, command_id: str) -> ApiKey:
        user_id = _user_id(command.user_id)

        async def revoke() -> ApiKey:
            row = await ApiKeys.select().where((ApiKeys.id == command.key_id) & (ApiKeys.user_id == user_id)).first(
                ).run()
            if row is None:  # another user's key is "not found", never "forbidden"
                raise NotFound("No such API key.", code="key_not_found")
            if row["revoked_at"] is not None:
                raise Conflict("This API key is already revoked.", code="key_revoked")
            await ApiKeys.update({ApiKeys.revoked_at: now_ms()}).where(ApiKeys.id == command.key_id).run()
            return key_from_row(row)

        return await apply_once(self.db, ops.KEY_REVOKE, command_id, command.user_id, revoke)

    @handles(ops.KEY_LOOKUP)
    async def lookup(self, query: KeyQuery) -> KeyRecord:
        row = await ApiKeys.select().where(ApiKeys.id == query.key_id).first().run()
        if row is None or row["revoked_at"] is not None:
            return KeyRecord(key_id=query.key_id, revoked=True)
        user = await Users.select(*USER_COLUMNS).where(Users.id == row["user_id"]).first().run()
        if user is None:
            return KeyRecord(key_id=query.key_id, revoked=True)
        return KeyRecord(key_id=query.key_id, user=user_from_row(user), scopes=row["scopes"].split(","),
                         secret_hash=row["secret_hash"])
