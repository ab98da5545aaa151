"""Decimal numbers as clients send them: one ASCII grammar, and a documented range for each kind of field.

A decimal is accepted as a string written exactly as a JSON number is (RFC 8259 §6): an optional `-`,
ASCII digits without a leading zero, an optional fraction and an optional exponent. So `"1.5"`, `"-0.25"`,
`"1E-8"` are decimals, and `"１"`, `"١"`, `"1_000"`, `" 1"`, `"+1"`, `"1."`, `".5"`, `"NaN"` and `"Infinity"`
are not. A JSON number is accepted too, read exactly from its digits (never through a float).

Each kind of field then has a range: the largest magnitude and the most decimal places it takes. The
database stores these values as NUMERIC(28,10), so no kind takes more than 10 decimal places, and the
magnitudes keep every product the engine computes from them (margin, PnL) well inside the column.
Signs and business rules (a quantity must be positive, an amount whole cents) are checked later, as 422s.

The checks never compute in a decimal context, so no input, however large its exponent, can raise.
"""

from __future__ import annotations

import re
from decimal import Decimal, InvalidOperation
from typing import Annotated

from msgspec import Meta, Struct

GRAMMAR = r"^-?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?$"
MAX_CHARS = 40

_GRAMMAR = re.compile(GRAMMAR, re.ASCII)


class NumberKind(Struct, frozen=True):
    """A kind of decimal field and its range: at most `max_abs` in magnitude, at most `places` decimals."""

    name: str
    max_abs: Decimal
    places: int

    def describe(self) -> str:
        return f"at most {self.max_abs:,f} in magnitude, with at most {self.places} decimal places"


QUANTITY = NumberKind("quantity", Decimal(10) ** 9, 10)
PRICE = NumberKind("price", Decimal(10) ** 9, 10)
AMOUNT = NumberKind("amount", Decimal(10) ** 12, 10)
RATE = NumberKind("rate", Decimal(1), 10)  # a fraction: of the notional (commission) or a year's (financing)
SPREAD = NumberKind("spread", Decimal(10) ** 4, 4)  # basis points
# The largest balance an account may reach through deposits: a thousand times the largest deposit, and
# still a thousand times under what the NUMERIC(28,10) column holds.
MAX_BALANCE = Decimal(10) ** 15


class InvalidNumber(ValueError):
    """A value that is not a decimal of its kind; `reason` says what is wrong, for a person."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def parse_decimal(value: object, kind: NumberKind) -> Decimal:
    """The exact `Decimal` of `value` (a decimal string, an int, or a `Decimal` read from a JSON number),
    with no positive exponent ("1E+3" is 1000); raises `InvalidNumber` when it breaks the grammar or the
    range of `kind`."""
    if isinstance(value, str):
        if len(value) > MAX_CHARS or not _GRAMMAR.fullmatch(value):
            raise InvalidNumber(f"{_shown(value)} is not a decimal: write ASCII digits with an optional leading "
                                '"-", "." and exponent, like "1.5" (no spaces, "+", "_", NaN or Infinity)')
        try:
            number = Decimal(value)
        except InvalidOperation:  # an exponent beyond what Decimal can hold at all
            raise InvalidNumber(f"{_shown(value)} is outside the range: {kind.describe()}") from None
    elif isinstance(value, int) and not isinstance(value, bool):
        number = Decimal(value)
    elif isinstance(value, Decimal):
        number = value
    else:
        raise InvalidNumber(f"expected a decimal string like \"1.5\", got {type(value).__name__}")
    return _in_range(number, kind, value)


def _in_range(number: Decimal, kind: NumberKind, shown: object) -> Decimal:
    if not number.is_finite():
        raise InvalidNumber(f"{_shown(shown)} is not a finite decimal")
    sign, digits, exponent = number.as_tuple()
    assert isinstance(exponent, int)
    if number and -kind.places <= exponent <= 0 and number.copy_abs() <= kind.max_abs:
        return number  # the usual case: plain notation, in range
    while exponent < -kind.places and len(digits) > 1 and digits[-1] == 0:  # "1.000000000000" is 1
        digits, exponent = digits[:-1], exponent + 1
    if not any(digits):
        return Decimal(0)
    if exponent < -kind.places or number.copy_abs() > kind.max_abs:
        raise InvalidNumber(f"{_shown(shown)} is outside the range: {kind.describe()}")
    if exponent > 0:  # plain notation: "1E+3" is 1000
        return Decimal((sign, digits + (0,) * exponent, 0))
    return Decimal((sign, digits, exponent))  # "2.50" stays 2.50


def _shown(value: object) -> str:
    text = value if isinstance(value, str) else str(value)
    return repr(text if len(text) <= MAX_CHARS else text[:MAX_CHARS] + "…")


def _field(kind: NumberKind, description: str, example: str) -> Meta:
    text = f"{description} A decimal string ({kind.describe()}); a JSON number is read exactly."
    # msgspec keeps `extra` for `cfd_server.body`; Litestar copies `extra_json_schema["extra"]` into OpenAPI.
    return Meta(extra={"number": kind}, extra_json_schema={
        "description": text, "examples": [example],
        "extra": {"type": ["string", "number"], "pattern": GRAMMAR, "max_length": MAX_CHARS},
    })


Quantity = Annotated[Decimal, _field(QUANTITY, "A quantity of the market's base asset.", "1.5")]
Price = Annotated[Decimal, _field(PRICE, "A price in the quote currency.", "184.25")]
Amount = Annotated[Decimal, _field(AMOUNT, "An amount of USD.", "2500")]
Rate = Annotated[Decimal, _field(RATE, "A rate as a fraction (0.001 is 0.1 %).", "0.001")]
Spread = Annotated[Decimal, _field(SPREAD, "A spread in basis points (1 is 0.01 %).", "6")]


def number_kind(meta_extra: dict | None) -> NumberKind | None:
    """The kind a field declares through its `Meta(extra=...)`, if any."""
    kind = (meta_extra or {}).get("number")
    return kind if isinstance(kind, NumberKind) else None
