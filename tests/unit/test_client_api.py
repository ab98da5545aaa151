"""ApiClient: typed answers, typed errors from the server's error body, network failures as ConnectionLost."""

from __future__ import annotations

import json
from decimal import Decimal

import httpx
import pytest
from msgspec import UNSET

from cfd_client import (
    ApiClient,
    BadInput,
    ClientSideError,
    ConnectionLost,
    NotFound,
    NotSignedIn,
    Rejected,
    ServerSideError,
    ServiceUnavailable,
    Throttled,
    UnexpectedResponse,
    api_root,
)
from cfd_client.errors import GatewayTimeout, error_from_response

USER = {"id": "u1", "email": "ada@example.com", "name": "Ada", "status": "active", "created_at": 1}
POSITION = {"id": "p1", "symbol": "SOL_USDC", "side": "long", "qty": "1.5", "entry_price": "185.10", "leverage": 5,
            "margin": "55.53", "stop_loss": None, "take_profit": "200", "status": "open", "opened_at": 1,
            "updated_at": 1}


def client_with(handler) -> tuple[ApiClient, list[httpx.Request]]:
    seen: list[httpx.Request] = []

    def record(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return handler(request)

    return ApiClient("http://broker.test", transport=httpx.MockTransport(record)), seen


def error(status: int, code: str, message: str, details=None, headers=None) -> httpx.Response:
    return httpx.Response(status, json={"error": {"code": code, "message": message, "details": details}},
                          headers=headers)


@pytest.mark.parametrize("url", ["http://h:8000", "http://h:8000/", "http://h:8000/api/v1", "h:8000"])
def test_api_root_accepts_the_forms_people_type(url):
    assert api_root(url) == "http://h:8000/api/v1"


async def test_signin_keeps_the_token_and_sends_it_as_bearer():
    def handler(request):
        if request.url.path == "/api/v1/auth/signin":
            assert json.loads(request.content) == {"email": "ada@example.com", "password": "pw"}
            assert "authorization" not in request.headers
            return httpx.Response(200, json={"user": USER, "access_token": "tok", "token_type": "bearer",
                                             "expires_in": 3600})
        assert request.headers["authorization"] == "Bearer tok"
        return httpx.Response(200, json={"user": USER})

    api, _ = client_with(handler)
    session = await api.signin("ada@example.com", "pw")
    assert session.user.email == "ada@example.com" and api.token == "tok"
    assert (await api.me()).id == "u1"


async def test_money_decodes_as_decimal_and_orders_send_decimal_strings_with_an_idempotency_key():
    def handler(request):
        body = json.loads(request.content)
        assert body["qty"] == "1.5" and body["stop_loss"] is None and body["take_profit"] == "200"
        assert request.headers["idempotency-key"]
        return httpx.Response(201, json=POSITION)

    api, seen = client_with(handler)
    position = await api.open_position("SOL_USDC", "long", Decimal("1.5"), 5, take_profit=Decimal("200"))
    assert position.entry_price == Decimal("185.10") and isinstance(position.qty, Decimal)
    await api.open_position("SOL_USDC", "long", Decimal("1.5"), 5, take_profit=Decimal("200"))
    assert seen[0].headers["idempotency-key"] != seen[1].headers["idempotency-key"]


async def test_modify_leaves_out_unset_stops_and_sends_null_to_remove_one():
    bodies = []

    def handler(request):
        bodies.append(json.loads(request.content))
        return httpx.Response(200, json=POSITION)

    api, _ = client_with(handler)
    await api.modify_position("p1", stop_loss=None)
    await api.modify_position("p1", take_profit=Decimal("210.5"))
    await api.modify_position("p1", stop_loss=UNSET, take_profit=UNSET)
    assert bodies == [{"stop_loss": None}, {"take_profit": "210.5"}, {}]


async def test_lists_and_query_parameters():
    def handler(request):
        path, params = request.url.path, dict(request.url.params)
        if path == "/api/v1/positions":
            assert params == {"status": "closed", "limit": "50"}
            return httpx.Response(200, json=[POSITION | {"status": "closed", "realized_pnl": "-1.25"}])
        if path == "/api/v1/candles/SOL_USDC":
            assert params == {"interval": "5m", "limit": "3"}
            return httpx.Response(200, json=[{"t": 0, "o": "1", "h": "2", "l": "0.5", "c": "1.5", "n": 3}])
        if path == "/api/v1/ledger":
            return httpx.Response(200, json=[{"id": "l1", "kind": "deposit", "amount": "10000",
                                              "balance_after": "10000", "reference": "demo", "created_at": 1}])
        raise AssertionError(path)

    api, _ = client_with(handler)
    closed = await api.positions("closed", limit=50)
    assert closed[0].realized_pnl == Decimal("-1.25")
    assert (await api.candles("SOL_USDC", "5m", 3))[0].l == Decimal("0.5")
    assert (await api.ledger())[0].balance_after == Decimal(10000)


@pytest.mark.parametrize(("status", "kind"), [
    (400, BadInput), (401, NotSignedIn), (404, NotFound), (422, Rejected), (429, Throttled),
    (503, ServiceUnavailable), (504, GatewayTimeout), (418, ClientSideError), (500, ServerSideError),
])
async def test_each_status_family_has_its_error_class(status, kind):
    api, _ = client_with(lambda r: error(status, "some_code", "A sentence.", {"field": "qty"}))
    with pytest.raises(kind) as caught:
        await api.account()
    assert caught.value.status == status and caught.value.code == "some_code"
    assert caught.value.message == "A sentence." and caught.value.field == "qty"


def test_retry_after_and_bodies_that_are_not_the_usual_shape():
    throttled = error_from_response(error(429, "resend_too_soon", "Wait.", headers={"Retry-After": "42"}))
    assert isinstance(throttled, Throttled) and throttled.retry_after == 42
    html = error_from_response(httpx.Response(502, text="<html>bad gateway</html>"))
    assert isinstance(html, ServerSideError) and html.code == "http_502" and html.message


async def test_network_failures_become_connection_lost():
    def refuse(request):
        raise httpx.ConnectError("connection refused", request=request)

    api, _ = client_with(refuse)
    with pytest.raises(ConnectionLost, match="Cannot reach the server"):
        await api.prices()

    def slow(request):
        raise httpx.ReadTimeout("timed out", request=request)

    api, _ = client_with(slow)
    with pytest.raises(ConnectionLost, match="did not answer in time"):
        await api.prices()


async def test_an_answer_of_the_wrong_shape_is_reported_not_mistaken_for_data():
    api, _ = client_with(lambda r: httpx.Response(200, json={"balance": "not a number"}))
    with pytest.raises(UnexpectedResponse):
        await api.account()


async def test_logout_forgets_the_token_even_when_the_server_is_away():
    def refuse(request):
        raise httpx.ConnectError("down", request=request)

    api, _ = client_with(refuse)
    api.token = "tok"
    with pytest.raises(ConnectionLost):
        await api.logout()
    assert api.token is None


async def test_account_events_come_typed_after_a_seq_and_a_purged_stretch_is_resume_gap():
    from cfd_client.models import AccountFrame, AlertFrame, PositionFrame

    def handler(request):
        if request.url.params["since"] == "0":
            return error(410, "resume_gap", "Gone.", {"latest_seq": 7})
        assert request.url.params["since"] == "5" and request.url.params["limit"] == "200"
        return httpx.Response(200, json=[
            {"type": "position", "event": "closed", "user_id": "u1", "position": POSITION, "balance": "9.00",
             "seq": 6},
            {"type": "account", "event": "margin_call", "user_id": "u1", "margin_level": "95.00", "seq": 7},
            {"type": "alert", "event": "triggered", "user_id": "u1", "price": "95.00", "seq": 8,
             "alert": {"id": "a1", "kind": "margin_level", "below": "100", "notify": ["ws"], "status": "triggered",
                       "created_at": 1, "triggered_at": 2, "triggered_value": "95.00"}}])

    api, _ = client_with(handler)
    closed, called, alerted = await api.account_events(5)
    assert isinstance(alerted, AlertFrame) and alerted.seq == 8 and alerted.alert.kind == "margin_level"
    assert isinstance(closed, PositionFrame) and closed.seq == 6 and closed.balance == Decimal("9.00")
    assert isinstance(called, AccountFrame) and called.event == "margin_call" and called.seq == 7
    with pytest.raises(ClientSideError) as gone:
        await api.account_events(0)
    assert gone.value.code == "resume_gap" and gone.value.details == {"latest_seq": 7}
