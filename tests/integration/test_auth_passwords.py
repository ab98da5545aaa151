"""Passwords through the API: no stand-in for a password, old hashes upgraded at sign-in, guessable ones
refused."""

from __future__ import annotations

import uuid

from auth_helpers import LONG_PASSWORD as LONG
from auth_helpers import assert_error, sha256_stand_in, v1_hash
from helpers import sign_up

from cfd_dbproc.db.tables import Users
from shared.credentials import CredentialsDirectory


async def _stored_hash(email: str) -> str:
    return (await Users.select(Users.password_hash).where(Users.email == email).first().run())["password_hash"]


async def _set_hash(platform, email: str, hashed: str) -> None:
    """What an account made before the upgrade looks like: its row, and the directory entry made from it."""
    row = await Users.select(Users.id).where(Users.email == email).first().run()
    await Users.update({Users.password_hash: hashed}).where(Users.email == email).run()
    await platform.dbproc.directory.changed(uuid.UUID(str(row["id"])))


async def test_the_base64_sha256_of_a_long_password_does_not_sign_in(api, mailbox, email):
    await sign_up(api, mailbox, email, password=LONG)
    stand_in = await api.post("/auth/signin", json={"email": email, "password": sha256_stand_in(LONG)})
    assert_error(stand_in, 401, "invalid_credentials")
    assert (await api.post("/auth/signin", json={"email": email, "password": LONG})).status_code == 200


async def test_an_old_format_hash_signs_in_and_is_upgraded(platform, api, mailbox, email):
    await sign_up(api, mailbox, email, password="correct horse")
    await _set_hash(platform, email, v1_hash("correct horse", platform.settings.auth.bcrypt_rounds))
    assert not (await _stored_hash(email)).startswith("v2:")

    assert (await api.post("/auth/signin", json={"email": email, "password": "correct horse"})).status_code == 200
    upgraded = await _stored_hash(email)
    assert upgraded.startswith("v2:$2b$")
    found, _ = await CredentialsDirectory(platform.cache, platform.settings.bus.topic_prefix).lookup(email)
    assert found is None or found.password_hash == upgraded  # the directory follows at once
    assert (await api.post("/auth/signin", json={"email": email, "password": "correct horse"})).status_code == 200
    assert_error(await api.post("/auth/signin", json={"email": email, "password": "correct horses"}), 401)
    assert await _stored_hash(email) == upgraded


async def test_a_sha256_stand_in_never_takes_over_an_old_long_password_hash(platform, api, mailbox, email):
    await sign_up(api, mailbox, email, password=LONG)
    old = v1_hash(LONG, platform.settings.auth.bcrypt_rounds)
    await _set_hash(platform, email, old)
    # the old format's flaw answers once more, but the stand-in does not become the password
    assert (await api.post("/auth/signin", json={"email": email, "password": sha256_stand_in(LONG)})).status_code == 200
    assert await _stored_hash(email) == old
    # the owner's sign-in upgrades the hash, and the stand-in stops working
    assert (await api.post("/auth/signin", json={"email": email, "password": LONG})).status_code == 200
    assert (await _stored_hash(email)).startswith("v2:")
    assert_error(await api.post("/auth/signin", json={"email": email, "password": sha256_stand_in(LONG)}), 401)


async def test_common_passwords_are_refused_with_advice_and_the_code_still_works(api, mailbox, email):
    assert (await api.post("/auth/signup", json={"email": email})).status_code == 202
    otp = await mailbox.code_for(email)
    for weak in ("password123", "qwertyuiop", "iloveyou2", "trader-" + email.split("@")[0]):
        body = {"email": email, "otp": otp, "password": weak, "name": "Ada Trader"}
        error = assert_error(await api.post("/auth/verify", json=body), 400, "weak_password")
        assert error["details"]["field"] == "password" and error["details"]["suggestions"]
        assert error["message"].startswith("The password is too easy to guess.")
    body = {"email": email, "otp": otp, "password": "correct horse", "name": "Ada Trader"}
    assert (await api.post("/auth/verify", json=body)).status_code == 201
