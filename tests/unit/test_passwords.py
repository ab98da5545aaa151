"""Password hashes: version 2 (HMAC-SHA256 pre-hash, then bcrypt), and version 1 hashes still checked."""

from __future__ import annotations

import pytest
from auth_helpers import LONG_PASSWORD as LONG
from auth_helpers import sha256_stand_in, v1_hash

from cfd_server.auth.passwords import HASH_PREFIX, DummyHash, check_password, hash_password, needs_rehash


async def test_new_hashes_are_version_2_and_check_the_password():
    hashed = await hash_password("correct horse", 4)
    assert hashed.startswith(HASH_PREFIX + "$2b$04$")
    assert await check_password("correct horse", hashed)
    assert not await check_password("correct horsE", hashed)


@pytest.mark.parametrize("password", [LONG, "correct horse"])
async def test_the_base64_sha256_of_a_password_does_not_stand_in_for_it(password):
    hashed = await hash_password(password, 4)
    assert await check_password(password, hashed)
    assert not await check_password(sha256_stand_in(password), hashed)


async def test_long_passwords_are_not_truncated():
    hashed = await hash_password(LONG + "1", 4)
    assert not await check_password(LONG + "2", hashed)


@pytest.mark.parametrize("password", ["correct horse", LONG])
async def test_version_1_hashes_still_check_and_ask_to_be_replaced(password):
    hashed = v1_hash(password)
    assert await check_password(password, hashed)
    assert not await check_password("something else entirely", hashed)
    assert needs_rehash(password, hashed, 4)


async def test_a_version_1_hash_matched_by_a_sha256_stand_in_is_not_replaced():
    """Replacing it would make the stand-in the password and lock the owner (who knows LONG) out."""
    hashed = v1_hash(LONG)
    assert await check_password(sha256_stand_in(LONG), hashed)  # version 1's flaw, until the owner signs in
    assert not needs_rehash(sha256_stand_in(LONG), hashed, 4)


async def test_a_version_2_hash_is_replaced_only_for_another_cost():
    hashed = await hash_password("correct horse", 4)
    assert not needs_rehash("correct horse", hashed, 4)
    assert needs_rehash("correct horse", hashed, 5)


async def test_broken_hashes_do_not_match():
    assert not await check_password("correct horse", "not a hash")
    assert not await check_password("correct horse", HASH_PREFIX + "not a hash")


async def test_the_dummy_hash_is_version_2_like_real_ones():
    assert DummyHash(4).value.startswith(HASH_PREFIX + "$2b$04$")
