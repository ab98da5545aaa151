"""Bad input to every auth endpoint: the documented 4xx, the error shape, and nothing stored or sent."""

from __future__ import annotations

import pytest
from auth_helpers import assert_error
from helpers import sign_up

BAD_SIGNUP_BODIES = [
    ({}, "validation_error"),
    ({"email": 5}, "validation_error"),
    ({"email": None}, "validation_error"),
    ({"email": ["a@b.co"]}, "validation_error"),
    ({"email": "not-an-email"}, "invalid_email"),
    ({"email": "a b@example.com"}, "invalid_email"),
    ({"email": "x@localhost"}, "invalid_email"),
    ({"email": "a@b.co", "admin": True}, "validation_error"),
]


@pytest.mark.parametrize(("body", "code"), BAD_SIGNUP_BODIES)
async def test_signup_rejects_bad_bodies(api, mailbox, body, code):
    assert_error(await api.post("/auth/signup", json=body), 400, code)


@pytest.mark.parametrize("raw", [b"{", b"not json", b"[]", b"\xff\xfe", b'"a@b.co"'])
async def test_malformed_json_is_a_400(api, raw):
    response = await api.post("/auth/signup", content=raw, headers={"content-type": "application/json"})
    assert_error(response, 400)


async def test_huge_body_is_refused(api, email):
    response = await api.post("/auth/signup", json={"email": email, "pad": "x" * 200_000})
    assert_error(response, 413, "payload_too_large")


async def test_bad_signup_sends_no_mail(api, mailbox):
    await api.post("/auth/signup", json={"email": "nobody@@example.com"})
    assert mailbox.messages("nobody@@example.com") == []


@pytest.mark.parametrize(
    ("changes", "code"),
    [
        ({"password": "short"}, "weak_password"),
        ({"password": "x" * 129}, "weak_password"),
        ({"password": "SELF"}, "weak_password"),
        ({"otp": "12345"}, "invalid_code"),
        ({"otp": "abcdef"}, "invalid_code"),
        ({"name": "   "}, "invalid_name"),
        ({"name": "x" * 101}, "invalid_name"),
        ({"email": "bad"}, "invalid_email"),
        ({"password": 12345678}, "validation_error"),
    ],
)
async def test_verify_rejects_bad_fields_without_using_the_code(api, mailbox, email, changes, code):
    assert (await api.post("/auth/signup", json={"email": email})).status_code == 202
    otp = await mailbox.code_for(email)
    body = {"email": email, "otp": otp, "password": "correct horse", "name": "Ada", **changes}
    if body["password"] == "SELF":
        body["password"] = email
    assert_error(await api.post("/auth/verify", json=body), 400, code)
    # nothing stored: the account does not exist, and the code still works
    assert (await api.post("/auth/signin", json={"email": email, "password": "correct horse"})).status_code == 401
    good = await api.post("/auth/verify", json={"email": email, "otp": otp, "password": "correct horse",
                                                "name": "Ada"})
    assert good.status_code == 201


async def test_verify_without_a_code_requested(api, email):
    body = {"email": email, "otp": "123456", "password": "correct horse", "name": "Ada"}
    assert_error(await api.post("/auth/verify", json=body), 400, "invalid_code")


async def test_verify_missing_fields(api, email):
    assert_error(await api.post("/auth/verify", json={"email": email, "otp": "123456"}), 400, "validation_error")


async def test_signin_bad_bodies(api):
    assert_error(await api.post("/auth/signin", json={"email": "a@b.co"}), 400, "validation_error")
    assert_error(await api.post("/auth/signin", json={"email": "a@b.co", "password": 1}), 400, "validation_error")
    assert_error(await api.post("/auth/signin", json={"email": "nobody", "password": "whatever1"}), 401,
                 "invalid_credentials")


@pytest.mark.parametrize("header", ["Bearer", "Bearer not.a.jwt", "Basic abc", "Bearer " + "a" * 5000])
async def test_bad_tokens_are_401(api, header):
    assert_error(await api.get("/auth/me", headers={"Authorization": header}), 401)


async def test_forged_token_is_401(api, mailbox, email):
    import jwt

    user = (await sign_up(api, mailbox, email))["user"]
    forged = jwt.encode({"sub": user["id"], "jti": "x", "exp": 9_999_999_999}, "not-the-secret-" * 3,
                        algorithm="HS256")
    assert_error(await api.get("/auth/me", headers={"Authorization": f"Bearer {forged}"}), 401, "invalid_token")


async def test_logout_needs_a_session(api):
    assert_error(await api.post("/auth/logout"), 401, "not_authenticated")


async def test_unknown_route_and_method(api):
    assert_error(await api.get("/nope"), 404, "not_found")
    assert_error(await api.get("/auth/signup"), 405, "method_not_allowed")


async def test_signup_and_signin_answers_do_not_reveal_registration(api, mailbox, email):
    """Enumeration: registered and unregistered emails get byte-identical answers."""
    await sign_up(api, mailbox, email, password="correct horse")
    stranger = "stranger-" + email
    registered = await api.post("/auth/signup", json={"email": email})
    unregistered = await api.post("/auth/signup", json={"email": stranger})
    assert registered.status_code == unregistered.status_code == 202
    assert registered.content == unregistered.content

    wrong_password = await api.post("/auth/signin", json={"email": email, "password": "wrong password"})
    unknown_email = await api.post("/auth/signin", json={"email": stranger, "password": "wrong password"})
    assert wrong_password.status_code == unknown_email.status_code == 401
    assert wrong_password.content == unknown_email.content


async def test_unknown_email_signin_costs_a_bcrypt_check(api, mailbox, email):
    """Sign-in for an unknown email does the same password work as a wrong password (no timing oracle)."""
    import time

    await sign_up(api, mailbox, email, password="correct horse")

    async def median_ms(who: str) -> float:
        times = []
        for _ in range(5):
            started = time.perf_counter()
            await api.post("/auth/signin", json={"email": who, "password": "wrong password"})
            times.append(time.perf_counter() - started)
        return sorted(times)[2] * 1000

    known = await median_ms(email)
    unknown = await median_ms("ghost-" + email)
    assert unknown > 0.6 * known and known > 0.6 * unknown, (known, unknown)


async def _two_pending_sign_ups(api, mailbox, email: str) -> tuple[str, str, str]:
    """A registered address and a new one, each just signed up for; returns both and a code valid for neither."""
    await sign_up(api, mailbox, email, password="correct horse")
    stranger = "stranger-" + email
    assert (await api.post("/auth/signup", json={"email": email})).status_code == 202
    assert (await api.post("/auth/signup", json={"email": stranger})).status_code == 202
    code = await mailbox.code_for(stranger)
    return email, stranger, f"{(int(code) + 1) % 1_000_000:06d}"


async def test_verify_answers_do_not_reveal_registration(api, mailbox, email):
    """After a sign-up, a wrong code gets the same answer, try by try, for a registered and a new address."""
    registered, stranger, wrong = await _two_pending_sign_ups(api, mailbox, email)
    body = {"otp": wrong, "password": "a long passphrase", "name": "Ada"}
    for left in (4, 3, 2, 1, 0, 0):
        known = await api.post("/auth/verify", json={**body, "email": registered})
        unknown = await api.post("/auth/verify", json={**body, "email": stranger})
        assert known.status_code == unknown.status_code == 400
        assert known.content == unknown.content
        assert known.json()["error"]["details"] == {"field": "otp", "attempts_left": left}
        tries = "1 try" if left == 1 else f"{left} tries"
        if left:
            assert known.json()["error"]["message"] == f"That code is wrong; {tries} left."


async def test_verify_takes_as_long_for_a_registered_as_for_a_new_address(api, mailbox, email):
    import time

    pairs = [await _two_pending_sign_ups(api, mailbox, f"{n}-{email}") for n in range(3)]
    known: list[float] = []
    unknown: list[float] = []
    for _ in range(4):
        for registered, stranger, wrong in pairs:
            for address, times in ((registered, known), (stranger, unknown)):
                started = time.perf_counter()
                await api.post("/auth/verify", json={"email": address, "otp": wrong, "password": "a long passphrase",
                                                     "name": "Ada"})
                times.append(time.perf_counter() - started)
    known_ms, unknown_ms = sorted(known)[6] * 1000, sorted(unknown)[6] * 1000
    assert unknown_ms > 0.6 * known_ms and known_ms > 0.6 * unknown_ms, (known_ms, unknown_ms)
