"""What the trader is told about account events: fills, stop-loss, take-profit, margin call, stop-out."""

from __future__ import annotations

from decimal import Decimal
from typing import Literal

from msgspec import Struct

from cfd_client.models import AccountFrame, Position, PositionFrame
from cfd_tui import format as fmt

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
    if p.close_reason == "take_profit":
        return Notice("Take-profit", f"Take-profit hit: closed {describe(p)} at {at}, PnL {pnl}.", "information", 10)
    if p.close_reason == "stop_out":
        return Notice("Stop-out", f"Stopped out: closed {describe(p)} at {at}, PnL {pnl}.", "error", 15)
    return Notice("Closed", f"Closed {describe(p)} at {at} ({p.close_reason}), PnL {pnl}.")


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


def _px(value: Decimal | None) -> str:
    """A price as the tables show it, with thousands separators and no trailing zeros: 96,601.7."""
    return "—" if value is None else f"{value.normalize():,f}"
