"""Input at the edges of what the API takes: each is a 4xx that says what is wrong, changes nothing, and
logs no traceback. Runs on the selected backend set (the requests that pass the edge cross the bus)."""

from __future__ import annotations

import asyncio
import json
import logging
import uuid
from decimal import Decimal

import pytest
from helpers import set_price, signed_in
from websockets.asyncio.client import connect

from shared import operations as ops
from shared.contracts.bus import OpenCommand
from shared.contracts.rest import PositionCreate
from shared.errors import CfdError

BAD_DECIMALS = ['"1E+25"', '"99999999999999999999999999.99"', '"１"', '"١"', '"1_000"', '" 1"', '"+1"', '"NaN"',
                '"Infinity"', '"-Infinity"', '"1e400"', '"1e-400"', '"0.00000000001"', '"1e99999999999999999999"',
                '"1."', '""', "1E+25", "99999999999999999999999999.99", "1e400", "1e-400"]


@pytest.fixture
async def trader(platform, api, mailbox, email):
    """A signed-in trader with one open position; SOL at 99.97 / 100.03."""
    auth = await signed_in(api, mailbox, email)
    await set_price(platform, "SOL_USDC", "100.00", "100.00")
    opened = await api.post("/positions", headers=auth, json={"symbol": "SOL_USDC", "side": "long", "qty": "1"})
    assert opened.status_code == 201, opened.text
    user_id = (await api.get("/auth/me", headers=auth)).json()["user"]["id"]
    return auth, opened.json(), user_id


@pytest.fixture
def operator(platform) -> dict[str, str]:
    return {"Authorization": f"Bearer {platform.app.state.operator_token}"}


async def unchanged(api, auth, position) -> None:
    """Still the one position, unchanged, and the balance and ledger of the demo deposit and that position's
    opening commission (1 × 100.03 × 0.1 %) alone."""
    open_ = (await api.get("/positions?status=open", headers=auth)).json()
    assert [(p["id"], p["qty"], p["stop_loss"]) for p in open_] == [(position["id"], "1", None)]
    assert (await api.get("/account", headers=auth)).json()["balance"] == "9999.90"
    assert [e["kind"] for e in (await api.get("/ledger", headers=auth)).json()] == ["commission", "deposit"]


def requests_with(value: str, position_id: str, user_id: str) -> list[tuple[str, str, str, str]]:
    """(method, path, body, field) for every decimal field of the API, with `value` as its raw JSON."""
    return [
        ("POST", "/positions", f'{{"symbol": "SOL_USDC", "side": "long", "qty": {value}}}', "qty"),
        ("POST", "/positions", f'{{"symbol": "SOL_USDC", "side": "long", "qty": "1", "stop_loss": {value}}}',
         "stop_loss"),
        ("POST", "/positions", f'{{"symbol": "SOL_USDC", "side": "long", "qty": "1", "take_profit": {value}}}',
         "take_profit"),
        ("PATCH", f"/positions/{position_id}", f'{{"stop_loss": {value}}}', "stop_loss"),
        ("PATCH", f"/positions/{position_id}", f'{{"take_profit": {value}}}', "take_profit"),
        ("POST", f"/positions/{position_id}/close", f'{{"qty": {value}}}', "qty"),
        ("POST", f"/admin/users/{user_id}/deposit", f'{{"amount": {value}}}', "amount"),
    ]


@pytest.mark.parametrize("value", BAD_DECIMALS)
async def test_a_decimal_outside_the_grammar_or_range_is_a_400_naming_its_field(api, trader, operator, value,
                                                                                caplog):
    auth, position, user_id = trader
    for method, path, body, field in requests_with(value, position["id"], user_id):
        headers = {**(operator if "/admin/" in path else auth), "Content-Type": "application/json"}
        response = await api.request(method, path, content=body.encode(), headers=headers)
        assert response.status_code == 400, (path, body, response.text)
        error = response.json()["error"]
        assert error["code"] == "invalid_number" and error["details"]["field"] == field, (path, body, error)
        assert field in error["message"] and "InvalidOperation" not in response.text
    await unchanged(api, auth, position)
    assert not [r for r in caplog.records if r.exc_info], "bad input logged a traceback"


async def test_json_numbers_are_read_exactly(api, trader):
    """1.0000000000000001 read through a float would be 1 and open a position; read exactly, it has more
    decimal places than a quantity takes."""
    auth, position, _ = trader
    headers = {**auth, "Content-Type": "application/json"}
    body = b'{"symbol": "SOL_USDC", "side": "long", "qty": 1.0000000000000001}'
    refused = await api.post("/positions", headers=headers, content=body)
    assert refused.status_code == 400 and refused.json()["error"]["code"] == "invalid_number", refused.text
    await unchanged(api, auth, position)
    body = b'{"symbol": "SOL_USDC", "side": "long", "qty": 1.10, "take_profit": 120.5}'
    opened = await api.post("/positions", headers=headers, content=body)
    assert opened.status_code == 201, opened.text
    assert Decimal(opened.json()["qty"]) == Decimal("1.1") and opened.json()["take_profit"] == "120.5"


async def test_a_deposit_of_a_fraction_of_a_cent_is_refused_not_booked(api, trader, operator):
    auth, position, user_id = trader
    for amount, status, code in (("0.001", 422, "invalid_amount"), ("0", 422, "invalid_amount"),
                                 ("-9999.91", 422, "invalid_amount"), ("1e309", 400, "invalid_number"),
                                 ("1000000000000.01", 400, "invalid_number")):
        response = await api.post(f"/admin/users/{user_id}/deposit", headers=operator, json={"amount": amount})
        assert response.status_code == status and response.json()["error"]["code"] == code, (amount, response.text)
    await unchanged(api, auth, position)
    whole_cents = await api.post(f"/admin/users/{user_id}/deposit", headers=operator, json={"amount": "0.10"})
    assert whole_cents.status_code == 200 and whole_cents.json()["balance"] == "10000.00"  # 9999.90 + 0.10


@pytest.mark.parametrize("body", [
    b'{"symbol": "SOL_USDC", "side": "long", "qty": "\xff"}',
    b'\xfe\xff\x00{',
    b"[" * 10_000 + b"]" * 10_000,
    b'{"a":' * 10_000 + b"1" + b"}" * 10_000,
    b'{"symbol": "SOL_USDC", "side": "long", "qty": "1", "qty": "50"}',
    b'{"symbol": "SOL_USDC", "side": "long", "side": "short", "qty": "1"}',
])
async def test_unreadable_deep_or_ambiguous_bodies_are_400_everywhere(api, trader, operator, body, caplog):
    auth, position, user_id = trader
    for method, path, headers in (("POST", "/positions", auth), ("PATCH", f"/positions/{position['id']}", auth),
                                  ("POST", f"/positions/{position['id']}/close", auth), ("POST", "/auth/signup", {}),
                                  ("POST", "/auth/signin", {}), ("POST", f"/admin/users/{user_id}/deposit", operator)):
        response = await api.request(method, path, content=body, headers={**headers,
                                                                          "Content-Type": "application/json"})
        assert response.status_code == 400, (path, response.text)
        error = response.json()["error"]
        assert error["code"] in {"malformed_request", "duplicate_key"} and error["message"], (path, error)
    await unchanged(api, auth, position)
    assert not [r for r in caplog.records if r.exc_info], "bad input logged a traceback"


async def test_a_websocket_frame_nested_2000_deep_gets_an_error_frame_and_the_connection_stays(platform):
    async with connect(platform.ws_url) as ws:
        assert json.loads(await asyncio.wait_for(ws.recv(), 5))["type"] == "welcome"
        for frame in ("[" * 2000, "[" * 2000 + "]" * 2000, '{"op": "ping", "id": 1, "id": 2}'):
            await ws.send(frame)
            answer = json.loads(await asyncio.wait_for(ws.recv(), 5))
            assert answer["type"] == "error" and answer["code"] in {"invalid_json", "invalid_frame"}, answer
        await ws.send('{"op": "ping", "id": 7}')
        assert json.loads(await asyncio.wait_for(ws.recv(), 5)) == {"type": "pong", "id": 7,
                                                                    "server_time": pytest.approx(0, abs=1e13)}


async def test_operator_search_matches_percent_and_underscore_literally(api, mailbox, operator):
    tag = uuid.uuid4().hex[:8]
    for local in ("a_b", "axb", "a%b"):
        await signed_in(api, mailbox, f"{tag}{local}@example.com")

    async def found(search: str) -> list[str]:
        response = await api.get("/admin/users", headers=operator, params={"search": search, "limit": 1000})
        assert response.status_code == 200, response.text
        return sorted(u["email"] for u in response.json())

    assert await found(f"{tag}a_b") == [f"{tag}a_b@example.com"]
    assert await found(f"{tag}a%b") == [f"{tag}a%b@example.com"]
    assert await found(f"{tag}a") == sorted(f"{tag}{local}@example.com" for local in ("a_b", "axb", "a%b"))
    assert all("%" in email for email in await found("%"))
    assert all("_" in email for email in await found("_"))
    assert await found("\\") == []


async def test_an_unexpected_failure_in_the_dbproc_is_an_internal_error_not_an_outage(platform, api, trader):
    """A command that skips the server's checks (sent on the bus directly) and overflows the engine's
    arithmetic: the answer is an internal error with a request id, not "the database is unavailable"."""
    auth, position, user_id = trader
    ctx = platform.app.state.ctx
    order = PositionCreate(symbol="SOL_USDC", side="long", qty=Decimal("1E+25"))
    with pytest.raises(CfdError) as raised:
        await ctx.rpc.call(ops.OPEN, OpenCommand(user_id=user_id, order=order), key=user_id)
    error = raised.value
    assert (error.status, error.code) == (500, "internal_error")
    assert "InvalidOperation" not in error.message and error.details["request_id"]
    await unchanged(api, auth, position)


async def test_tracebacks_are_only_for_bugs(platform, api, trader, caplog):
    """The failure above is logged with its traceback by the dbproc; the client errors before it were not."""
    auth, _, user_id = trader
    caplog.set_level(logging.WARNING)
    await api.post("/positions", headers=auth, json={"symbol": "SOL_USDC", "side": "long", "qty": "1E+25"})
    ctx = platform.app.state.ctx
    with pytest.raises(CfdError):
        await ctx.rpc.call(ops.OPEN, OpenCommand(user_id=user_id, order=PositionCreate(symbol="SOL_USDC", side="long",
                                                                                     qty=Decimal("1E+25"))),
                           key=user_id)
    traced = [r for r in caplog.records if r.exc_info]
    assert len(traced) == 1 and "position.open" in traced[0].getMessage()
