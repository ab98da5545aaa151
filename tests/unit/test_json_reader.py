"""Reading client JSON (`cfd_server.body`): UTF-8, nesting, duplicate keys, exact numbers, decimal fields."""

from __future__ import annotations

from decimal import Decimal

import pytest

from cfd_server.body import MAX_DEPTH, JsonError, check_numbers, number_plan, read_json
from cfd_server.ws.protocol import ProtocolError, parse_op
from shared.contracts.rest import DepositRequest, OrderCreate, PositionClose, PositionCreate, PositionUpdate
from shared.errors import BadRequest
from shared.numbers import AMOUNT, PRICE, QUANTITY


def test_numbers_are_read_exactly_never_through_a_float():
    value = read_json(b'{"a": 0.1, "b": 1.10, "c": 1e400, "d": 12345678901234567890123, "e": "1.5"}')
    assert value == {"a": Decimal("0.1"), "b": Decimal("1.10"), "c": Decimal("1E+400"),
                     "d": 12345678901234567890123, "e": "1.5"}
    assert str(value["b"]) == "1.10"


@pytest.mark.parametrize(("raw", "code"), [
    (b'{"qty": "\xff"}', "malformed_request"),
    (b"\xc3\x28", "malformed_request"),
    (b"[" * 10_000 + b"]" * 10_000, "malformed_request"),
    (b'{"a":' * 10_000 + b"1" + b"}" * 10_000, "malformed_request"),
    (b"[" * (MAX_DEPTH + 1) + b"]" * (MAX_DEPTH + 1), "malformed_request"),
    (b'{"a": "\\ud800"}', "malformed_request"),
    (b"{", "malformed_request"),
    (b"NaN", "malformed_request"),
    (b'{"a": 1e99999999999999999999999999}', "invalid_number"),
    (b'{"qty": "1", "qty": "2"}', "duplicate_key"),
    (b'{"a": {"b": 1, "b": 1}}', "duplicate_key"),
    (b'[{"x": 1}, {"y": 2, "y": 3}]', "duplicate_key"),
    (b'{"a": 1, "\\u0061": 2}', "duplicate_key"),
])
def test_bad_json_is_a_json_error_with_a_code(raw, code):
    with pytest.raises(JsonError) as raised:
        read_json(raw)
    assert raised.value.code == code and raised.value.message


def test_nesting_up_to_the_limit_and_keys_inside_strings_are_fine():
    assert read_json(b"[" * MAX_DEPTH + b"]" * MAX_DEPTH)
    assert read_json(b'{"a": "\\"a\\": 1, \\"a\\": 2", "b": ["\\\\", {"c": "\\":"}]}') == {
        "a": '"a": 1, "a": 2', "b": ["\\", {"c": '":'}]}


def test_the_decimal_fields_of_each_body_are_found():
    assert number_plan(PositionCreate) == {"qty": QUANTITY, "stop_loss": PRICE, "take_profit": PRICE,
                                           "trailing_distance": PRICE, "expected_price": PRICE,
                                           "max_deviation": PRICE}
    assert number_plan(PositionUpdate) == {"stop_loss": PRICE, "take_profit": PRICE, "trailing_distance": PRICE}
    assert number_plan(OrderCreate) == {"qty": QUANTITY, "price": PRICE, "stop_loss": PRICE, "take_profit": PRICE,
                                        "trailing_distance": PRICE}
    assert number_plan(PositionClose | None) == {"qty": QUANTITY}
    assert number_plan(DepositRequest) == {"amount": AMOUNT}


def test_decimal_fields_are_checked_and_replaced_by_their_value():
    body = {"symbol": "SOL_USDC", "qty": "1E+1", "stop_loss": None, "take_profit": Decimal("120.50")}
    assert check_numbers(body, number_plan(PositionCreate)) == {
        "symbol": "SOL_USDC", "qty": Decimal(10), "stop_loss": None, "take_profit": Decimal("120.50")}
    with pytest.raises(BadRequest) as raised:
        check_numbers({"qty": "1", "stop_loss": "１"}, number_plan(PositionCreate))
    assert raised.value.code == "invalid_number" and raised.value.details["field"] == "stop_loss"
    assert "stop_loss" in raised.value.message


def test_a_websocket_frame_nested_2000_deep_is_an_error_frame():
    with pytest.raises(ProtocolError) as raised:
        parse_op("[" * 2000)
    assert raised.value.code == "invalid_json"
    with pytest.raises(ProtocolError) as raised:
        parse_op("[" * 2000 + "]" * 2000)
    assert raised.value.code == "invalid_json"
    with pytest.raises(ProtocolError) as raised:
        parse_op('{"op": "ping", "op": "auth"}')
    assert raised.value.code == "invalid_frame"
