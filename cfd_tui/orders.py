"""Checking what a trader typed before anything is sent: the order ticket (a market order, or a limit or stop
order that waits for its price), a partial close, new stops, a working order's changes.

Pure functions over the market's terms (`shared.markets`), the trading rules (`shared.trading`) and the
latest quote; each returns the parsed request or the errors by field, with messages fit for the form, and
the preview the ticket shows (margin, costs, stop-out estimate, or for a pending order what triggers it).
"""

from __future__ import annotations

import re
from datetime import datetime, timedelta, tzinfo
from decimal import ROUND_CEILING, ROUND_FLOOR, Decimal, InvalidOperation
from typing import Literal

import msgspec
from msgspec import Struct

from cfd_client.models import Account, Order, Position, Side
from shared.contracts.quote import Quote
from shared.costs import commission, daily_financing
from shared.errors import CfdError
from shared.markets import Market
from shared.trading import (
    check_order,
    check_order_price,
    check_stops,
    check_trailing,
    close_price,
    margin,
    money,
    open_price,
    order_triggered,
    pnl,
    stop_out_price,
)

OrderKind = Literal["market", "limit", "stop"]
"""What the ticket sends: a market order (`open_position`), or a pending limit or stop order (`place_order`)."""

EXPIRY_HELP = "Leave it empty (good till cancelled), or give a duration like 30m, 1h or 2d, or a time like 17:30."
_DURATION = re.compile(r"^(\d+)\s*(m|min|mins|h|hr|hrs|d|w)$")
_UNITS = {"m": 60, "min": 60, "mins": 60, "h": 3600, "hr": 3600, "hrs": 3600, "d": 86_400, "w": 604_800}
_CLOCK = re.compile(r"^(\d{1,2}):(\d{2})$")
_WHEN = re.compile(r"^(\d{4})-(\d{2})-(\d{2})[ T](\d{1,2}):(\d{2})(?::(\d{2}))?$")


class OrderPlan(Struct, kw_only=True):
    """A checked order, ready for `open_position` (`kind` market) or `place_order` (limit or stop, at `price`)."""

    symbol: str
    side: Side
    qty: Decimal
    leverage: int
    stop_loss: Decimal | None = None
    take_profit: Decimal | None = None
    trailing_distance: Decimal | None = None
    kind: OrderKind = "market"
    price: Decimal | None = None  # a pending order's price
    expires_at: int | None = None  # a pending order's expiry (epoch ms); None: good till cancelled


class OrderPreview(Struct, kw_only=True):
    """What the ticket shows while the trader types (any part may be unknown yet)."""

    price: Decimal | None = None
    qty: Decimal | None = None
    notional: Decimal | None = None
    margin: Decimal | None = None
    free_after: Decimal | None = None
    stop_out: Decimal | None = None
    shortfall: Decimal | None = None  # the margin missing when the account cannot afford the order (no stop-out)
    commission: Decimal | None = None  # charged on opening (as much again on closing)
    financing_per_day: Decimal | None = None  # paid at each daily rollover while open (negative: credited)
    reached: bool = False  # a pending order whose price the market is already past: it fills at the next tick


class Checked(Struct, kw_only=True):
    """The outcome of a check: `plan` when there are no `errors` (field → message)."""

    errors: dict[str, str]
    plan: OrderPlan | None = None
    preview: OrderPreview = msgspec.field(default_factory=OrderPreview)


def parse_decimal(raw: str, what: str) -> Decimal | None:
    """A decimal from a form field (commas and spaces allowed, empty → None); `ValueError` with a message."""
    text = raw.strip().replace(",", "").replace(" ", "").replace("_", "")
    if not text:
        return None
    try:
        value = Decimal(text)
    except InvalidOperation:
        raise ValueError(f"The {what} must be a number, like 0.5.") from None
    if not value.is_finite():
        raise ValueError(f"The {what} must be a number, like 0.5.")
    return value


def parse_expiry(raw: str, now_ms: int, tz: tzinfo | None = None) -> int | None:
    """A pending order's expiry as typed, in epoch ms: empty or `GTC` → None (good till cancelled); a duration
    (`30m`, `1h`, `2d`, `1w`) from now; a time of day (`17:30`, today, or tomorrow once past) or a date and time
    (`2026-01-02 17:30`) in `tz`. `ValueError` with a message otherwise, or when that time has passed."""
    text = raw.strip().lower()
    if text in ("", "gtc"):
        return None
    if match := _DURATION.match(text):
        seconds = int(match[1]) * _UNITS[match[2]]
        if seconds <= 0:
            raise ValueError("The expiry must be in the future. " + EXPIRY_HELP)
        return now_ms + seconds * 1000
    now = datetime.fromtimestamp(now_ms / 1000, tz).astimezone(tz)
    try:
        if match := _CLOCK.match(text):
            at = now.replace(hour=int(match[1]), minute=int(match[2]), second=0, microsecond=0)
            if at <= now:
                at += timedelta(days=1)
        elif match := _WHEN.match(text):
            at = now.replace(year=int(match[1]), month=int(match[2]), day=int(match[3]), hour=int(match[4]),
                             minute=int(match[5]), second=int(match[6] or 0), microsecond=0)
        else:
            raise ValueError(EXPIRY_HELP)
    except ValueError as exc:  # 25:00, February 30th
        raise ValueError(EXPIRY_HELP if str(exc) == EXPIRY_HELP else f"That is not a time. {EXPIRY_HELP}") from None
    expires = int(at.timestamp() * 1000)
    if expires <= now_ms:
        raise ValueError("That time has passed. " + EXPIRY_HELP)
    return expires


def _parse_int(raw: str, what: str) -> int | None:
    text = raw.strip().rstrip("x×")
    if not text:
        return None
    if not text.isdigit():
        raise ValueError(f"The {what} must be a whole number, like 10.")
    return int(text)


class ParsedTicket(Struct, kw_only=True):
    """The ticket's fields read as numbers: None where a field is empty or not a number (`errors` then says
    why, by field)."""

    in_usd: bool  # the amount is in USD, not a quantity
    kind: OrderKind = "market"
    amount: Decimal | None = None
    leverage: int | None = None
    stop_loss: Decimal | None = None
    take_profit: Decimal | None = None
    trailing_distance: Decimal | None = None
    price: Decimal | None = None  # a pending order's price (not read for a market order)
    expires_at: int | None = None  # a pending order's expiry (not read for a market order)
    errors: dict[str, str] = msgspec.field(default_factory=dict)


class ValidTicket(Struct, kw_only=True):
    """A parsed ticket held against the market's rules at the price it would open at.

    `qty` is what the amount comes to (in USD, the whole quantity steps it buys), kept even when it breaks a
    rule, since the preview shows it; `leverage` is None unless it is valid. `errors` holds the parse errors
    and every rule broken, by field. `price` is what the order is valued at: the opening side of the quote
    for a market order (None when the market has no quote yet), the order's own price for a pending one (None
    until it is a valid price)."""

    side: Side
    errors: dict[str, str]
    kind: OrderKind = "market"
    price: Decimal | None = None
    qty: Decimal | None = None
    leverage: int | None = None
    reached: bool = False  # a pending order the quote already triggers


def parse_ticket(*, amount: str, in_usd: bool, leverage: str, stop_loss: str, take_profit: str,
                 kind: OrderKind = "market", trailing: str = "", price: str = "", expiry: str = "",
                 now_ms: int = 0, tz: tzinfo | None = None) -> ParsedTicket:
    """Read the ticket's fields as typed; a field that is not a number gets its error. A pending order's price
    and expiry (against `now_ms` and `tz`) are read only for a limit or stop order."""
    errors: dict[str, str] = {}

    def number(field: str, raw: str, what: str) -> Decimal | None:
        try:
            return parse_decimal(raw, what)
        except ValueError as exc:
            errors[field] = str(exc)
            return None

    parsed = ParsedTicket(in_usd=in_usd, errors=errors,
                          amount=number("amount", amount, "amount in USD" if in_usd else "quantity"),
                          stop_loss=number("stop_loss", stop_loss, "stop-loss"),
                          take_profit=number("take_profit", take_profit, "take-profit"),
                          trailing_distance=number("trailing_distance", trailing, "trailing distance"), kind=kind)
    try:
        parsed.leverage = _parse_int(leverage, "leverage")
    except ValueError as exc:
        errors["leverage"] = str(exc)
    if kind != "market":
        parsed.price = number("price", price, "order price")
        try:
            parsed.expires_at = parse_expiry(expiry, now_ms, tz)
        except ValueError as exc:
            errors["expires_at"] = str(exc)
    return parsed


def validate_ticket(market: Market, side: Side, quote: Quote | None, parsed: ParsedTicket) -> ValidTicket:
    """Hold a parsed ticket against the market's terms and the order and stop rules (`shared.trading`): a
    market order at the price it would open at now (its trailing distance against the price it would close
    at), a pending order at its own price (its stops and trailing distance against that price, as the platform
    checks them when it is placed); the first error of each field is kept."""
    errors = dict(parsed.errors)
    kind = parsed.kind
    lev = parsed.leverage
    if lev is None and "leverage" not in errors:
        errors["leverage"] = f"Choose a leverage from 1 to {market.max_leverage}."
    elif lev is not None and not 1 <= lev <= market.max_leverage:
        errors["leverage"] = f"The leverage for {market.symbol} is 1 to {market.max_leverage}."
    price: Decimal | None = None
    reached = False
    if kind == "market":
        if quote is None:
            errors["price"] = f"There is no price for {market.symbol} yet."
            return ValidTicket(side=side, errors=errors, kind=kind)
        price = open_price(side, quote)
    else:
        if parsed.price is None and "price" not in errors:
            errors["price"] = f"Enter the price at which the {kind} order opens the position."
        elif parsed.price is not None:
            try:
                check_order_price(parsed.price, market)
                price = parsed.price
            except CfdError as exc:
                errors.setdefault("price", exc.message)
        if price is not None and quote is not None:
            reached = order_triggered(side, kind, price, quote)
    amount, in_usd = parsed.amount, parsed.in_usd
    qty: Decimal | None = None
    if amount is None and "amount" not in errors:
        errors["amount"] = "Enter an amount in USD." if in_usd else "Enter a quantity."
    elif amount is not None:
        if amount <= 0:
            errors["amount"] = "The amount must be more than zero." if in_usd else "The quantity must be positive."
        elif not in_usd:
            qty = amount
        elif price is not None:  # in USD: what it buys at the price it is valued at (none yet: no quantity)
            qty = (amount / price).quantize(market.qty_step, rounding=ROUND_FLOOR)
    if qty is not None and in_usd and price is not None and qty < market.min_qty and "amount" not in errors:
        errors["amount"] = (f"{amount:,f} USD buys less than the minimum {market.min_qty} {market.base} "
                            f"(about {market.min_qty * price:,.2f} USD). Enter a larger amount.")
    if qty is not None and "amount" not in errors:
        try:
            check_order(market, side, qty, lev if lev and "leverage" not in errors else 1)
        except CfdError as exc:
            field = _field(exc, "amount")
            errors.setdefault("amount" if field == "qty" else field, exc.message)
    if price is not None:
        stops = {k: v for k, v in (("stop_loss", parsed.stop_loss), ("take_profit", parsed.take_profit))
                 if k not in errors}
        try:
            check_stops(side, price, stops.get("stop_loss"), stops.get("take_profit"), market)
        except CfdError as exc:
            errors.setdefault(_field(exc, "stop_loss"), exc.message)
    if "trailing_distance" not in errors:
        # no price yet: the tick rule alone (a long's distance is held against the price once there is one)
        reference = close_price(side, quote) if kind == "market" and quote is not None else price
        try:
            check_trailing(side, parsed.trailing_distance, reference or Decimal("Infinity"), market)
        except CfdError as exc:
            errors.setdefault("trailing_distance", exc.message)
    return ValidTicket(side=side, errors=errors, kind=kind, price=price, qty=qty,
                       leverage=lev if "leverage" not in errors else None, reached=reached)


def preview_order(ticket: ValidTicket, account: Account | None, market: Market | None = None) -> OrderPreview:
    """What the order comes to: its price, quantity and value as far as they are known; once its size and
    leverage are valid, the margin it uses and (with the `market`) its costs: the commission paid on opening
    and the financing of each day it stays open; with the account, the free margin left after both and
    either the price at which the account would be stopped out or, when it cannot afford the order, the
    margin missing.

    A pending order is valued at its own price, and the account as it is now (it may differ when the order
    triggers, and the fill is at that tick's quote): no stop-out estimate, and a shortfall is only a warning."""
    price, qty, lev = ticket.price, ticket.qty, ticket.leverage
    preview = OrderPreview(price=price, qty=qty, reached=ticket.reached,
                           notional=qty * price if qty is not None and price is not None else None)
    if price is None or qty is None or qty <= 0 or lev is None or "amount" in ticket.errors:
        return preview
    need = margin(qty, price, lev)
    preview.margin = need
    fee = Decimal(0)
    if market is not None:
        fee = preview.commission = money(commission(market, qty, price))
        preview.financing_per_day = money(daily_financing(market, ticket.side, qty, price))
    if account is None:
        return preview
    preview.free_after = account.free_margin - need - fee
    if need + fee > account.free_margin:
        # Not opened: a stop-out price would be meaningless (for a long it lies above the entry).
        preview.shortfall = need + fee - account.free_margin
    elif ticket.kind == "market":
        preview.stop_out = stop_out_price(ticket.side, qty, price, account.equity - fee, account.used_margin + need)
    return preview


def check_ticket(market: Market, quote: Quote | None, account: Account | None, *, side: Side, amount: str,
                 in_usd: bool, leverage: str, stop_loss: str, take_profit: str, kind: OrderKind = "market",
                 trailing: str = "", price: str = "", expiry: str = "", now_ms: int = 0,
                 tz: tzinfo | None = None) -> Checked:
    """Check an order ticket: parse its fields, validate them, preview the order (as far as the valid parts
    allow). A market order the account cannot afford is an error of the amount; a pending order is placed all
    the same (the platform judges it when it triggers), and the preview says it could not fill now."""
    parsed = parse_ticket(amount=amount, in_usd=in_usd, leverage=leverage, stop_loss=stop_loss,
                          take_profit=take_profit, kind=kind, trailing=trailing, price=price, expiry=expiry,
                          now_ms=now_ms, tz=tz)
    valid = validate_ticket(market, side, quote, parsed)
    preview = preview_order(valid, account, market)
    errors = dict(valid.errors)
    if kind == "market" and preview.shortfall is not None and preview.margin is not None and account is not None:
        fee = f" and {preview.commission:,.2f} of commission" if preview.commission else ""
        errors["amount"] = f"Not enough free margin: this needs {preview.margin:,.2f}{fee}, you have " \
                           f"{account.free_margin:,.2f}."
    if errors or valid.qty is None or valid.leverage is None:
        return Checked(errors=errors, preview=preview)
    plan = OrderPlan(symbol=market.symbol, side=side, qty=valid.qty, leverage=valid.leverage,
                     stop_loss=parsed.stop_loss, take_profit=parsed.take_profit,
                     trailing_distance=parsed.trailing_distance, kind=kind,
                     price=valid.price if kind != "market" else None,
                     expires_at=parsed.expires_at if kind != "market" else None)
    return Checked(errors={}, plan=plan, preview=preview)


def suggested_price(side: Side, kind: OrderKind, quote: Quote, market: Market) -> Decimal:
    """Where the ticket puts a new pending order's price: 1 % away from the price it would open at, on the
    side that order waits for (a buy limit below the ask, a buy stop above it; a sell limit above the bid, a
    sell stop below it), on the market's tick, so that it does not fill at the next tick unless moved there."""
    now = open_price(side, quote)
    waits_lower = (side == "long") == (kind == "limit")
    away = now * Decimal("0.99") if waits_lower else now * Decimal("1.01")
    ticks = (away / market.price_tick).to_integral_value(ROUND_FLOOR if waits_lower else ROUND_CEILING)
    return max(market.price_tick, ticks * market.price_tick)


def check_close(position: Position, market: Market, raw: str) -> tuple[Decimal | None, str | None]:
    """The quantity to close (None: all of it), or an error message."""
    try:
        qty = parse_decimal(raw, "quantity")
    except ValueError as exc:
        return None, str(exc)
    if qty is None or qty == position.qty:
        return None, None
    if qty <= 0:
        return None, "The quantity to close must be positive."
    if qty > position.qty:
        return None, f"You hold {position.qty}; you cannot close more."
    if qty % market.qty_step:
        return None, f"The quantity must be a multiple of {market.qty_step}."
    if position.qty - qty < market.min_qty:
        return None, f"That would leave less than the minimum {market.min_qty}; close it all instead."
    return qty, None


def close_estimate(position: Position, quote: Quote | None, qty: Decimal | None) -> Decimal | None:
    """The PnL closing `qty` (None: all) would realise at the latest quote."""
    if quote is None:
        return None
    return pnl(position.side, qty or position.qty, position.entry_price, close_price(position.side, quote))


def check_new_stops(position: Position, market: Market, quote: Quote | None, stop_loss: str,
                    take_profit: str, trailing: str | None = None) -> tuple[dict[str, Decimal | None], dict[str, str]]:
    """New stops for an open position (empty field → remove the stop; an empty trailing distance stops the
    trailing, the stop-loss staying where it got to); only changed fields are returned. `trailing` None leaves
    the trailing distance out."""
    errors: dict[str, str] = {}
    values: dict[str, Decimal | None] = {}
    fields = [("stop_loss", stop_loss, "stop-loss"), ("take_profit", take_profit, "take-profit")]
    if trailing is not None:
        fields.append(("trailing_distance", trailing, "trailing distance"))
    for field, raw, what in fields:
        try:
            values[field] = parse_decimal(raw, what)
        except ValueError as exc:
            errors[field] = str(exc)
    if errors:
        return {}, errors
    if quote is None:
        return {}, {"stop_loss": f"There is no price for {market.symbol} yet."}
    now = close_price(position.side, quote)
    try:
        check_stops(position.side, now, values["stop_loss"], values["take_profit"], market)
        check_trailing(position.side, values.get("trailing_distance"), now, market)
    except CfdError as exc:
        return {}, {_field(exc, "stop_loss"): exc.message}
    changed = {k: v for k, v in values.items() if v != getattr(position, k)}
    return changed, {}


ORDER_FIELDS = ("price", "qty", "stop_loss", "take_profit", "trailing_distance", "expires_at")
"""What can change in a working order, as `modify_order` names them."""


def check_order_edit(order: Order, market: Market, typed: dict[str, str], shown: dict[str, str], now_ms: int,
                     tz: tzinfo | None = None) -> tuple[dict[str, object], dict[str, str]]:
    """A working order's new terms, from the edit form: `typed` is each field of `ORDER_FIELDS` as it is now,
    `shown` as the form first showed it. Returns the changes to send (only the fields edited; an empty stop,
    trailing distance or expiry removes it) and the errors by field; the order as it would become is checked
    as the platform checks it (the market's size rules, the price tick, the stops and trailing distance
    against the order's price, an expiry in the future)."""
    errors: dict[str, str] = {}
    changes: dict[str, object] = {}
    for field in ORDER_FIELDS:
        raw = typed.get(field, "")
        if raw.strip() == shown.get(field, "").strip():
            continue
        try:
            if field == "expires_at":
                changes[field] = parse_expiry(raw, now_ms, tz)
            else:
                value = parse_decimal(raw, _WHAT[field])
                if value is None and field in ("price", "qty"):
                    raise ValueError(f"Enter the {_WHAT[field]}.")
                changes[field] = value
        except ValueError as exc:
            errors[field] = str(exc)
    if errors:
        return {}, errors
    changed = msgspec.structs.replace(order, **changes)
    try:
        check_order(market, changed.side, changed.qty, changed.leverage)
        check_order_price(changed.price, market)
        check_stops(changed.side, changed.price, changed.stop_loss, changed.take_profit, market)
        check_trailing(changed.side, changed.trailing_distance, changed.price, market)
    except CfdError as exc:
        field = _field(exc, "price")
        return {}, {field: exc.message}
    return changes, {}


_WHAT = {"price": "order price", "qty": "quantity", "stop_loss": "stop-loss", "take_profit": "take-profit",
         "trailing_distance": "trailing distance"}


def _field(exc: CfdError, default: str) -> str:
    if isinstance(exc.details, dict) and isinstance(exc.details.get("field"), str):
        return exc.details["field"]
    return default
