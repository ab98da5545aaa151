"""What a browser-borne attack would try against the HTTP API: writes from another site riding on the
cookie, a forged `Host` steering clients (and their tokens) to another feed, answers that caches keep or
browsers sniff, and a banner naming the server."""

from __future__ import annotations

import httpx
import pytest
import websockets
from helpers import another_server, set_price, sign_up

EVIL = {"Origin": "https://evil.example", "Sec-Fetch-Site": "cross-site"}
OPEN = {"symbol": "SOL_USDC", "side": "long", "qty": "1"}
OPEN_TEXT = '{"symbol": "SOL_USDC", "side": "long", "qty": "1"}'


@pytest.fixture
async def token(api, mailbox, email) -> str:
    return (await sign_up(api, mailbox, email))["access_token"]


def cookie(token: str, **headers: str) -> dict[str, str]:
    return {"Cookie": f"auth_token={token}", **headers}


def own_origin(platform) -> str:
    return platform.base_url  # http://127.0.0.1:<port>, what a page served by the API itself sends


async def open_positions(api, token: str) -> list:
    answer = await api.get("/positions", headers={"Authorization": f"Bearer {token}"})
    assert answer.status_code == 200
    return answer.json()


def refused(answer: httpx.Response, reason: str) -> None:
    assert answer.status_code == 403, answer.text
    error = answer.json()["error"]
    assert error["code"] == "cross_site_request" and error["details"] == {"reason": reason}
    assert error["message"]


# --- cross-site writes -----------------------------------------------------------------------------------


async def test_a_cross_site_form_post_riding_on_the_cookie_opens_nothing(platform, api, token):
    await set_price(platform, "SOL_USDC", "100.00", "100.00")
    answer = await api.post("/positions", content=OPEN_TEXT,
                            headers=cookie(token, **EVIL, **{"Content-Type": "text/plain"}))
    refused(answer, "sec_fetch_site")
    assert await open_positions(api, token) == []


async def test_a_cross_site_logout_leaves_the_session_working(platform, api, token):
    refused(await api.post("/auth/logout", headers=cookie(token, **EVIL)), "sec_fetch_site")
    assert (await api.get("/auth/me", headers=cookie(token))).status_code == 200


async def test_a_same_origin_page_can_write_with_the_cookie(platform, api, token):
    await set_price(platform, "SOL_USDC", "100.00", "100.00")
    page = {"Origin": own_origin(platform), "Sec-Fetch-Site": "same-origin"}
    assert (await api.post("/positions", json=OPEN, headers=cookie(token, **page))).status_code == 201
    assert len(await open_positions(api, token)) == 1
    assert (await api.post("/auth/logout", headers=cookie(token, **page))).status_code == 204
    assert (await api.get("/auth/me", headers=cookie(token))).status_code == 401


async def test_a_cookie_write_must_send_json(platform, api, token):
    await set_price(platform, "SOL_USDC", "100.00", "100.00")
    page = {"Origin": own_origin(platform), "Sec-Fetch-Site": "same-origin"}
    for content_type in ("text/plain", "application/x-www-form-urlencoded", "multipart/form-data; boundary=x"):
        answer = await api.post("/positions", content=OPEN_TEXT,
                                headers=cookie(token, **page, **{"Content-Type": content_type}))
        refused(answer, "content_type")
    assert await open_positions(api, token) == []
    answer = await api.post("/positions", content=OPEN_TEXT,
                            headers=cookie(token, **{"Content-Type": "application/json; charset=utf-8"}))
    assert answer.status_code == 201


async def test_clients_that_are_not_browsers_pass_with_the_cookie(platform, api, token):
    await set_price(platform, "SOL_USDC", "100.00", "100.00")
    assert (await api.post("/positions", json=OPEN, headers=cookie(token))).status_code == 201
    assert (await api.post("/auth/logout", headers=cookie(token))).status_code == 204  # no body, no type


async def test_bearer_requests_are_not_cross_site_requests(platform, api, token):
    await set_price(platform, "SOL_USDC", "100.00", "100.00")
    headers = {"Authorization": f"Bearer {token}", **EVIL, "Content-Type": "text/plain"}
    assert (await api.post("/positions", content=OPEN_TEXT, headers=headers)).status_code == 201


async def test_a_basic_authorization_header_does_not_pass_for_a_bearer_one(platform, api, token):
    # browsers re-send Basic credentials by themselves, so only a Bearer header proves a script sent it
    headers = cookie(token, **EVIL, Authorization="Basic dXNlcjpwYXNz")
    refused(await api.post("/auth/logout", headers=headers), "sec_fetch_site")


async def test_browsers_without_fetch_metadata_are_judged_by_their_origin(platform, api, token):
    await set_price(platform, "SOL_USDC", "100.00", "100.00")
    for origin in ("https://evil.example", "null", f"http://127.0.0.1:{platform.http_port + 1}"):
        refused(await api.post("/positions", json=OPEN, headers=cookie(token, Origin=origin)), "origin")
    assert await open_positions(api, token) == []
    answer = await api.post("/positions", json=OPEN, headers=cookie(token, Origin=own_origin(platform)))
    assert answer.status_code == 201


async def test_a_sibling_site_is_another_site(platform, api, token):
    refused(await api.post("/auth/logout", headers=cookie(token, **{"Sec-Fetch-Site": "same-site"})),
            "sec_fetch_site")


async def test_sign_in_from_another_site_is_refused(platform, api, mailbox, email, token):
    body = {"email": email, "password": "correct horse battery"}
    refused(await api.post("/auth/signin", json=body, headers=EVIL), "sec_fetch_site")
    assert (await api.post("/auth/signin", json=body)).status_code == 200


async def test_reads_from_another_site_are_not_refused(platform, api, token):
    assert (await api.get("/auth/me", headers=cookie(token, **EVIL))).status_code == 200


async def test_an_allowed_origin_may_write_from_another_site(platform, api, token):
    await set_price(platform, "SOL_USDC", "100.00", "100.00")
    async with another_server(platform, http={"allowed_origins": ("https://app.example",)}) as server, \
            httpx.AsyncClient(base_url=server.base_url + "/api/v1", timeout=15) as other_api:
        allowed = {"Origin": "https://app.example", "Sec-Fetch-Site": "cross-site"}
        assert (await other_api.post("/positions", json=OPEN, headers=cookie(token, **allowed))).status_code == 201
        refused(await other_api.post("/positions", json=OPEN, headers=cookie(token, **EVIL)), "sec_fetch_site")
    assert len(await open_positions(api, token)) == 1


# --- headers and reflection ------------------------------------------------------------------------------


async def test_a_forged_host_does_not_move_the_advertised_feed(platform, api):
    honest = (await api.get("/info")).json()["ws_url"]
    assert honest == f"ws://127.0.0.1:{platform.app.state.market.ws_port}/ws"
    for host in ("evil.example", "evil.example:8080", "[::1]:1"):
        forged = await api.get("/info", headers={"Host": host})
        assert forged.status_code == 200 and forged.json()["ws_url"] == honest


async def test_the_public_feed_url_is_advertised_as_configured(platform):
    async with another_server(platform, http={"ws_public_url": "wss://feed.example.com/ws"}) as server, \
            httpx.AsyncClient(base_url=server.base_url + "/api/v1", timeout=15) as other_api:
        answer = await other_api.get("/info", headers={"Host": "evil.example"})
        assert answer.json()["ws_url"] == "wss://feed.example.com/ws"


async def test_every_api_answer_is_neither_stored_nor_sniffed(platform, api, mailbox, email):
    body = await sign_up(api, mailbox, email)
    answers = {
        "info": await api.get("/info"),
        "sign-in (a token)": await api.post("/auth/signin", json={"email": email,
                                                                  "password": "correct horse battery"}),
        "401": await api.get("/auth/me"),
        "404": await api.get("/no-such-endpoint"),
        "400": await api.post("/auth/signin", content="{"),
        "403": await api.post("/auth/logout", headers=cookie(body["access_token"], **EVIL)),
    }
    assert answers["sign-in (a token)"].json()["access_token"]
    for name, answer in answers.items():
        assert answer.headers.get("cache-control") == "no-store", name
        assert answer.headers.get("x-content-type-options") == "nosniff", name
        assert "server" not in answer.headers, name


async def test_pages_outside_the_api_are_not_sniffed_and_name_no_server(platform):
    async with httpx.AsyncClient(base_url=platform.base_url, timeout=15) as http:
        for path in ("/health", "/schema/openapi.json", "/nowhere"):
            answer = await http.get(path)
            assert answer.headers.get("x-content-type-options") == "nosniff", path
            assert "server" not in answer.headers, path
            assert answer.headers.get("date"), path


async def test_the_feed_handshake_names_no_server(platform, api):
    async with websockets.connect((await api.get("/info")).json()["ws_url"]) as ws:
        assert ws.response is not None and "Server" not in ws.response.headers


async def test_every_answer_carries_its_request_id_the_clients_when_sensible(api):
    mine = await api.get("/markets", headers={"X-Request-Id": "trace-77"})
    assert mine.headers["x-request-id"] == "trace-77"
    made = [(await api.get("/markets", headers=h)).headers["x-request-id"]
            for h in ({}, {"X-Request-Id": "<not one>"})]
    assert len(set(made)) == 2 and all(len(m) == 16 and m != "<not one>" for m in made)
    refused = await api.post("/positions", json={})  # an error answer carries it too
    assert refused.status_code == 401 and len(refused.headers["x-request-id"]) == 16
