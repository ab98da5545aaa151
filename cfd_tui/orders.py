"""Checking what a trader typed before anything is sent: the order ticket, a partial close, new stops.

Pure functions over the market's terms (`shared.markets`), the trading rules (`shared.trading`) and the
latest quote; each returns the parsed request or the errors by field, with messages fit for the form, and
the preview the ticket shows (margin, costs, stop-out estimate).
"""

from __future__ import annotations

from decimal import ROUND_FLOOR, Decimal, InvalidOperation

import msgspec
from msgspec import Struct

from cfd_client.models import Account, Position, Side
from shared.contracts.quote import Quote
from shared.costs import commission, daily_financing
from shared.errors import CfdError
from shared.markets import Market
from shared.trading import check_order, check_stops, close_price, margin, money, open_price, pnl, stop_out_price


class OrderPlan(Struct, kw_only=True):
    """A checked order, ready for `open_position`."""

    symbol: str
    side: Side
    qty: Decimal
    leverage: int
    stop_loss: Decimal | None = None
    take_profit: Decimal | None = None


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
    amount: Decimal | None = None
    leverage: int | None = None
    stop_loss: Decimal | None = None
    take_profit: Decimal | None = None
    errors: dict[str, str] = msgspec.field(default_factory=dict)


class ValidTicket(Struct, kw_only=True):
    """A parsed ticket held against the market's rules at the price it would open at.

    `qty` is what the amount comes to (in USD, the whole quantity steps it buys), kept even when it breaks a
    rule, since the preview shows it; `leverage` is None unless it is valid. `errors` holds the parse errors
    and every rule broken, by field; `price` is None when the market has no quote yet."""

    side: Side
    errors: dict[str, str]
    price: Decimal | None = None
    qty: Decimal | None = None
    leverage: int | None = None


def parse_ticket(*, amount: str, in_usd: bool, leverage: str, stop_loss: str, take_profit: str) -> ParsedTicket:
    """Read the ticket's fields as typed; a field that is not a number gets its error."""
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
                          take_profit=number("take_profit", take_profit, "take-profit"))
    try:
        parsed.leverage = _parse_int(leverage, "leverage")
    except ValueError as exc:
        errors["leverage"] = str(exc)
    return parsed


def validate_ticket(market: Market, side: Side, quote: Quote | None, parsed: ParsedTicket) -> ValidTicket:
    """Hold a parsed ticket against the market's terms and the order and stop rules (`shared.trading`), at
    the price the order would open at now; the first error of each field is kept."""
    errors = dict(parsed.errors)
    lev = parsed.leverage
    if lev is None and "leverage" not in errors:
        errors["leverage"] = f"Choose a leverage from 1 to {market.max_leverage}."
    elif lev is not None and not 1 <= lev <= market.max_leverage:
        errors["leverage"] = f"The leverage for {market.symbol} is 1 to {market.max_leverage}."
    if quote is None:
        errors["price"] = f"There is no price for {market.symbol} yet."
        return ValidTicket(side=side, errors=errors)
    price = open_price(side, quote)
    amount, in_usd = parsed.amount, parsed.in_usd
    qty: Decimal | None = None
    if amount is None and "amount" not in errors:
        errors["amount"] = "Enter an amount in USD." if in_usd else "Enter a quantity."
    elif amount is not None:
        if amount <= 0:
            errors["amount"] = "The amount must be more than zero." if in_usd else "The quantity must be positive."
        else:
            qty = (amount / price).quantize(market.qty_step, rounding=ROUND_FLOOR) if in_usd else amount
    if qty is not None and in_usd and qty < market.min_qty and "amount" not in errors:
        errors["amount"] = (f"{amount:,f} USD buys less than the minimum {market.min_qty} {market.base} "
                            f"(about {market.min_qty * price:,.2f} USD). Enter a larger amount.")
    if qty is not None and "amount" not in errors:
        try:
            check_order(market, side, qty, lev if lev and "leverage" not in errors else 1)
        except CfdError as exc:
            field = _field(exc, "amount")
            errors.setdefault("amount" if field == "qty" else field, exc.message)
    stops = {k: v for k, v in (("stop_loss", parsed.stop_loss), ("take_profit", parsed.take_profit))
             if k not in errors}
    try:
        check_stops(side, price, stops.get("stop_loss"), stops.get("take_profit"), market)
    except CfdError as exc:
        errors.setdefault(_field(exc, "stop_loss"), exc.message)
    return ValidTicket(side=side, errors=errors, price=price, qty=qty,
                       leverage=lev if "leverage" not in errors else None)


def preview_order(ticket: ValidTicket, account: Account | None, market: Market | None = None) -> OrderPreview:
    """What the order comes to: its price, quantity and value as far as they are known; once its size and
    leverage are valid, the margin it uses and (with the `market`) its costs: the commission paid on opening
    and the financing of each day it stays open; with the account, the free margin left after both and
    either the price at which the account would be stopped out or, when it cannot afford the order, the
    margin missing."""
    price, qty, lev = ticket.price, ticket.qty, ticket.leverage
    preview = OrderPreview(price=price, qty=qty,
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
    else:
        preview.stop_out = stop_out_price(ticket.side, qty, price, account.equity - fee, account.used_margin + need)
    return preview


def check_ticket(market: Market, quote: Quote | None, account: Account | None, *, side: Side, amount: str,
                 in_usd: bool, leverage: str, stop_loss: str, take_profit: str) -> Checked:
    """Check an order ticket: parse its fields, validate them, preview the order (as far as the valid parts
    allow); an order the account cannot afford is an error of the amount."""
    parsed = parse_ticket(amount=amount, in_usd=in_usd, leverage=leverage, stop_loss=stop_loss,
                          take_profit=take_profit)
    valid = validate_ticket(market, side, quote, parsed)
    preview = preview_order(valid, account, market)
    errors = dict(valid.errors)
    if preview.shortfall is not None and preview.margin is not None and account is not None:
        fee = f" and {preview.commission:,.2f} of commission" if preview.commission else ""
        errors["amount"] = f"Not enough free margin: this needs {preview.margin:,.2f}{fee}, you have " \
                           f"{account.free_margin:,.2f}."
    if errors or valid.qty is None or valid.leverage is None:
        return Checked(errors=errors, preview=preview)
    plan = OrderPlan(symbol=market.symbol, side=side, qty=valid.qty, leverage=valid.leverage,
                     stop_loss=parsed.stop_loss, take_profit=parsed.take_profit)
    return Checked(errors={}, plan=plan, preview=preview)


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
                    take_profit: str) -> tuple[dict[str, Decimal | None], dict[str, str]]:
    """New stops for an open position (empty field → remove the stop); only changed fields are returned."""
    errors: dict[str, str] = {}
    values: dict[str, Decimal | None] = {}
    for field, raw, what in (("stop_loss", stop_loss, "stop-loss"), ("take_profit", take_profit, "take-profit")):
        try:
            values[field] = parse_decimal(raw, what)
        except ValueError as exc:
            errors[field] = str(exc)
    if errors:
        return {}, errors
    if quote is None:
        return {}, {"stop_loss": f"There is no price for {market.symbol} yet."}
    try:
        check_stops(position.side, close_price(position.side, quote), values["stop_loss"], values["take_profit"],
                    market)
    except CfdError as exc:
        return {}, {_field(exc, "stop_loss"): exc.message}
    changed = {k: v for k, v in values.items() if v != getattr(position, k)}
    return changed, {}


def _field(exc: CfdError, default: str) -> str:
    if isinstance(exc.details, dict) and isinstance(exc.details.get("field"), str):
        return exc.details["field"]
    return default
