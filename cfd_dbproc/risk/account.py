"""Per-user and per-position records of the risk book."""

from __future__ import annotations

from decimal import Decimal

from msgspec import Struct, field

from cfd_dbproc.risk.levels import EXACT, ZERO, Net
from cfd_dbproc.risk.models import OpenPosition
from shared.contracts.quote import Quote
from shared.contracts.rest import Account
from shared.trading import MARGIN_CALL_LEVEL, STOP_OUT_LEVEL, account_state

LEVEL_QUANTUM = Decimal("0.01")
"""`account_state` rounds the margin level to this (half-even)."""
RECOVERY_LEVEL = MARGIN_CALL_LEVEL - LEVEL_QUANTUM
"""A rounded level ≥ 100 % needs an exact one ≥ 99.995 %, so recoveries are watched from 99.99 %."""


class Held(Struct, gc=False):
    """An open position in the book; `pending` once a stop fired and its close is in flight.

    Records here are msgspec Structs with `gc=False` (they hold no cycles): the garbage collector does not
    track them, so full collections stay short with 100,000 positions in memory."""

    position: OpenPosition
    pending: bool = False
    tickets: tuple[int, ...] = ()  # its stop keys in the market's stop ladder
    trail_ticket: int | None = None  # its key in the market's trailing ladder


class BookAccount(Struct, gc=False):
    """One user: balance, positions netted per market, margin used, and the margin call / stop-out state."""

    user_id: str
    balance: Decimal
    held: dict[str, Held] = field(default_factory=dict)
    nets: dict[str, Net] = field(default_factory=dict)
    used: Decimal = ZERO  # Σ margin of the positions not pending a close
    margin_called: bool = False
    stop_pending: bool = False
    tickets: tuple[tuple[str, int], ...] = ()  # (symbol, ticket) of its keys in the account ladders

    def add(self, held: Held) -> Net:
        """Hold a position: net it into its market, count its margin unless pending; returns the market's Net.

        Raises `decimal.Inexact`, changing nothing, if its numbers do not fit the exact arithmetic."""
        p = held.position
        used = self.used if held.pending else EXACT.add(self.used, p.margin)
        net = self.nets.get(p.symbol) or Net()
        net.add(p, 1)
        self.nets[p.symbol] = net
        self.held[p.id] = held
        self.used = used
        return net

    def remove(self, held: Held) -> Net:
        """Drop a position (the reverse of `add`); returns what is left of the market's Net."""
        p = held.position
        del self.held[p.id]
        net = self.nets[p.symbol]
        net.add(p, -1)
        if net.count == 0:
            del self.nets[p.symbol]
        if not held.pending:
            self.used = EXACT.subtract(self.used, p.margin)
        return net

    def set_pending(self, held: Held, pending: bool) -> None:
        """Mark a position pending a close (its margin leaves the account) or not any more."""
        if held.pending != pending:
            held.pending = pending
            margin = held.position.margin
            self.used = EXACT.add(self.used, margin) if not pending else EXACT.subtract(self.used, margin)

    def state(self, quotes: dict[str, Quote]) -> Account:
        """The exact account state (`shared.trading.account_state`), pending positions using no margin."""
        return account_state(self.balance, [h.position for h in self.held.values()], quotes, used_margin=self.used)

    def watches(self) -> list[tuple[Decimal, bool]]:
        """The levels to watch now, as (level %, rising): a fall to 100 % while no margin call is out;
        then a recovery to 100 % and, unless a stop-out is pending, a fall to 50 %."""
        if not self.margin_called:
            return [(MARGIN_CALL_LEVEL, False)]
        if self.stop_pending:
            return [(RECOVERY_LEVEL, True)]
        return [(RECOVERY_LEVEL, True), (STOP_OUT_LEVEL, False)]
