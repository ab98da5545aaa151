"""The credentials directory: sign-in reads credentials from the cache, whole or not at all."""

from __future__ import annotations

import asyncio

from helpers import sign_up

from cfd_dbproc.service import DbProc
from shared.cache.memory import MemoryCache
from shared.contracts.bus import Credentials
from shared.contracts.rest import User
from shared.credentials import CredentialsDirectory

PASSWORD = "correct horse battery"


async def _until(predicate, timeout: float = 15.0) -> None:
    end = asyncio.get_running_loop().time() + timeout
    while not await predicate():
        assert asyncio.get_running_loop().time() < end, "timed out"
        await asyncio.sleep(0.05)


def _directory(platform) -> CredentialsDirectory:
    return CredentialsDirectory(platform.cache, platform.settings.bus.topic_prefix)


async def test_sign_in_answers_while_the_dbproc_is_down(platform, api, mailbox, email):
    await sign_up(api, mailbox, email, PASSWORD)
    await _until(_directory(platform).is_complete)
    await platform.dbproc.stop()
    try:
        right = await api.post("/auth/signin", json={"email": email, "password": PASSWORD})
        assert right.status_code == 200, right.text
        assert right.json()["user"]["email"] == email
        wrong = await api.post("/auth/signin", json={"email": email, "password": "not the password"})
        unknown = await api.post("/auth/signin", json={"email": "nobody-" + email, "password": PASSWORD})
        assert wrong.status_code == unknown.status_code == 401
        assert wrong.json() == unknown.json()
    finally:
        platform.dbproc = DbProc(platform.settings, platform.bus, platform.db, platform.cache)
        await platform.dbproc.start()


async def test_a_cache_that_lost_the_directory_falls_back_to_the_dbproc_and_is_refilled(platform, api, mailbox,
                                                                                       email):
    directory = _directory(platform)
    await sign_up(api, mailbox, email, PASSWORD)
    await _until(directory.is_complete)
    # what a flushed or restarted cache looks like: no mark, no entries
    await platform.cache.delete(directory.complete_key, directory.key(email))
    right = await api.post("/auth/signin", json={"email": email, "password": PASSWORD})
    assert right.status_code == 200, right.text
    wrong = await api.post("/auth/signin", json={"email": email, "password": "not the password"})
    assert wrong.status_code == 401

    await _until(directory.is_complete)
    found, _ = await directory.lookup(email)
    assert found is not None and found.user is not None and found.user.email == email


async def test_a_new_account_is_in_the_directory_before_sign_up_answers(platform, api, mailbox, email):
    directory = _directory(platform)
    await _until(directory.is_complete)
    body = await sign_up(api, mailbox, email, PASSWORD)
    found, _ = await directory.lookup(email)
    assert found is not None and found.user is not None and found.user.id == body["user"]["id"]
    assert (await api.post("/auth/signin", json={"email": email, "password": PASSWORD})).status_code == 200


async def test_filling_never_overwrites_a_newer_entry():
    directory = CredentialsDirectory(MemoryCache(), "t.")
    older = Credentials(user=User(id="1", email="a@example.com", name="A", created_at=1), password_hash="old")
    newer = Credentials(user=User(id="1", email="a@example.com", name="A", status="disabled", created_at=1),
                        password_hash="old")
    assert (await directory.lookup("a@example.com"))[0] is None  # incomplete: not to be trusted
    await directory.put(newer)
    assert await directory.fill([older]) == 0
    await directory.mark_complete()
    found, _ = await directory.lookup("a@example.com")
    assert found == newer
    unknown, _ = await directory.lookup("b@example.com")
    assert unknown == Credentials()
