"""The users table's rows as the contracts see them (one mapping, for the handlers and the directory)."""

from __future__ import annotations

from cfd_dbproc.db.tables import Users
from shared.contracts.bus import Credentials
from shared.contracts.rest import User

USER_COLUMNS = (Users.id, Users.email, Users.name, Users.disabled, Users.created_at)
CREDENTIALS_COLUMNS = (*USER_COLUMNS, Users.password_hash)


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
