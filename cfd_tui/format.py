"""Text for numbers, times and tiny charts: Decimal in, strings out (never through float)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, tzinfo
from decimal import ROUND_HALF_EVEN, Decimal

from rich.text import Text

from cfd_client.models import FillReceipt

SPARK_BARS = "▁▂▃▄▅▆▇█"
CENT = Decimal("0.01")


def places(step: Decimal) -> int:
    """How many decimals a step such as 0.01 or 1 has."""
    exponent = step.normalize().as_tuple().exponent
    return max(0, -exponent) if isinstance(exponent, int) else 0


def price(value: Decimal | None, tick: Decimal = CENT) -> str:
    """A price with the market's decimals and thousands separators: `96,500.1`."""
    if value is None:
        return "—"
    dp = places(tick)
    return f"{value.quantize(Decimal(1).scaleb(-dp), rounding=ROUND_HALF_EVEN):,.{dp}f}"


def qty(value: Decimal | None, step: Decimal = Decimal("0.0001")) -> str:
    """A quantity with the market's step decimals."""
    if value is None:
        return "—"
    dp = places(step)
    return f"{value.quantize(Decimal(1).scaleb(-dp)):,.{dp}f}"


def money(value: Decimal | None, signed: bool = False) -> str:
    """A USD amount to the cent: `12,345.67`, or `+12.30` / `-4.10` when `signed`."""
    if value is None:
        return "—"
    text = f"{value.quantize(CENT, rounding=ROUND_HALF_EVEN):,.2f}"
    if text == "-0.00":
        text = "0.00"
    return f"+{text}" if signed and value > 0 and text != "0.00" else text


def percent(value: Decimal | None, signed: bool = False) -> str:
    """`12.34%` (or `+12.34%`)."""
    if value is None:
        return "—"
    return money(value, signed) + "%"


def change_percent(now: Decimal, reference: Decimal | None) -> Decimal | None:
    """The relative change from `reference` to `now`, in percent."""
    if reference is None or reference == 0:
        return None
    return (now - reference) / reference * 100


def sparkline(values: Sequence[Decimal], width: int) -> str:
    """The last `width` values as block characters scaled between their low and high."""
    values = list(values)[-width:]
    if not values:
        return " " * width
    low, high = min(values), max(values)
    span = high - low
    top = len(SPARK_BARS) - 1
    if span == 0:
        bars = SPARK_BARS[top // 2] * len(values)
    else:
        bars = "".join(SPARK_BARS[int((v - low) / span * top)] for v in values)
    return bars.rjust(width)


def clock(epoch_s: float, tz: tzinfo | None = None) -> str:
    """`HH:MM:SS` in `tz` (local time when None)."""
    return datetime.fromtimestamp(epoch_s, tz).strftime("%H:%M:%S")


def timestamp(epoch_ms: int | None, tz: tzinfo | None = None) -> str:
    """`YYYY-MM-DD HH:MM:SS` of epoch milliseconds in `tz` (local time when None)."""
    if not epoch_ms:
        return "—"
    return datetime.fromtimestamp(epoch_ms / 1000, tz).strftime("%Y-%m-%d %H:%M:%S")


def duration(seconds: float) -> str:
    """A span of time, to the two largest units: `45s`, `59m`, `1h 30m`, `2d 3h`."""
    whole = max(0, int(seconds))
    days, rest = divmod(whole, 86_400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    parts = [(days, "d"), (hours, "h"), (minutes, "m"), (secs, "s")]
    while len(parts) > 1 and parts[0][0] == 0:
        parts.pop(0)
    shown = [f"{n}{unit}" for n, unit in parts[:2] if n or unit == parts[0][1]]
    return " ".join(shown)


def expiry(epoch_ms: int | None, now_ms: int, tz: tzinfo | None = None) -> str:
    """When a pending order expires, as a table shows it: `GTC` (good till cancelled), `17:30` today, or
    `01-02 17:30` on another day (in `tz`)."""
    if epoch_ms is None:
        return "GTC"
    at = datetime.fromtimestamp(epoch_ms / 1000, tz)
    today = datetime.fromtimestamp(now_ms / 1000, tz).date()
    return at.strftime("%H:%M" if at.date() == today else "%m-%d %H:%M")


def axis_time(epoch_ms: int, interval_ms: int, tz: tzinfo | None = None) -> str:
    """A chart's time label: `HH:MM` for intraday candles, `MM-DD` for daily ones."""
    moment = datetime.fromtimestamp(epoch_ms / 1000, tz)
    return moment.strftime("%m-%d" if interval_ms >= 86_400_000 else "%H:%M")


__all__ = ["UTC", "axis_time", "change_percent", "clock", "duration", "expiry", "money", "percent", "places", "price",
           "qty", "sparkline", "timestamp"]


def receipt(label: str, fill: FillReceipt | None, tick: Decimal, tz: tzinfo | None = None) -> Text:
    """One fill's receipt in a line: the price, the exchange price it came from plus or minus the markup, and the
    exchange update it was priced from."""
    if fill is None:
        return Text.assemble((f"{label:<7}", "bold"), ("no receipt (filled before receipts were kept)", "dim"))
    buy = fill.side == "buy"
    source, sign = ("ask", "+") if buy else ("bid", "−")
    at = datetime.fromtimestamp(fill.exchange_time_us / 1_000_000, tz).strftime("%H:%M:%S.%f")
    update = f"update {fill.update_id} " if fill.update_id is not None else ""
    return Text.assemble(
        (f"{label:<7}", "bold"), f"{fill.side} at {price(fill.price, tick)}", (" = exchange ", "dim"),
        f"{source} {_exact(fill.exchange_ask if buy else fill.exchange_bid)}", f" {sign} ",
        f"{_exact(fill.markup)}", (" markup (half the ", "dim"), f"{_exact(fill.spread_bps)} bps",
        (" spread)   exchange bid/ask ", "dim"),
        f"{_exact(fill.exchange_bid)}/{_exact(fill.exchange_ask)}", ("   ", "dim"),
        (f"{update}at {at}", "dim"))


def _exact(value: Decimal) -> str:
    """Every digit the platform gave, none more or fewer: an exchange price as the exchange wrote it."""
    return f"{value:f}"
