"""What the trader is told about account events: fills, stop-loss, take-profit, trailing stop, margin call,
stop-out, what became of pending orders (filled, expired, rejected), and alerts that fired."""

from __future__ import annotations

from datetime import tzinfo
from decimal import Decimal
from typing import Literal

from msgspec import Struct

from cfd_client.models import AccountFrame, Alert, AlertFrame, Order, OrderFrame, Position, PositionFrame
from cfd_tui import format as fmt
from cfd_tui.alerts import condition_words, describe_alert, fired_value, market_name, when_words

Severity = Literal["information", "warning", "error"]


class Notice(Struct, frozen=True):
    """A toast: title, sentence, severity and how long it stays (seconds)."""

    title: str
    message: str
    severity: Severity = "information"
    timeout: float = 6.0


def describe(p: Position) -> str:
    """`long 0.5 SOL/USDC`."""
    return f"{p.side} {p.qty.normalize():f} {p.symbol.replace('_', '/')}"


def describe_order(o: Order) -> str:
    """`buy limit 2 SOL/USDC at 95`."""
    verb = "buy" if o.side == "long" else "sell"
    return f"{verb} {o.type} {o.qty.normalize():f} {o.symbol.replace('_', '/')} at {_px(o.price)}"


def fill_notice(p: Position) -> Notice:
    """The toast for a position this terminal opened."""
    return Notice("Filled", f"Opened {describe(p)} at {_px(p.entry_price)} ({p.leverage}× leverage).")


def close_notice(p: Position) -> Notice:
    """The toast for a close this terminal asked for."""
    pnl = p.realized_pnl if p.realized_pnl is not None else Decimal(0)
    return Notice("Closed", f"Closed {describe(p)} at {_px(p.close_price)}: PnL {fmt.money(pnl, signed=True)}.",
                  "information" if pnl >= 0 else "warning")


def position_notice(frame: PositionFrame) -> Notice | None:
    """A toast for closes the broker made on its own (stops, stop-out); None for the rest, which the
    terminal that acted reports itself."""
    p = frame.position
    if frame.event != "closed" or p.close_reason in (None, "manual"):
        return None
    pnl = fmt.money(p.realized_pnl or Decimal(0), signed=True)
    at = _px(p.close_price)
    if p.close_reason == "stop_loss":
        return Notice("Stop-loss", f"Stop-loss hit: closed {describe(p)} at {at}, PnL {pnl}.", "warning", 10)
    if p.close_reason == "trailing_stop":
        return Notice("Trailing stop", f"Trailing stop hit: closed {describe(p)} at {at}, PnL {pnl}.",
                      "information" if (p.realized_pnl or 0) >= 0 else "warning", 10)
    if p.close_reason == "take_profit":
        return Notice("Take-profit", f"Take-profit hit: closed {describe(p)} at {at}, PnL {pnl}.", "information", 10)
    if p.close_reason == "stop_out":
        return Notice("Stop-out", f"Stopped out: closed {describe(p)} at {at}, PnL {pnl}.", "error", 15)
    return Notice("Closed", f"Closed {describe(p)} at {at} ({p.close_reason}), PnL {pnl}.")


def placed_notice(o: Order, tz: tzinfo | None = None) -> Notice:
    """The toast for an order this terminal placed."""
    return Notice("Order placed", f"Placed {describe_order(o)}, {_until(o, tz)}.")


def order_change_notice(o: Order, tz: tzinfo | None = None) -> Notice:
    """The toast for an order this terminal modified or cancelled."""
    if o.status == "cancelled":
        return Notice("Order cancelled", f"Cancelled {describe_order(o)}.")
    return Notice("Order modified", f"Now {describe_order(o)}, {_until(o, tz)}.")


def order_notice(frame: OrderFrame, positions: dict[str, Position]) -> Notice | None:
    """A toast for what the broker did with a pending order on its own: filled (at the price of the position it
    opened, when `positions` has it), expired, rejected (with the platform's reason); None for the rest, which
    the terminal that acted reports itself."""
    o = frame.order
    if frame.event == "filled":
        position = positions.get(o.position_id or "")
        at = f" at {_px(position.entry_price)}" if position is not None else ""
        return Notice("Order filled", f"Filled {describe_order(o)}: opened {o.side} "
                      f"{o.qty.normalize():f} {o.symbol.replace('_', '/')}{at}.", "information", 10)
    if frame.event == "expired":
        return Notice("Order expired", f"Expired: {describe_order(o)}.", "warning", 10)
    if frame.event == "rejected":
        reason = (o.reason or "no reason given").split(": ", 1)[-1]
        return Notice("Order rejected", f"Rejected when it triggered: {describe_order(o)}. {reason}", "error", 15)
    return None


def closed_all_notice(closed: list[Position], symbol: str | None) -> Notice:
    """The toast for close-all: how many closed, and the PnL they realised together."""
    where = f" in {symbol.replace('_', '/')}" if symbol else ""
    if not closed:
        return Notice("Close all", f"No open positions{where} to close.")
    total = sum((p.realized_pnl or Decimal(0) for p in closed), Decimal(0))
    count = f"{len(closed)} position{'s' if len(closed) != 1 else ''}"
    return Notice("Closed all", f"Closed {count}{where}: PnL {fmt.money(total, signed=True)}.",
                  "information" if total >= 0 else "warning")


def _until(o: Order, tz: tzinfo | None) -> str:
    return "good till cancelled" if o.expires_at is None else f"until {fmt.timestamp(o.expires_at, tz)}"


def account_notice(frame: AccountFrame) -> Notice | None:
    """A toast for margin warnings; None for plain snapshots."""
    level = frame.margin_level
    if level is None and frame.account is not None:
        level = frame.account.margin_level
    shown = "—" if level is None else fmt.percent(level)
    if frame.event == "margin_call":
        return Notice("Margin call", f"Margin level {shown}: below 100 %. Add margin or reduce positions; "
                      "stop-out closes positions at 50 %.", "warning", 15)
    if frame.event == "margin_call_cleared":
        return Notice("Margin call over", f"Margin level back at {shown}.", "information")
    if frame.event == "stop_out":
        return Notice("Stop-out", f"Margin level fell to {shown}: losing positions were closed.", "error", 15)
    return None


def alert_notice(frame: AlertFrame, tick: Decimal | None = None) -> Notice | None:
    """A toast for an alert that fired (`triggered`), with the bid or the margin level that fired it and the
    trader's note; None for the rest (created, deleted), which the terminal that acted reports itself."""
    if frame.event != "triggered":
        return None
    alert = frame.alert
    note = f" Note: {alert.note}" if alert.note else ""
    value = fired_value(alert, frame.price, tick)
    if alert.kind == "margin_level":
        return Notice("Margin alert", f"Margin level {value}: below {fmt.percent(alert.below)}.{note}", "warning", 15)
    limit = fired_value(alert, alert.price, tick)
    return Notice("Price alert", f"{market_name(alert.symbol)} bid {value}: {condition_words(alert.condition)} "
                  f"{limit}.{note}", "warning", 15)


def alert_set_notice(alert: Alert, tick: Decimal | None = None) -> Notice:
    """The toast for an alert this terminal set."""
    mail = " and by mail" if "mail" in alert.notify else ""
    return Notice("Alert set", f"You will be told here{mail}, once, when {when_words(alert, tick)}.")


def alert_deleted_notice(alert: Alert, tick: Decimal | None = None) -> Notice:
    """The toast for an alert this terminal deleted."""
    return Notice("Alert deleted", f"Deleted the alert: {describe_alert(alert, tick)}.")


def _px(value: Decimal | None) -> str:
    """A price as the tables show it, with thousands separators and no trailing zeros: 96,601.7."""
    return "—" if value is None else f"{value.normalize():,f}"
