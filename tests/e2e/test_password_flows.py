"""Password change, forgotten password by mailed code, and signing out everywhere: each ends the right
sessions and their `account` channel at once, and the reset answers alike for any address."""

from __future__ import annotations

import asyncio
import json

import websockets
from helpers import sign_up

PASSWORD = "correct horse battery"
NEW = "violet tambourine quarry"


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def on_account(ws_url: str, token: str):
    ws = await websockets.connect(ws_url)
    await ws.send(json.dumps({"op": "auth", "token": token}))
    await ws.send(json.dumps({"op": "subscribe", "channels": ["account"]}))
    while json.loads(await asyncio.wait_for(ws.recv(), 10)).get("type") != "subscribed":
        pass
    return ws


async def error_frame(ws) -> dict:
    while (frame := json.loads(await asyncio.wait_for(ws.recv(), 10)))["type"] != "error":
        pass
    return frame


async def signin(api, email: str, password: str):
    return await api.post("/auth/signin", json={"email": email, "password": password})


async def test_a_reset_by_mailed_code_sets_the_password_and_ends_every_session(platform, api, mailbox, email):
    token = (await sign_up(api, mailbox, email))["access_token"]
    ws = await on_account(platform.ws_url, token)
    try:
        asked = await api.post("/auth/password/forgot", json={"email": email.upper()})
        assert asked.status_code == 202
        code = await mailbox.code_for(email, nth=2)  # the sign-up's code was the first mail
        wrong = await api.post("/auth/password/reset", json={"email": email, "otp": "000000", "password": NEW})
        assert wrong.status_code == 400 and wrong.json()["error"]["code"] == "invalid_code"
        weak = await api.post("/auth/password/reset", json={"email": email, "otp": code, "password": "password1"})
        assert weak.status_code == 400 and weak.json()["error"]["code"] == "weak_password"
        done = await api.post("/auth/password/reset", json={"email": email, "otp": code, "password": NEW})
        assert done.status_code == 200, done.text
        assert (await error_frame(ws))["code"] == "session_ended"
        assert (await api.get("/auth/me", headers=bearer(token))).status_code == 401
        assert (await signin(api, email, PASSWORD)).status_code == 401
        assert (await signin(api, email, NEW)).status_code == 200
        again = await api.post("/auth/password/reset", json={"email": email, "otp": code, "password": PASSWORD})
        assert again.status_code == 400 and again.json()["error"]["code"] == "invalid_code"  # used once
    finally:
        await ws.close()


async def test_forgot_answers_alike_for_an_address_without_an_account(platform, api, mailbox, email):
    await sign_up(api, mailbox, email)
    stranger = "nobody-" + email
    known = await api.post("/auth/password/forgot", json={"email": email})
    unknown = await api.post("/auth/password/forgot", json={"email": stranger})
    assert (known.status_code, known.json()) == (unknown.status_code, unknown.json())
    await mailbox.wait_for(email, 2)
    await asyncio.sleep(0.3)
    assert mailbox.messages(stranger) == []  # nothing is mailed to an address without an account
    guesses = [await api.post("/auth/password/reset", json={"email": who, "otp": "123456", "password": NEW})
               for who in (email, stranger)]
    assert [(g.status_code, g.json()["error"]["code"]) for g in guesses] == [(400, "invalid_code")] * 2
    soon = [await api.post("/auth/password/forgot", json={"email": who}) for who in (email, stranger)]
    assert [(s.status_code, s.json()["error"]["code"]) for s in soon] == [(429, "resend_too_soon")] * 2


async def test_changing_the_password_keeps_this_session_and_ends_the_others(platform, api, mailbox, email):
    token = (await sign_up(api, mailbox, email))["access_token"]
    other = (await signin(api, email, PASSWORD)).json()["access_token"]
    mine, theirs = await on_account(platform.ws_url, token), await on_account(platform.ws_url, other)
    try:
        wrong = await api.post("/auth/password/change", headers=bearer(token),
                               json={"current_password": "not it at all", "new_password": NEW})
        assert wrong.status_code == 400 and wrong.json()["error"]["code"] == "wrong_password"
        assert wrong.json()["error"]["details"]["field"] == "current_password"
        weak = await api.post("/auth/password/change", headers=bearer(token),
                              json={"current_password": PASSWORD, "new_password": "12345678"})
        assert weak.status_code == 400 and weak.json()["error"]["details"]["field"] == "new_password"
        changed = await api.post("/auth/password/change", headers=bearer(token),
                                 json={"current_password": PASSWORD, "new_password": NEW})
        assert changed.status_code == 200, changed.text
        assert (await error_frame(theirs))["code"] == "session_ended"
        assert (await api.get("/auth/me", headers=bearer(other))).status_code == 401
        assert (await api.get("/auth/me", headers=bearer(token))).status_code == 200
        await mine.send(json.dumps({"op": "ping", "id": 1}))
        while (frame := json.loads(await asyncio.wait_for(mine.recv(), 10)))["type"] != "pong":
            assert frame["type"] != "error", frame  # this session's channel goes on
        assert (await signin(api, email, NEW)).status_code == 200
    finally:
        await mine.close()
        await theirs.close()


async def test_signing_out_everywhere_ends_every_session_and_channel(platform, api, mailbox, email):
    token = (await sign_up(api, mailbox, email))["access_token"]
    other = (await signin(api, email, PASSWORD)).json()["access_token"]
    ws = await on_account(platform.ws_url, other)
    try:
        out = await api.post("/auth/logout-all", headers=bearer(token))
        assert out.status_code == 204
        assert (await error_frame(ws))["code"] == "session_ended"
        for t in (token, other):
            assert (await api.get("/auth/me", headers=bearer(t))).status_code == 401
        assert (await signin(api, email, PASSWORD)).status_code == 200  # the password still works
    finally:
        await ws.close()


async def test_reset_guesses_take_as_long_for_an_address_without_an_account(platform, api, mailbox, email):
    """No timing oracle: a wrong reset code costs the same for a registered address and an unknown one."""
    import time

    await sign_up(api, mailbox, email)
    stranger = "ghost-" + email
    for who in (email, stranger):
        assert (await api.post("/auth/password/forgot", json={"email": who})).status_code == 202

    async def median_ms(who: str) -> float:
        times = []
        for _ in range(4):  # the fifth would burn the code, for both alike
            started = time.perf_counter()
            answer = await api.post("/auth/password/reset", json={"email": who, "otp": "000001", "password": NEW})
            times.append(time.perf_counter() - started)
            assert answer.json()["error"]["code"] == "invalid_code"
        return sorted(times)[1] * 1000

    known, unknown = await median_ms(email), await median_ms(stranger)
    assert unknown > 0.5 * known and known > 0.5 * unknown, (known, unknown)
