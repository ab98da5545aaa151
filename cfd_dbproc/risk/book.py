"""`RiskBook`: the risk engine's in-memory index of open positions, balances and latest quotes.

On every tick, `on_quote` returns the stop-losses and take-profits the tick hits (exactly those a brute
force `shared.trading.stop_trigger` over every position would return), then the margin calls, their
clearing and the stop-outs, each verified with `shared.trading.account_state` before it is emitted. The
cost of a tick grows with what it triggers (and with the candidates it must verify), not with the
positions that stay quiet: see docs/risk.md for the index and the proof that it misses nothing.

The book holds only users with something open (or a margin call to clear): a user whose last position
closes is dropped, and one that only had a balance change is dropped at the next tick.

Pending state: a position whose stop fired is not triggered again until `position_closed`,
`position_updated` or `release` (the close failed); a user whose stop-out fired is not stopped out again
until `release_user`, `balance_changed` or a change to one of their positions.
"""

from __future__ import annotations

from collections.abc import Iterable
from decimal import Decimal, DecimalException

import msgspec

from cfd_dbproc.risk.account import BookAccount, Held
from cfd_dbproc.risk.ladder import PriceLadder
from cfd_dbproc.risk.levels import ALWAYS, EXACT, ZERO, Holding, level_price, stop_keys, thresholds, trail_key
from cfd_dbproc.risk.models import OpenPosition, Trigger, TriggerKind
from shared.contracts.events import PositionMark
from shared.contracts.quote import Quote
from shared.contracts.rest import Account
from shared.trading import (
    MARGIN_CALL_LEVEL,
    STOP_OUT_LEVEL,
    Holdings,
    account_state,
    close_price,
    further_stop,
    money,
    stop_trigger,
    trailed_stop,
    unrealized_pnl,
)


class _Market:
    """One market: its stop ladder and trailing ladder (refs: position ids), its account ladder (refs: user
    ids), the spread allowance the hedged users' keys assume, and those users."""

    __slots__ = ("accounts", "hedged", "spread_hi", "spread_lo", "stops", "trails")

    def __init__(self, quote: Quote | None) -> None:
        self.stops = PriceLadder()
        self.trails = PriceLadder()  # where a trailing stop-loss moves next
        self.accounts = PriceLadder()
        self.hedged: set[str] = set()
        self.spread_lo = self.spread_hi = ZERO
        if quote is not None:
            self.widen(EXACT.subtract(quote.ask, quote.bid))

    def allows(self, spread: Decimal) -> bool:
        return self.spread_lo <= spread <= self.spread_hi

    def widen(self, spread: Decimal) -> None:
        """Make room for `spread` and twice as much again (so widening happens O(log) times)."""
        self.spread_lo = min(self.spread_lo, EXACT.multiply(spread, 2))
        self.spread_hi = max(self.spread_hi, EXACT.multiply(spread, 2))


class RiskBook:
    """Open positions, balances and latest quotes, indexed so that a tick finds what it triggers.

    Every mutation is O(log n) in the number of open positions (times the few markets a user holds).
    """

    def __init__(self) -> None:
        self._quotes: dict[str, Quote] = {}
        self._markets: dict[str, _Market] = {}
        self._accounts: dict[str, BookAccount] = {}
        self._held: dict[str, Held] = {}
        self._dirty: dict[str, None] = {}  # users to verify at the next tick, in order
        self._idle: set[str] = set()  # users that may hold nothing now: dropped at the next tick if so
        self._trailed: dict[str, tuple[str, Decimal]] = {}  # position id → (user id, stop-loss) not yet stored
        self._storing: dict[str, Decimal] = {}  # position id → stop-loss taken to store, not yet seen stored
        self._alert_levels: dict[str, tuple[Decimal, ...]] = {}  # user id → margin levels an alert watches
        self.verifications = 0
        """Exact account checks run so far (candidates from the index, plus users changed since a tick)."""

    # --- reading -------------------------------------------------------------------------------------------

    def __len__(self) -> int:
        """Open positions in the book."""
        return len(self._held)

    def __contains__(self, position_id: object) -> bool:
        return position_id in self._held

    def users(self) -> int:
        """Users in the book: those with an open position, a pending close or a margin call to clear."""
        return len(self._accounts)

    def user_ids(self) -> list[str]:
        """The ids of the users in the book."""
        return list(self._accounts)

    def quote(self, symbol: str) -> Quote | None:
        """The latest quote of `symbol`, None before its first tick."""
        return self._quotes.get(symbol)

    def is_pending(self, position_id: str) -> bool:
        """Whether a stop of this position fired and its close has not been confirmed or released."""
        held = self._held.get(position_id)
        return held is not None and held.pending

    def account(self, user_id: str) -> Account:
        """The user's exact account state at the latest quotes (pending positions use no margin)."""
        return self._accounts[user_id].state(self._quotes)

    def holdings(self, user_id: str) -> tuple[Decimal, Holdings] | None:
        """The user's balance and open positions summed as `account_state` needs them (every position using its
        margin, a pending one too), from the book's own sums; None when it does not hold the user."""
        acct = self._accounts.get(user_id)
        if acct is None:
            return None
        used = acct.used
        for held in acct.held.values():
            if held.pending:
                used = EXACT.add(used, held.position.margin)
        return acct.balance, Holdings.summed(acct.nets, used, len(acct.held))

    def marked(self, user_id: str) -> tuple[Account, list[PositionMark]] | None:
        """The user's account and open positions marked to the latest quotes, as the trader sees them (every open
        position uses its margin until it is closed), each with the prices at which the account would be stopped
        out and margin-called (`level_prices`); None when the book does not hold the user."""
        acct = self._accounts.get(user_id)
        if acct is None:
            return None
        positions = [h.position for h in acct.held.values()]
        account = account_state(acct.balance, positions, self._quotes)
        used = sum((p.margin for p in positions), ZERO)
        equity = acct.balance + sum((net.value(self._quotes.get(s)) for s, net in acct.nets.items()), ZERO)
        marks = []
        for p in positions:
            quote = self._quotes.get(p.symbol)
            if quote is None:
                continue
            net = acct.nets[p.symbol]
            marks.append(PositionMark(
                id=p.id, price=close_price(p.side, quote),
                unrealized_pnl=money(unrealized_pnl(p.side, p.qty, p.entry_price, quote)),
                stop_out_price=level_price(p.side, net, quote, equity, used, STOP_OUT_LEVEL),
                margin_call_price=level_price(p.side, net, quote, equity, used, MARGIN_CALL_LEVEL)))
        return account, marks

    def stop_loss_of(self, position_id: str) -> Decimal | None:
        """The position's stop-loss as the book holds it (a trailing one may be ahead of the stored one)."""
        held = self._held.get(position_id)
        return None if held is None else held.position.stop_loss

    def set_alert_levels(self, user_id: str, levels: tuple[Decimal, ...]) -> None:
        """Watch the user's margin level falling below each of `levels` (their margin alerts): a `margin_alert`
        trigger, with the level, when it does."""
        if levels:
            self._alert_levels[user_id] = levels
        else:
            self._alert_levels.pop(user_id, None)
        if user_id in self._accounts:
            self._dirty[user_id] = None  # its keys are made again, with these levels, at the next tick

    def take_trailed(self) -> dict[str, tuple[str, Decimal]]:
        """The trailing stop-losses ratcheted since the last call, to store: position id → (user id, level)."""
        trailed, self._trailed = self._trailed, {}
        self._storing.update((position_id, level) for position_id, (_, level) in trailed.items())
        return trailed

    def unstored_stop(self, position_id: str) -> Decimal | None:
        """The trailing stop-loss the book ratcheted the position to and has not seen stored yet, or None. A command
        on the position (a change of its stops, a close) starts from it, not from the stored one, which is up to a
        storing round behind: else the stop would move back."""
        if position_id not in self._held:
            return None
        trailed = self._trailed.get(position_id)
        return trailed[1] if trailed is not None else self._storing.get(position_id)

    def positions_of(self, user_id: str) -> list[str]:
        """The ids of every position the book holds for the user, pending or not."""
        acct = self._accounts.get(user_id)
        return list(acct.held) if acct is not None else []

    def worst_first(self, user_id: str) -> list[str]:
        """The user's positions not pending a close, worst unrealised PnL first: the stop-out order."""
        acct = self._accounts[user_id]

        def pnl(held: Held) -> Decimal:
            p, quote = held.position, self._quotes.get(held.position.symbol)
            return unrealized_pnl(p.side, p.qty, p.entry_price, quote) if quote is not None else ZERO

        return [h.position.id for h in sorted((h for h in acct.held.values() if not h.pending), key=pnl)]

    # --- mutations -----------------------------------------------------------------------------------------

    def load(self, positions: Iterable[OpenPosition], balances: dict[str, Decimal]) -> None:
        """Replace every position and balance (the latest quotes are kept).

        Every user with a position needs a balance; the balances of users without one are not kept. Margin
        call state starts clear: a user already below 100 % gets a `margin_call` at the next tick."""
        positions = list(positions)
        _check_accounts(positions, balances)
        self._markets = {}
        self._held = {}
        self._dirty = {}
        self._idle = set()
        self._accounts = {}
        self._take(positions, balances)

    def add_accounts(self, positions: Iterable[OpenPosition], balances: dict[str, Decimal]) -> None:
        """Take in the accounts of more users (their open positions and balances), replacing whatever the book
        held of those users; the rest of the book is kept. As with `load`, every user with a position needs a
        balance, and their margin call state starts clear. A position id the book holds for another user is
        refused with `ValueError`, changing nothing."""
        positions = list(positions)
        _check_accounts(positions, balances)
        users = {p.user_id for p in positions}
        taken = [p.id for p in positions if p.id in self._held and self._held[p.id].position.user_id not in users]
        if taken:
            raise ValueError(f"positions {sorted(taken)} belong to other users in the book")
        for user_id in users:
            self.drop_user(user_id)
        self._take(positions, balances)

    def _take(self, positions: list[OpenPosition], balances: dict[str, Decimal]) -> None:
        accounts = {user_id: BookAccount(user_id, balances[user_id]) for user_id in {p.user_id for p in positions}}
        self._accounts.update(accounts)
        for p in positions:
            self._add(Held(p))
        for acct in accounts.values():
            self._rebuild(acct, verified=False)

    def drop_user(self, user_id: str) -> bool:
        """Forget a user: their positions, balance, margin call and pending state (another instance checks
        their account now). Nothing is emitted. False if the book did not hold them."""
        acct = self._accounts.get(user_id)
        if acct is None:
            return False
        for held in list(acct.held.values()):
            self._storing.pop(held.position.id, None)
            self._remove(held)
        self._unwatch(acct)
        del self._accounts[user_id]
        self._dirty.pop(user_id, None)
        self._idle.discard(user_id)
        return True

    def margin_call_out(self, user_id: str) -> bool:
        """A margin call is out for the user (a previous owner of their account told them so): hold it as the
        book's own and check the user at the next tick, so a recovery is cleared and a user still below 100 % is
        not called again. False when the book does not hold the user (they have no open position)."""
        acct = self._accounts.get(user_id)
        if acct is None:
            return False
        acct.margin_called = True
        self._dirty[user_id] = None
        return True

    def balance_changed(self, user_id: str, balance: Decimal) -> None:
        """The user's balance changed (or a new user): re-arms a pending stop-out."""
        acct = self._accounts.get(user_id)
        if acct is None:
            acct = self._accounts[user_id] = BookAccount(user_id, balance)
        acct.balance = balance
        acct.stop_pending = False
        self._rebuild(acct, verified=False)
        if not acct.held:
            self._idle.add(user_id)

    def position_opened(self, p: OpenPosition) -> None:
        """A new open position; its user must have a balance (else `KeyError`).

        Opening a known id updates it and updating an unknown one opens it, so replaying account events
        twice, or out of step with `load`, is harmless. Numbers too long for exact arithmetic (beyond 100
        significant digits) raise `decimal.Inexact` and change nothing; so does `position_updated`."""
        if p.id in self._held:
            self.position_updated(p)
            return
        _check(p)
        if p.user_id not in self._accounts:
            raise KeyError(f"unknown user {p.user_id!r}: give their balance first (balance_changed)")
        acct = self._add(Held(p))
        acct.stop_pending = False
        self._rebuild(acct, verified=False)

    def position_updated(self, p: OpenPosition, balance: Decimal | None = None) -> None:
        """A position changed (stops moved, or qty and margin reduced by a partial close); clears pending.

        Give the user's new `balance` with a partial close to apply both at once."""
        old = self._held.get(p.id)
        if old is None:
            if balance is not None and p.user_id in self._accounts:
                self._accounts[p.user_id].balance = balance
            self.position_opened(p)
            return
        _check(p)
        if p.user_id != old.position.user_id or p.symbol != old.position.symbol or p.side != old.position.side:
            raise ValueError("a position keeps its user, symbol and side")
        self._remove(old)
        try:
            acct = self._add(Held(p))
        except DecimalException:  # refused: put the old one back as it was
            self._add(Held(old.position, pending=old.pending))
            raise
        if balance is not None:
            acct.balance = balance
        acct.stop_pending = False
        self._rebuild(acct, verified=False)
        storing = self._storing.get(p.id)
        if storing is not None and (p.trailing_distance is None
                                    or further_stop(p.side, p.stop_loss, storing) == p.stop_loss):
            del self._storing[p.id]  # stored (or no longer trailing)

    def position_closed(self, position_id: str, balance: Decimal | None = None) -> bool:
        """A position closed (by hand, stop or stop-out); False when the book did not hold it.

        Give the user's `balance` after the close (its realised PnL booked) to apply both at once; else
        call `balance_changed` before the next tick (until then the book sees neither the position's PnL
        nor its realisation). An unknown id changes nothing, the balance included."""
        held = self._held.get(position_id)
        if held is None:
            return False
        self._storing.pop(position_id, None)
        acct = self._remove(held)
        if balance is not None:
            acct.balance = balance
        acct.stop_pending = False
        self._rebuild(acct, verified=False)
        self._forget_if_idle(acct)
        return True

    def release(self, position_id: str) -> bool:
        """A pending close failed: the position's stops and margin count again. False if not pending."""
        held = self._held.get(position_id)
        if held is None or not held.pending:
            return False
        acct = self._accounts[held.position.user_id]
        acct.set_pending(held, False)
        self._arm(held)
        self._rebuild(acct, verified=False)
        return True

    def release_user(self, user_id: str) -> bool:
        """A pending stop-out is over (done or failed): the user may be stopped out again. False if none."""
        acct = self._accounts.get(user_id)
        if acct is None or not acct.stop_pending:
            return False
        acct.stop_pending = False
        self._rebuild(acct, verified=False)
        return True

    # --- the tick ------------------------------------------------------------------------------------------

    def on_quote(self, quote: Quote) -> list[Trigger]:
        """Store the quote and return what it triggers: stops first, then account levels."""
        symbol = quote.symbol
        self._quotes[symbol] = quote
        market = self._market(symbol)
        spread = EXACT.subtract(quote.ask, quote.bid)
        if not market.allows(spread):
            market.widen(spread)
            self._dirty.update(dict.fromkeys(market.hedged))  # their keys assumed the old allowance
        for position_id in market.trails.reached(quote.bid, quote.ask, spread):
            self._trail(self._held[position_id], quote)
        triggers: list[Trigger] = []
        stopped: dict[str, None] = {}
        for position_id in market.stops.reached(quote.bid, quote.ask, spread):
            self._fire_stop(self._held[position_id], quote, triggers, stopped)
        for user_id in stopped:
            # Their margin in use fell and their equity did not move: a fall is further away, so their keys
            # still hold, unless they watch a recovery from a margin call, which may now be nearer.
            acct = self._accounts[user_id]
            if acct.margin_called:
                self._rebuild(acct, verified=False)
        users = market.accounts.reached(quote.bid, quote.ask, spread)
        if self._dirty:
            users += self._dirty
            self._dirty = {}
        for user_id in dict.fromkeys(users):
            reached = self._accounts.get(user_id)
            if reached is not None:
                self._verify(reached, quote, triggers)
                self._forget_if_idle(reached)
        if self._idle:
            idle, self._idle = self._idle, set()
            for user_id in idle:
                quiet = self._accounts.get(user_id)
                if quiet is not None:
                    self._forget_if_idle(quiet)
        return triggers

    def _forget_if_idle(self, acct: BookAccount) -> None:
        """Drop a user who holds nothing and has no margin call to clear (their balance is in the database
        and comes back with their next position event)."""
        if acct.held or acct.margin_called or acct.stop_pending or acct.user_id in self._dirty:
            return
        self._unwatch(acct)
        del self._accounts[acct.user_id]
        self._idle.discard(acct.user_id)

    def _trail(self, held: Held, quote: Quote) -> None:
        """The price moved its trailing distance past the stop-loss: ratchet the stop after it."""
        p = held.position
        assert p.trailing_distance is not None  # only trailing positions have a trailing key
        level = trailed_stop(p.side, p.trailing_distance, quote, p.stop_loss)
        self._disarm(held)
        if level is not None:
            held.position = msgspec.structs.replace(p, stop_loss=level)
            self._trailed[p.id] = (p.user_id, level)
        if not held.pending:
            self._arm(held)

    def _fire_stop(self, held: Held, quote: Quote, triggers: list[Trigger], stopped: dict[str, None]) -> None:
        if held.pending:  # both of its stops fired in this tick; the first one won
            return
        p = held.position
        kind: TriggerKind | None = stop_trigger(p.side, p.stop_loss, p.take_profit, quote)
        self._disarm(held)
        if kind is None:  # cannot happen: the keys are the stops themselves
            self._arm(held)
            return
        if kind == "stop_loss" and p.trailing_distance is not None:
            kind = "trailing_stop"
        acct = self._accounts[p.user_id]
        acct.set_pending(held, True)
        triggers.append(Trigger(kind=kind, user_id=p.user_id, position_id=p.id, price=close_price(p.side, quote),
                                quote=quote, stop_loss=p.stop_loss))
        stopped[p.user_id] = None

    def _verify(self, acct: BookAccount, quote: Quote, triggers: list[Trigger]) -> None:
        """Check the user's exact level, emit what changed, and index the next thresholds."""
        self.verifications += 1
        level = acct.state(self._quotes).margin_level
        called = level is not None and level < MARGIN_CALL_LEVEL
        if called != acct.margin_called:
            acct.margin_called = called
            triggers.append(Trigger(kind="margin_call" if called else "margin_call_cleared", user_id=acct.user_id,
                                    margin_level=level, quote=quote))
        if level is not None and level < STOP_OUT_LEVEL and not acct.stop_pending:
            acct.stop_pending = True
            triggers.append(Trigger(kind="stop_out", user_id=acct.user_id, margin_level=level, quote=quote))
        alerts = self._alert_levels.get(acct.user_id, ())
        if level is not None and alerts and level < alerts[-1]:
            triggers.append(Trigger(kind="margin_alert", user_id=acct.user_id, margin_level=level, quote=quote))
            left = tuple(a for a in alerts if level >= a)  # the ones fired are pending until the runner says
            self.set_alert_levels(acct.user_id, left)
        self._rebuild(acct, verified=True)

    # --- the indexes ---------------------------------------------------------------------------------------

    def _market(self, symbol: str) -> _Market:
        market = self._markets.get(symbol)
        if market is None:
            market = self._markets[symbol] = _Market(self._quotes.get(symbol))
        return market

    def _add(self, held: Held) -> BookAccount:
        p = held.position
        acct = self._accounts[p.user_id]
        dependent = acct.add(held).spread_dependent  # first: it may refuse the position
        self._held[p.id] = held
        self._track_hedge(acct, p.symbol, dependent)
        if not held.pending:
            self._arm(held)
        return acct

    def _remove(self, held: Held) -> BookAccount:
        self._disarm(held)
        p = held.position
        del self._held[p.id]
        acct = self._accounts[p.user_id]
        self._track_hedge(acct, p.symbol, acct.remove(held).spread_dependent)
        return acct

    def _track_hedge(self, acct: BookAccount, symbol: str, dependent: bool) -> None:
        hedged = self._market(symbol).hedged
        if dependent:
            hedged.add(acct.user_id)
        else:
            hedged.discard(acct.user_id)

    def _arm(self, held: Held) -> None:
        market = self._market(held.position.symbol)
        held.tickets = tuple(market.stops.add(series, rising, key, held.position.id)
                             for series, rising, key in stop_keys(held.position))
        trail = trail_key(held.position)
        held.trail_ticket = None if trail is None else market.trails.add(*trail, held.position.id)

    def _disarm(self, held: Held) -> None:
        market = self._markets[held.position.symbol]
        for ticket in held.tickets:
            market.stops.cancel(ticket)
        held.tickets = ()
        if held.trail_ticket is not None:
            market.trails.cancel(held.trail_ticket)
            held.trail_ticket = None

    def _unwatch(self, acct: BookAccount) -> None:
        for symbol, ticket in acct.tickets:
            self._markets[symbol].accounts.cancel(ticket)
        acct.tickets = ()

    def _rebuild(self, acct: BookAccount, verified: bool) -> None:
        """Replace the user's account keys with fresh ones from the current prices (`levels.thresholds`).

        `verified`: the user's exact state was just checked. If not, and a watch is already past its
        boundary, the user is queued for an exact check at the next tick instead."""
        self._unwatch(acct)
        if acct.used <= 0:  # no margin in use: no level to fall; a margin call out is cleared at the next tick
            if acct.margin_called:
                self._dirty[acct.user_id] = None
            return
        try:
            markets = [Holding(symbol, net, net.value(self._quotes.get(symbol)), self._markets[symbol].spread_lo,
                               self._markets[symbol].spread_hi) for symbol, net in acct.nets.items()]
            watches = acct.watches() + [(level, False) for level in self._alert_levels.get(acct.user_id, ())]
            keys = thresholds(acct.balance, acct.used, markets, watches, verified)
        except DecimalException:  # numbers beyond the exact arithmetic: check this user on every tick
            keys = [(symbol, *ALWAYS) for symbol in acct.nets] if verified else None
        if keys is None:
            self._dirty[acct.user_id] = None
            return
        acct.tickets = tuple((symbol, self._markets[symbol].accounts.add(series, rising, key, acct.user_id))
                             for symbol, series, rising, key in keys)


def _check_accounts(positions: list[OpenPosition], balances: dict[str, Decimal]) -> None:
    missing = {p.user_id for p in positions} - balances.keys()
    if missing:
        raise ValueError(f"no balance for users {sorted(missing)}")
    for p in positions:
        _check(p)
    if len({p.id for p in positions}) != len(positions):
        raise ValueError("duplicate position ids")


def _check(p: OpenPosition) -> None:
    if not (p.qty > 0 and p.entry_price > 0 and p.margin >= 0):
        raise ValueError(f"position {p.id!r}: qty and entry price must be positive and the margin not negative")
