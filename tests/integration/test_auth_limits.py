"""Attempt limits: exact under concurrent bursts, per client address, per email per day, and no lock-out of
an owner at an address they signed in from. 429 answers carry Retry-After."""

from __future__ import annotations

import asyncio
import contextlib
import random
import socket
import uuid
from collections.abc import AsyncIterator
from typing import Any

import uvicorn
from auth_helpers import assert_error, client_from, loopback_address
from helpers import sign_up

from cfd_server.app import create_app
from shared.settings import RateLimit

PASSWORD = "correct horse battery"
REFUSED_CODE = "Too many wrong codes; ask for a new one."  # a guess refused without being checked


def assert_throttled(response, code: str, at_least: int) -> dict:
    """A 429 with `code`, whose Retry-After header and details agree and are at least `at_least` seconds."""
    error = assert_error(response, 429, code)
    assert int(response.headers["retry-after"]) == error["details"]["retry_after"] >= at_least, error
    return error


def other(code: str) -> str:
    return f"{(int(code) + 1) % 1_000_000:06d}"


class _Server(uvicorn.Server):
    @contextlib.contextmanager
    def capture_signals(self):  # the test process keeps its own signal handling
        yield


@contextlib.asynccontextmanager
async def server(platform, make_settings, **settings: Any) -> AsyncIterator[str]:
    """One more API server on the session's bus, cache and dbproc, with its own settings; yields its URL."""
    app = create_app(make_settings(instance_id=f"limits-{uuid.uuid4().hex[:8]}", **settings), bus=platform.bus,
                     cache=platform.cache)
    sock = socket.create_server(("127.0.0.1", 0))
    running = _Server(uvicorn.Config(app, lifespan="on", log_config=None, access_log=False, proxy_headers=False))
    task = asyncio.get_running_loop().create_task(running.serve(sockets=[sock]))
    while not running.started:
        assert not task.done(), "the server did not start"
        await asyncio.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{sock.getsockname()[1]}/api/v1"
    finally:
        running.should_exit = True
        await task


# --- bursts on the session's platform ---------------------------------------------------------------------


async def test_a_burst_of_codes_gets_exactly_five_checks_whatever_it_holds(api, mailbox, email):
    """Wrong and right codes at once: five are checked (by their answers), the rest refused unchecked."""
    assert (await api.post("/auth/signup", json={"email": email})).status_code == 202
    code = await mailbox.code_for(email)
    body = {"email": email, "password": PASSWORD, "name": "Ada"}
    answers = await asyncio.gather(*(api.post("/auth/verify", json={**body, "otp": otp})
                                     for otp in [other(code), code] * 30))
    refused = [a for a in answers if a.status_code == 400 and a.json()["error"]["message"] == REFUSED_CODE]
    assert all(assert_error(a, 400, "code_burned")["details"]["attempts_left"] == 0 for a in refused)
    assert len(answers) - len(refused) == 5, [a.text for a in answers if a not in refused]
    assert [a.status_code for a in answers].count(201) <= 1


async def test_the_right_code_after_a_burst_of_five_wrong_ones_fails(api, mailbox, email):
    assert (await api.post("/auth/signup", json={"email": email})).status_code == 202
    code = await mailbox.code_for(email)
    body = {"email": email, "password": PASSWORD, "name": "Ada", "otp": other(code)}
    answers = await asyncio.gather(*(api.post("/auth/verify", json=body) for _ in range(5)))
    assert sorted(a.json()["error"]["details"]["attempts_left"] for a in answers) == [0, 1, 2, 3, 4]
    assert_error(await api.post("/auth/verify", json={**body, "otp": code}), 400, "code_burned")


async def test_a_burst_of_wrong_passwords_gets_exactly_ten_checks(api, mailbox, email):
    await sign_up(api, mailbox, email, PASSWORD)
    passwords = ["not the password"] * 20 + [PASSWORD] + ["not the password"] * 20
    answers = await asyncio.gather(*(api.post("/auth/signin", json={"email": email, "password": p})
                                     for p in passwords))
    statuses = [a.status_code for a in answers]
    assert statuses.count(401) + statuses.count(200) == 10, statuses
    for answer in answers:
        if answer.status_code == 429:
            assert_throttled(answer, "too_many_attempts", 800)

    # a success gives back its own try only: a second burst finds the budget as the failures left it
    again = await asyncio.gather(*(api.post("/auth/signin", json={"email": email, "password": "not the password"})
                                   for _ in range(20)))
    assert [a.status_code for a in again].count(401) == statuses.count(200)
    assert_throttled(await api.post("/auth/signin", json={"email": email, "password": PASSWORD}),
                     "too_many_attempts", 800)


async def test_a_right_password_does_not_reset_the_failures_before_it(api, mailbox, email):
    await sign_up(api, mailbox, email, PASSWORD)
    for _ in range(9):
        assert_error(await api.post("/auth/signin", json={"email": email, "password": "not the password"}), 401)
    assert (await api.post("/auth/signin", json={"email": email, "password": PASSWORD})).status_code == 200
    after = [(await api.post("/auth/signin", json={"email": email, "password": "not the password"})).status_code
             for _ in range(3)]
    assert after == [401, 429, 429]


# --- servers with limits of their own, and clients at addresses of their own ------------------------------


async def test_a_new_sign_up_does_not_reset_the_days_code_guesses(platform, make_settings, mailbox, email):
    limits = {"signup_limit_per_email": RateLimit(1, 1), "code_limit_per_email": RateLimit(7, 86400)}
    async with server(platform, make_settings, auth=limits) as url, client_from(url) as api:
        assert (await api.post("/auth/signup", json={"email": email})).status_code == 202
        first = await mailbox.code_for(email)
        body = {"email": email, "password": PASSWORD, "name": "Ada", "otp": other(first)}
        for _ in range(5):
            assert_error(await api.post("/auth/verify", json=body), 400)
        await asyncio.sleep(1.1)
        assert (await api.post("/auth/signup", json={"email": email})).status_code == 202
        second = await mailbox.code_for(email, 2)
        body["otp"] = other(second)
        for left in (4, 3):  # a new code has 5 tries of its own, but the day has only 2 left
            assert assert_error(await api.post("/auth/verify", json=body), 400)["details"]["attempts_left"] == left
        error = assert_throttled(await api.post("/auth/verify", json={**body, "otp": second}), "too_many_attempts",
                                 86000)
        assert "for this email" in error["message"]


async def test_sign_up_verify_and_sign_in_are_limited_per_client_address(platform, make_settings, mailbox):
    emails = [f"limits-{uuid.uuid4().hex[:10]}@example.com" for _ in range(6)]
    async with server(platform, make_settings, auth={"signup_limit_per_ip": RateLimit(3, 3600),
                                                     "verify_limit_per_ip": RateLimit(4, 3600),
                                                     "signin_limit_per_ip": RateLimit(5, 3600)}) as url:
        async with client_from(url) as here, client_from(url) as elsewhere:
            for address in emails[:3]:
                assert (await here.post("/auth/signup", json={"email": address})).status_code == 202
            error = assert_throttled(await here.post("/auth/signup", json={"email": emails[3]}), "too_many_requests",
                                     3500)
            assert "from your address" in error["message"]
            assert (await elsewhere.post("/auth/signup", json={"email": emails[3]})).status_code == 202

            # wrong codes, spread over several emails, count for the address that sends them
            codes = {address: await mailbox.code_for(address) for address in emails[:4]}
            for address in emails[:4]:
                body = {"email": address, "otp": other(codes[address]), "password": PASSWORD, "name": "Ada"}
                assert assert_error(await here.post("/auth/verify", json=body), 400)["code"] == "invalid_code"
            body = {"email": emails[0], "otp": codes[emails[0]], "password": PASSWORD, "name": "Ada"}
            assert_throttled(await here.post("/auth/verify", json=body), "too_many_attempts", 3500)
            assert (await elsewhere.post("/auth/verify", json=body)).status_code == 201

            # failed sign-ins, spread over several emails, count for the address too
            for address in emails:
                wrong = {"email": address, "password": "not the password"}
                assert (await here.post("/auth/signin", json=wrong)).status_code == (401 if address != emails[5]
                                                                                     else 429)
            throttled = await here.post("/auth/signin", json={"email": emails[0], "password": PASSWORD})
            assert "from your address" in assert_throttled(throttled, "too_many_attempts", 3500)["message"]
            assert (await elsewhere.post("/auth/signin", json={"email": emails[0], "password": PASSWORD})).status_code \
                == 200


async def test_strangers_guessing_never_lock_the_owner_out_of_a_familiar_address(platform, make_settings, mailbox,
                                                                               email):
    async with server(platform, make_settings) as url, client_from(url) as owner, \
            client_from(url) as attacker, client_from(url) as another_attacker, client_from(url) as traveller:
        await sign_up(owner, mailbox, email, PASSWORD)
        wrong = {"email": email, "password": "not the password"}
        for _ in range(10):
            assert_error(await attacker.post("/auth/signin", json=wrong), 401)
        assert "from your address" in assert_throttled(await attacker.post("/auth/signin", json=wrong),
                                                       "too_many_attempts", 800)["message"]
        # the account's budget for unfamiliar addresses is spent: other strangers wait, checked or not
        for stranger in (another_attacker, traveller):
            error = assert_throttled(await stranger.post("/auth/signin", json={**wrong, "password": PASSWORD}),
                                     "too_many_attempts", 800)
            assert "from new addresses" in error["message"]
        # the owner, at the address they signed up from, is not slowed down at all
        assert (await owner.post("/auth/signin", json={"email": email, "password": PASSWORD})).status_code == 200
        assert_error(await owner.post("/auth/signin", json=wrong), 401)
        assert (await owner.post("/auth/signin", json={"email": email, "password": PASSWORD})).status_code == 200


async def test_x_forwarded_for_counts_only_from_a_trusted_proxy(platform, make_settings):
    clients = iter(random.sample(range(100), 6))

    def forwarded() -> dict[str, str]:
        """A header naming a new client, behind whatever that client claimed itself (ignored either way)."""
        return {"X-Forwarded-For": f"203.0.113.{random.randint(1, 254)}, 198.51.{next(clients)}.7"}

    proxy = loopback_address()
    limits = {"auth": {"signup_limit_per_ip": RateLimit(2, 3600)}}
    async with server(platform, make_settings, **limits) as url, client_from(url, proxy) as api:
        answers = [await api.post("/auth/signup", headers=forwarded(), json={"email": f"xff-{uuid.uuid4().hex}@ex.com"})
                   for _ in range(3)]
        assert [a.status_code for a in answers] == [202, 202, 429]  # untrusted peer: its header changes nothing
    async with server(platform, make_settings, http={"trusted_proxies": (f"{proxy}/32",)}, **limits) as url, \
            client_from(url, proxy) as api:
        answers = [await api.post("/auth/signup", headers=forwarded(), json={"email": f"xff-{uuid.uuid4().hex}@ex.com"})
                   for _ in range(3)]
        assert [a.status_code for a in answers] == [202, 202, 202]  # three clients behind the proxy
        same = {"X-Forwarded-For": f"198.51.100.{random.randint(1, 254)}"}
        answers = [await api.post("/auth/signup", headers=same, json={"email": f"xff-{uuid.uuid4().hex}@ex.com"})
                   for _ in range(3)]
        assert [a.status_code for a in answers] == [202, 202, 429]
