"""Reading what a client sends as JSON: request bodies and WebSocket frames.

One reader for both, stricter than a plain JSON decode: the text must be UTF-8, objects and arrays nest at
most `MAX_DEPTH` deep, an object names each key once, and numbers are read exactly (a JSON number becomes
a `Decimal` from its digits, never a float). A request body is then checked against the handler's body
type: every decimal field (`shared.numbers.Quantity`, `Price`, `Amount`) must follow the decimal grammar
and its kind's range, and is replaced by its exact `Decimal`; msgspec checks everything else.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from decimal import Decimal, InvalidOperation
from functools import cache
from typing import Any

import msgspec
from litestar import Request
from litestar.handlers import HTTPRouteHandler
from litestar.types import Empty

from shared.errors import BadRequest
from shared.numbers import InvalidNumber, NumberKind, number_kind, parse_decimal

MAX_DEPTH = 32

# In valid JSON every `"` outside a string opens one, so scanning string after string finds each of them;
# a string followed by `:` is an object key.
_STRING = re.compile(rb'"(?:[^"\\]|\\.)*"([ \t\n\r]*:)?')


class JsonError(ValueError):
    """Input that is not acceptable JSON; `code` and `message` are what the client is told."""

    def __init__(self, code: str, message: str, details: Any = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.details = details


class _NumberTooLarge(Exception):
    pass


def _exact_number(literal: str) -> Decimal:
    try:
        return Decimal(literal)
    except InvalidOperation:  # an exponent beyond what Decimal holds at all
        raise _NumberTooLarge(literal) from None


_decoder = msgspec.json.Decoder(float_hook=_exact_number)


def read_json(data: bytes | str, what: str = "body") -> Any:
    """Decode one JSON document (a request `body`, a WebSocket `frame`) with the rules above; raises
    `JsonError` with code `malformed_request`, `invalid_number` or `duplicate_key`."""
    raw = data.encode() if isinstance(data, str) else data
    try:
        value = _decoder.decode(raw)
    except UnicodeDecodeError:
        raise JsonError("malformed_request", f"The {what} is not valid UTF-8; send JSON encoded as UTF-8.") from None
    except RecursionError:
        raise _too_deep(what) from None
    except _NumberTooLarge as exc:
        raise JsonError("invalid_number", f"The number {str(exc)[:40]} in the {what} is far outside any range "
                        "this API takes.") from None
    except msgspec.DecodeError as exc:
        raise JsonError("malformed_request", f"The {what} is not valid JSON ({exc}); send a JSON object.") from None
    keys = _count_keys(value, what)
    # Every key is followed by a colon, so as many colons as decoded keys proves no key was repeated; only
    # when some colons are inside strings are the keys of the text counted one by one.
    if keys != raw.count(b":") and keys != sum(1 for match in _STRING.finditer(raw) if match.group(1)):
        key = _first_duplicate(raw)
        raise JsonError("duplicate_key", f"The key {key!r} appears more than once in one object of the {what}; "
                        "send each key once.", {"key": key})
    return value


def _too_deep(what: str) -> JsonError:
    return JsonError("malformed_request", f"The {what} nests arrays and objects more than {MAX_DEPTH} deep; "
                     "nothing this API takes is nested that deep.")


def _count_keys(value: Any, what: str) -> int:
    """Keys of every object in `value` (after duplicates collapsed); raises if it nests beyond MAX_DEPTH."""
    keys = 0
    stack = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        children: Iterable[Any]
        if isinstance(item, dict):
            keys += len(item)
            children = item.values()
        elif isinstance(item, list):
            children = item
        else:
            continue
        for child in children:
            if isinstance(child, dict | list):
                if depth >= MAX_DEPTH:
                    raise _too_deep(what)
                stack.append((child, depth + 1))
    return keys


def _first_duplicate(raw: bytes) -> str:
    found: list[str] = []

    def pairs(items: list[tuple[str, Any]]) -> dict:
        seen: set[str] = set()
        for key, _ in items:
            if key in seen and not found:
                found.append(key)
            seen.add(key)
        return {}

    try:
        json.loads(raw, object_pairs_hook=pairs)
    except ValueError:  # msgspec read it, so this is only a limit of the json module: the key stays unnamed
        pass
    return found[0][:60] if found else ""


# --- request bodies ----------------------------------------------------------------------------------------

# How to find the decimal fields of a body type: a field name maps to its kind, or to the plan of a nested
# object (a dict), or of each item of an array (a one-element tuple).
Plan = dict[str, "NumberKind | Plan | tuple[Plan]"]


@cache
def number_plan(annotation: Any) -> Plan | None:
    """Where the decimal fields of `annotation` are, or None when it has none."""
    return _plan(msgspec.inspect.type_info(annotation))


def _plan(info: msgspec.inspect.Type) -> Any:
    if isinstance(info, msgspec.inspect.Metadata):
        kind = number_kind(info.extra)
        return kind if kind is not None else _plan(info.type)
    if isinstance(info, msgspec.inspect.UnionType):
        plans = [p for p in (_plan(t) for t in info.types) if p is not None]
        return plans[0] if len(plans) == 1 else None
    if isinstance(info, msgspec.inspect.StructType):
        fields = {f.encode_name: p for f in info.fields if (p := _plan(f.type)) is not None}
        return fields or None
    if isinstance(info, msgspec.inspect.ListType | msgspec.inspect.VarTupleType):
        item = _plan(info.item_type)
        return (item,) if item is not None else None
    return None


def check_numbers(value: Any, plan: Any, path: str = "") -> Any:
    """Replace each decimal in `value` by its exact `Decimal`; raise `BadRequest` naming the first bad one.
    Values of the wrong JSON type are left for msgspec to refuse."""
    if isinstance(plan, NumberKind):
        if value is None or isinstance(value, bool | dict | list):
            return value
        try:
            return parse_decimal(value, plan)
        except InvalidNumber as exc:
            raise BadRequest(f"{path or 'The value'}: {exc.reason}.", code="invalid_number",
                             details={"field": path, "kind": plan.name, "max_abs": f"{plan.max_abs:f}",
                                      "max_places": plan.places}) from None
    if isinstance(plan, tuple) and isinstance(value, list):
        return [check_numbers(item, plan[0], f"{path}[{i}]") for i, item in enumerate(value)]
    if isinstance(plan, dict) and isinstance(value, dict):
        for name, field_plan in plan.items():
            if name in value:
                value[name] = check_numbers(value[name], field_plan, f"{path}.{name}" if path else name)
    return value


def read_body(body: bytes, handler: HTTPRouteHandler) -> Any:
    """The decoded body of a request to `handler`, with its decimal fields checked."""
    try:
        value = read_json(body)
    except JsonError as exc:
        raise BadRequest(exc.message, code=exc.code, details=exc.details) from None
    data = handler.parsed_data_field
    plan = number_plan(data.annotation) if data is not None else None
    return check_numbers(value, plan) if plan is not None else value


class JsonBodyRequest(Request):
    """A Litestar request whose JSON body is read by `read_body`: a client's mistake is a 400, never a 500."""

    async def json(self) -> Any:
        if self._json is Empty:
            if (cached := self._connection_state.json) is not Empty:
                self._json = cached
            else:
                self._json = self._connection_state.json = read_body(await self.body() or b"null",
                                                                     self.route_handler)
        return self._json
