"""The decimal grammar and ranges every decimal field takes (`shared.numbers`)."""

from __future__ import annotations

from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from shared.numbers import AMOUNT, PRICE, QUANTITY, InvalidNumber, parse_decimal


@pytest.mark.parametrize(("text", "value"), [
    ("1", "1"), ("1.5", "1.5"), ("-0.25", "-0.25"), ("2.50", "2.50"), ("0", "0"), ("-0", "0"),
    ("1E+3", "1000"), ("1e3", "1000"), ("15e-1", "1.5"), ("1e-8", "0.00000001"), ("0e999999", "0"),
    ("1.000000000000000", "1.0000000000"), ("1000000000", "1000000000"), ("0.0000000001", "0.0000000001"),
])
def test_decimal_strings_are_read_exactly(text, value):
    assert parse_decimal(text, QUANTITY) == Decimal(value)
    assert str(parse_decimal(text, QUANTITY)) == str(Decimal(value))


@pytest.mark.parametrize("text", [
    "１", "١", "1_000", " 1", "1 ", "+1", "NaN", "nan", "sNaN", "Infinity", "-Infinity", "inf", "1.", ".5", "01",
    "1e", "1e+", "--1", "0x10", "1,5", "", "-", "1" * 41, "1\n", "½",
])
def test_anything_else_breaks_the_grammar(text):
    with pytest.raises(InvalidNumber) as raised:
        parse_decimal(text, QUANTITY)
    assert "is not a decimal" in raised.value.reason


@pytest.mark.parametrize(("value", "kind"), [
    ("1E+25", QUANTITY), ("99999999999999999999999999.99", QUANTITY), ("1000000000.1", QUANTITY),
    ("0.00000000001", QUANTITY), ("1e-400", PRICE), ("1e400", PRICE), ("-1e10", PRICE), ("1e309", AMOUNT),
    ("1e99999999999999999999999", AMOUNT), (10**13, AMOUNT), (Decimal("1E+400"), QUANTITY),
])
def test_magnitudes_and_precisions_outside_the_range_are_refused(value, kind):
    with pytest.raises(InvalidNumber) as raised:
        parse_decimal(value, kind)
    assert "outside the range" in raised.value.reason


def test_each_kind_has_its_range():
    assert parse_decimal("1000000000000", AMOUNT) == Decimal(10) ** 12
    with pytest.raises(InvalidNumber):
        parse_decimal("1000000000000", QUANTITY)


@pytest.mark.parametrize("value", [True, None, 1.5, [], {}])
def test_other_json_types_are_not_decimals(value):
    with pytest.raises(InvalidNumber):
        parse_decimal(value, QUANTITY)


def test_json_numbers_are_taken_as_read():
    assert parse_decimal(5, QUANTITY) == 5
    assert str(parse_decimal(Decimal("1.10"), QUANTITY)) == "1.10"


@given(st.text(max_size=60) | st.from_regex(r"-?[0-9]{1,30}(\.[0-9]{1,30})?([eE][+-]?[0-9]{1,30})?", fullmatch=True))
def test_no_input_raises_anything_but_invalid_number(text):
    try:
        value = parse_decimal(text, QUANTITY)
    except InvalidNumber:
        return
    assert value.is_finite() and abs(value) <= QUANTITY.max_abs and value.as_tuple().exponent >= -QUANTITY.places
