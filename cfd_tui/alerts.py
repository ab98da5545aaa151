"""Alerts as the terminal shows and checks them: what an alert watches in words, the condition a typed price
suggests, and the checks of the alert dialog's fields before anything is sent (the platform's own rules:
a price alert's price is a positive multiple of the market's tick, a margin level is above 0 and at most
100,000 %, a note at most 200 characters).

Pure functions over the market's terms and the latest quote; each check returns the parsed value or the
errors by field, with messages fit for the form.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Literal

from cfd_client.models import Alert
from cfd_tui import format as fmt
from cfd_tui.orders import parse_decimal
from shared.markets import Market
from shared.trading import is_multiple

Condition = Literal["above", "below"]
NOTE_MAX = 200  # characters, as the platform's `Note`
MARGIN_LEVEL_MAX = Decimal(100_000)  # percent, as the platform's check
DEFAULT_MARGIN_LEVEL = Decimal(150)  # where the terminal's margin level turns amber


def market_name(symbol: str | None) -> str:
    """`SOL/USDC`."""
    return (symbol or "?").replace("_", "/")


def condition_words(condition: str | None) -> str:
    """`at or above` / `at or below`."""
    return f"at or {condition or 'above'}"


def describe_alert(alert: Alert, tick: Decimal | None = None) -> str:
    """`SOL/USDC bid at or above 190.00`, or `margin level below 120.00%`."""
    if alert.kind == "margin_level":
        return f"margin level below {fmt.percent(alert.below)}"
    return f"{market_name(alert.symbol)} bid {condition_words(alert.condition)} {_price(alert.price, tick)}"


def when_words(alert: Alert, tick: Decimal | None = None) -> str:
    """What an alert waits for, as a sentence ends: `the SOL/USDC bid is at or above 190.00`, `the margin level
    falls below 120.00%`."""
    if alert.kind == "margin_level":
        return f"the margin level falls below {fmt.percent(alert.below)}"
    return f"the {market_name(alert.symbol)} bid is {condition_words(alert.condition)} {_price(alert.price, tick)}"


def fired_value(alert: Alert, value: Decimal | None = None, tick: Decimal | None = None) -> str:
    """The bid (or the margin level) that fired `alert`, as text: `190.10`, `118.20%`, `—`."""
    value = alert.triggered_value if value is None else value
    if value is None:
        return "—"
    return fmt.percent(value) if alert.kind == "margin_level" else _price(value, tick)


def suggested_condition(price: Decimal | None, bid: Decimal | None, current: Condition) -> Condition:
    """The condition a typed price implies against the bid now: `above` for a price over it, `below` under it;
    `current` when either is unknown or they are equal."""
    if price is None or bid is None or price == bid:
        return current
    return "above" if price > bid else "below"


def already_met(condition: Condition, price: Decimal, bid: Decimal | None) -> bool:
    """Whether the bid is already where the alert waits for: it fires at the next tick."""
    if bid is None:
        return False
    return bid >= price if condition == "above" else bid <= price


def check_price_alert(market: Market, raw_price: str, raw_note: str) -> tuple[Decimal | None, dict[str, str]]:
    """The price of a price alert (and the note's errors): a positive multiple of the market's tick."""
    errors = check_note(raw_note)
    try:
        price = parse_decimal(raw_price, "price")
    except ValueError as exc:
        errors["price"] = str(exc)
        return None, errors
    if price is None:
        errors["price"] = f"Enter the price to watch the {market_name(market.symbol)} bid for."
    elif price <= 0 or not is_multiple(price, market.price_tick):
        errors["price"] = f"The price must be positive, a multiple of {market.price_tick}."
    return (price if "price" not in errors else None), errors


def check_margin_alert(raw_level: str, raw_note: str) -> tuple[Decimal | None, dict[str, str]]:
    """The margin level (percent) of a margin-level alert (and the note's errors): above 0, at most 100,000."""
    errors = check_note(raw_note)
    try:
        level = parse_decimal(raw_level.strip().rstrip("%"), "margin level")
    except ValueError as exc:
        errors["below"] = str(exc)
        return None, errors
    if level is None:
        errors["below"] = "Enter the margin level (percent) to be told below, like 150."
    elif not 0 < level <= MARGIN_LEVEL_MAX:
        errors["below"] = f"The margin level must be above 0 and at most {MARGIN_LEVEL_MAX:,} %."
    return (level if "below" not in errors else None), errors


def check_note(raw: str) -> dict[str, str]:
    if len(raw.strip()) > NOTE_MAX:
        return {"note": f"A note has at most {NOTE_MAX} characters."}
    return {}


def note_of(raw: str) -> str | None:
    """The note to send: None when empty."""
    return raw.strip() or None


def _price(value: Decimal | None, tick: Decimal | None) -> str:
    """A price with the market's decimals when the tick is known, else as given (no trailing zeros)."""
    if value is None or tick is None:
        return "—" if value is None else f"{value.normalize():,f}"
    return fmt.price(value, tick)
