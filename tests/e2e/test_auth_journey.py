"""The first user journey over real HTTP: sign up with an emailed code, sign in, be recognised, log out."""

from __future__ import annotations

import asyncio

from helpers import sign_up


async def test_sign_up_sign_in_me_logout(api, mailbox, email):
    assert (await api.post("/auth/signup", json={"email": email})).status_code == 202
    code = await mailbox.code_for(email)

    verified = await api.post("/auth/verify", json={"email": email, "otp": code, "password": "correct horse",
                                                    "name": "Ada Trader"})
    assert verified.status_code == 201, verified.text
    body = verified.json()
    assert body["user"]["email"] == email and body["user"]["name"] == "Ada Trader"
    assert body["token_type"] == "bearer" and body["expires_in"] == 3600
    cookie = verified.headers["set-cookie"].lower()
    assert "auth_token=" in cookie and "httponly" in cookie and "samesite=strict" in cookie

    me = await api.get("/auth/me", headers={"Authorization": f"Bearer {body['access_token']}"})
    assert me.status_code == 200 and me.json()["user"]["id"] == body["user"]["id"]

    signed_in = await api.post("/auth/signin", json={"email": email.upper(), "password": "correct horse"})
    assert signed_in.status_code == 200
    token = signed_in.json()["access_token"]
    assert token != body["access_token"]

    # the cookie works as well as the bearer header
    api.cookies.set("auth_token", token)
    assert (await api.get("/auth/me")).status_code == 200
    api.cookies.clear()

    assert (await api.post("/auth/logout", headers={"Authorization": f"Bearer {token}"})).status_code == 204
    revoked = await api.get("/auth/me", headers={"Authorization": f"Bearer {token}"})
    assert revoked.status_code == 401 and revoked.json()["error"]["code"] == "session_expired"
    # the other session is untouched
    assert (await api.get("/auth/me", headers={"Authorization": f"Bearer {body['access_token']}"})).status_code == 200


async def test_signup_mail_is_sent_off_the_request_path_and_holds_a_fresh_code(api, mailbox, email):
    response = await api.post("/auth/signup", json={"email": email})
    assert response.status_code == 202
    mails = await mailbox.wait_for(email)
    assert "code" in mails[0]["Subject"].lower()


async def test_registered_email_gets_a_notice_not_a_code(api, mailbox, email):
    await sign_up(api, mailbox, email)
    await asyncio.sleep(0)  # the sign-up mail is already there
    again = await api.post("/auth/signup", json={"email": email})
    assert again.status_code == 202
    mails = await mailbox.wait_for(email, 2)
    assert "already" in mails[1].get_body(preferencelist=("plain",)).get_content()


async def test_a_code_works_once_even_under_concurrent_requests(api, mailbox, email):
    assert (await api.post("/auth/signup", json={"email": email})).status_code == 202
    code = await mailbox.code_for(email)
    payload = {"email": email, "otp": code, "password": "correct horse", "name": "Ada"}
    answers = await asyncio.gather(*(api.post("/auth/verify", json=payload) for _ in range(8)))
    statuses = sorted(a.status_code for a in answers)
    assert statuses.count(201) == 1, [a.text for a in answers]
    assert all(s in (400, 409) for s in statuses if s != 201)
    reused = await api.post("/auth/verify", json=payload)
    assert reused.status_code in (400, 409)


async def test_five_wrong_codes_burn_the_code(api, mailbox, email):
    assert (await api.post("/auth/signup", json={"email": email})).status_code == 202
    code = await mailbox.code_for(email)
    wrong = f"{(int(code) + 1) % 1_000_000:06d}"
    payload = {"email": email, "otp": wrong, "password": "correct horse", "name": "Ada"}
    errors = [(await api.post("/auth/verify", json=payload)).json()["error"] for _ in range(5)]
    assert [e["code"] for e in errors] == ["invalid_code"] * 4 + ["code_burned"]
    assert [e["details"]["attempts_left"] for e in errors] == [4, 3, 2, 1, 0]
    assert errors[0]["message"] == "That code is wrong; 4 tries left."
    right = await api.post("/auth/verify", json={**payload, "otp": code})
    assert right.status_code == 400 and right.json()["error"]["code"] == "code_burned"


async def test_resend_is_throttled_for_a_minute(api, email):
    assert (await api.post("/auth/signup", json={"email": email})).status_code == 202
    again = await api.post("/auth/signup", json={"email": email})
    assert again.status_code == 429
    assert 55 <= int(again.headers["retry-after"]) <= 60
    assert again.json()["error"]["code"] == "resend_too_soon"


async def test_ten_failed_signins_throttle_that_email(api, mailbox, email):
    await sign_up(api, mailbox, email, password="correct horse")
    for _ in range(10):
        failed = await api.post("/auth/signin", json={"email": email, "password": "wrong password"})
        assert failed.status_code == 401
    throttled = await api.post("/auth/signin", json={"email": email, "password": "correct horse"})
    assert throttled.status_code == 429 and int(throttled.headers["retry-after"]) > 800


async def test_info_advertises_the_websocket_feed(api, platform):
    info = (await api.get("/info")).json()
    assert info["ws_url"].startswith("ws://") and info["ws_url"].endswith("/ws")
    assert abs(info["server_time"] - __import__("time").time() * 1000) < 5000


async def test_ready_reports_every_backend(platform):
    import httpx

    async with httpx.AsyncClient(base_url=platform.base_url) as client:
        ready = await client.get("/ready")
    assert ready.status_code == 200, ready.text
    assert set(ready.json()["backends"]) == {"bus", "cache", "database", "mail"}
    assert all(b["ok"] for b in ready.json()["backends"].values())
