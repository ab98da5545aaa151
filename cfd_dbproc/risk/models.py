"""What goes in and out of the risk book: the open positions it watches and the triggers it emits."""

from __future__ import annotations

from decimal import Decimal
from typing import Literal

from msgspec import Struct

from shared.contracts.quote import Quote
from shared.trading import Side

TriggerKind = Literal["stop_loss", "take_profit", "trailing_stop", "stop_out", "margin_call", "margin_call_cleared",
                      "margin_alert"]


class OpenPosition(Struct, frozen=True, kw_only=True, gc=False):
    """One open position as the risk engine sees it; money and prices are Decimals.

    `gc=False`: it holds no containers, so the garbage collector need not track 100,000 of them."""

    id: str
    user_id: str
    symbol: str
    side: Side
    qty: Decimal
    entry_price: Decimal
    margin: Decimal
    stop_loss: Decimal | None = None
    take_profit: Decimal | None = None
    trailing_distance: Decimal | None = None


class Trigger(Struct, kw_only=True):
    """Something a tick set off.

    - `stop_loss` / `take_profit` / `trailing_stop`: `position_id` and `price`, the close price the tick hit
      (bid for a long, ask for a short), and `stop_loss`, the level it hit; the position is pending until
      closed, updated or released.
    - `margin_call` / `margin_call_cleared` / `stop_out` / `margin_alert` (below one of the user's alert levels):
      account level, `margin_level` is the exact level
      (`shared.trading.account_state`, percent) after this tick's stops; `position_id` and `price` are None.
    """

    kind: TriggerKind
    user_id: str
    quote: Quote
    position_id: str | None = None
    price: Decimal | None = None
    margin_level: Decimal | None = None
    stop_loss: Decimal | None = None
