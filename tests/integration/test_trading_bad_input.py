"""Bad input to every trading endpoint: the documented 4xx, the error shape, and nothing changes."""

from __future__ import annotations

import asyncio
import uuid

import pytest
from helpers import set_price, signed_in


@pytest.fixture
async def trader(platform, api, mailbox, email):
    auth = await signed_in(api, mailbox, email)
    await set_price(platform, "SOL_USDC", "100.00", "100.00")  # broker 99.97 / 100.03
    position = (await api.post("/positions", headers=auth, json={"symbol": "SOL_USDC", "side": "long", "qty": "1",
                                                                 "leverage": 2})).json()
    return auth, position


async def unchanged(api, auth, position) -> None:
    """The account still holds exactly the one position it had, with the same balance (the deposit less the
    commission of that position's opening)."""
    open_ = (await api.get("/positions?status=open", headers=auth)).json()
    assert [p["id"] for p in open_] == [position["id"]] and open_[0]["qty"] == position["qty"]
    assert position["commission"] == "0.10"  # 1 × 100.03 × 0.1 %
    assert (await api.get("/account", headers=auth)).json()["balance"] == "9999.90"


BAD_ORDERS = [
    ({"symbol": "XRP_USDC", "side": "long", "qty": "1"}, 404, "unknown_market"),
    ({"symbol": "SOL_USDC", "side": "up", "qty": "1"}, 400, "validation_error"),
    ({"symbol": "SOL_USDC", "side": "long", "qty": "abc"}, 400, "invalid_number"),
    ({"symbol": "SOL_USDC", "side": "long", "qty": "-1"}, 422, "invalid_quantity"),
    ({"symbol": "SOL_USDC", "side": "long", "qty": "0"}, 422, "invalid_quantity"),
    ({"symbol": "SOL_USDC", "side": "long", "qty": "NaN"}, 400, "invalid_number"),
    ({"symbol": "SOL_USDC", "side": "long", "qty": "0.001"}, 422, "quantity_too_small"),
    ({"symbol": "SOL_USDC", "side": "long", "qty": "1.005"}, 422, "invalid_quantity_step"),
    ({"symbol": "SOL_USDC", "side": "long", "qty": "1", "leverage": 21}, 422, "invalid_leverage"),
    ({"symbol": "SOL_USDC", "side": "long", "qty": "1", "leverage": 0}, 400, "validation_error"),
    ({"symbol": "SOL_USDC", "side": "long", "qty": "1", "leverage": "ten"}, 400, "validation_error"),
    ({"symbol": "SOL_USDC", "side": "long", "qty": "1", "stop_loss": "101"}, 422, "invalid_stop_loss"),
    ({"symbol": "SOL_USDC", "side": "long", "qty": "1", "take_profit": "99"}, 422, "invalid_take_profit"),
    ({"symbol": "SOL_USDC", "side": "short", "qty": "1", "stop_loss": "99"}, 422, "invalid_stop_loss"),
    ({"symbol": "SOL_USDC", "side": "short", "qty": "1", "take_profit": "101"}, 422, "invalid_take_profit"),
    ({"symbol": "SOL_USDC", "side": "long", "qty": "1", "stop_loss": "90.001"}, 422, "invalid_stop_loss"),
    ({"symbol": "SOL_USDC", "side": "long", "qty": "100000"}, 422, "insufficient_margin"),
    ({"symbol": "SOL_USDC", "side": "long"}, 400, "validation_error"),
    ({"symbol": "SOL_USDC", "side": "long", "qty": "1", "price": "1"}, 400, "validation_error"),
]


@pytest.mark.parametrize(("order", "status", "code"), BAD_ORDERS)
async def test_bad_orders_are_refused_and_change_nothing(api, trader, order, status, code):
    auth, position = trader
    response = await api.post("/positions", headers=auth, json=order)
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert error["code"] == code and error["message"]
    await unchanged(api, auth, position)


@pytest.mark.parametrize(
    ("body", "status", "code"),
    [
        ({"qty": "2"}, 422, "invalid_quantity"),
        ({"qty": "-1"}, 422, "invalid_quantity"),
        ({"qty": "0.001"}, 422, "invalid_quantity_step"),
        ({"qty": "x"}, 400, "invalid_number"),
        ({"qty": "1", "all": True}, 400, "validation_error"),
    ],
)
async def test_bad_closes_are_refused(api, trader, body, status, code):
    auth, position = trader
    response = await api.post(f"/positions/{position['id']}/close", headers=auth, json=body)
    assert response.status_code == status and response.json()["error"]["code"] == code, response.text
    await unchanged(api, auth, position)


@pytest.mark.parametrize(
    ("body", "status", "code"),
    [
        ({"stop_loss": "101"}, 422, "invalid_stop_loss"),
        ({"take_profit": "50"}, 422, "invalid_take_profit"),
        ({"stop_loss": "-5"}, 422, "invalid_stop_loss"),
        ({"stop_loss": "abc"}, 400, "invalid_number"),
        ({"trailing": "1"}, 400, "validation_error"),
    ],
)
async def test_bad_modifications_are_refused(api, trader, body, status, code):
    auth, position = trader
    response = await api.patch(f"/positions/{position['id']}", headers=auth, json=body)
    assert response.status_code == status and response.json()["error"]["code"] == code, response.text
    assert (await api.get(f"/positions/{position['id']}", headers=auth)).json()["stop_loss"] is None


async def test_another_users_position_is_not_found(api, mailbox, trader):
    _, position = trader
    stranger = await signed_in(api, mailbox, f"stranger-{uuid.uuid4().hex[:8]}@example.com")
    for response in (
        await api.get(f"/positions/{position['id']}", headers=stranger),
        await api.post(f"/positions/{position['id']}/close", headers=stranger),
        await api.patch(f"/positions/{position['id']}", headers=stranger, json={"stop_loss": "90"}),
    ):
        assert response.status_code == 404 and response.json()["error"]["code"] == "position_not_found"
    auth, _ = trader
    await unchanged(api, auth, position)


async def test_unknown_and_malformed_position_ids_are_404(api, trader):
    auth, _ = trader
    for pid in (str(uuid.uuid4()), "not-a-uuid"):
        assert (await api.get(f"/positions/{pid}", headers=auth)).status_code == 404


async def test_closing_twice_is_a_conflict_of_state(api, trader):
    auth, position = trader
    assert (await api.post(f"/positions/{position['id']}/close", headers=auth)).status_code == 200
    again = await api.post(f"/positions/{position['id']}/close", headers=auth)
    assert again.status_code == 409 and again.json()["error"]["code"] == "position_closed"


async def test_bad_query_parameters_and_missing_auth(api, trader):
    auth, _ = trader
    assert (await api.get("/positions?status=pending", headers=auth)).status_code == 400
    assert (await api.get("/positions?limit=0", headers=auth)).status_code == 400
    assert (await api.get("/ledger?limit=abc", headers=auth)).status_code == 400
    bad_key = {**auth, "Idempotency-Key": "no spaces allowed"}
    response = await api.post("/positions", headers=bad_key, json={"symbol": "SOL_USDC", "side": "long", "qty": "1"})
    assert response.status_code == 400 and response.json()["error"]["code"] == "invalid_idempotency_key"
    api.cookies.clear()  # signing up left the auth_token cookie on this client
    for method, path in (("GET", "/account"), ("GET", "/positions"), ("POST", "/positions"), ("GET", "/ledger")):
        response = await api.request(method, path, json={} if method == "POST" else None)
        assert response.status_code == 401 and response.json()["error"]["code"] == "not_authenticated"


async def test_a_replayed_command_resyncs_the_risk_book(platform, api, trader):
    """A command answered from its stored reply sends a resync, so a book that missed its events heals."""
    auth, position = trader
    book = platform.dbproc.risk.book
    headers = {**auth, "Idempotency-Key": "resync-1"}
    order = {"symbol": "SOL_USDC", "side": "long", "qty": "1", "leverage": 2}
    first = (await api.post("/positions", headers=headers, json=order)).json()
    await _until_in(book, first["id"])  # the "opened" event travels apart from the reply (on Kafka, it can lag)
    book.position_closed(first["id"])  # as if this instance had missed the "opened" event
    assert first["id"] not in book
    again = (await api.post("/positions", headers=headers, json=order)).json()
    assert again["id"] == first["id"]
    await _until_in(book, first["id"])
    assert position["id"] in book


async def _until_in(book, position_id: str) -> None:
    async with asyncio.timeout(5):
        while position_id not in book:  # noqa: ASYNC110 - polling the book, which has no event
            await asyncio.sleep(0.01)
