"""The risk engine on the tick path: quotes in, stop-loss / take-profit / stop-out commands out.

Every dbproc instance keeps the whole book of open positions in memory (loaded at start, then kept up to
date from the account events every instance publishes), checks it on every tick, and turns each trigger
into a command on the user's request partition. The command ids are derived from what triggered, so when
several instances see the same trigger the command is still applied once.
"""

from __future__ import annotations

import logging
import time
import uuid

import msgspec

from cfd_dbproc.risk.book import OpenPosition, RiskBook, Trigger
from cfd_dbproc.trading.quotes import QuoteCache
from cfd_dbproc.trading.store import TradingStore
from shared import operations as ops
from shared.bus import Bus, Message, Subscription, Topics
from shared.bus.rpc import send
from shared.contracts import encode
from shared.contracts_trading import (
    AccountEvent,
    Event,
    Position,
    PositionEvent,
    RiskCloseCommand,
    StopOutCommand,
)
from shared.errors import BackendDown, NotFound
from shared.outage import Outage

log = logging.getLogger(__name__)

_event_decoder = msgspec.json.Decoder(Event)
REARM_SECONDS = 5.0


def open_position(user_id: str, p: Position) -> OpenPosition:
    return OpenPosition(id=p.id, user_id=user_id, symbol=p.symbol, side=p.side, qty=p.qty,
                        entry_price=p.entry_price, margin=p.margin, stop_loss=p.stop_loss, take_profit=p.take_profit)


class RiskRunner:
    def __init__(self, bus: Bus, topics: Topics, quotes: QuoteCache, store: TradingStore,
                 book: RiskBook | None = None) -> None:
        self.bus = bus
        self.store = store
        self.topics = topics
        self.quotes = quotes
        self.book = book or RiskBook()
        self._subscriptions: list[Subscription] = []
        self._loading: list[Message] | None = None
        self._pending_since: dict[tuple[str, str], float] = {}  # (kind, id) of triggers acted on
        self.commands_lost = Outage("risk commands (stops, stop-outs, margin calls) cannot be published", log)
        self.ticks = 0
        self.triggers = 0
        self.check_seconds = 0.0

    async def start(self) -> None:
        # Events first, held while the snapshot loads, then replayed on it: nothing that happens in between
        # is missed, and an event the snapshot already holds is applied again harmlessly.
        self._loading = []
        self._subscriptions.append(await self.bus.subscribe([self.topics.events], self.on_event, group=None))
        await self.load()
        held, self._loading = self._loading, None
        for message in held:
            await self.on_event(message)
        self._subscriptions.append(await self.bus.subscribe([self.topics.prices], self.on_tick, group=None))

    async def load(self) -> None:
        held = await self.store.every_open()
        balances = await self.store.every_balance()
        self.book.load([open_position(user_id, p) for user_id, p in held], balances)
        log.info("risk book loaded: %d open positions, %d accounts", len(held), len(balances))

    async def stop(self) -> None:
        for subscription in self._subscriptions:
            await subscription.stop()
        self._subscriptions.clear()

    async def on_event(self, message: Message) -> None:
        if self._loading is not None:
            self._loading.append(message)
            return
        try:
            event = _event_decoder.decode(message.value)
        except msgspec.DecodeError:
            log.warning("undecodable account event at %s@%d", message.topic, message.offset)
            return
        if isinstance(event, PositionEvent):
            self.book.balance_changed(event.user_id, event.balance)  # the book knows the account before its positions
            if event.event == "opened":
                self.book.position_opened(open_position(event.user_id, event.position))
            elif event.event == "updated":
                self.book.position_updated(open_position(event.user_id, event.position), event.balance)
            else:
                self.book.position_closed(event.position.id, event.balance)
                self._pending_since.pop(("position", event.position.id), None)
            self._pending_since.pop(("user", event.user_id), None)
        elif isinstance(event, AccountEvent) and event.event == "resync":
            await self.reload_user(event.user_id)
        elif isinstance(event, AccountEvent) and event.account is not None and event.event == "snapshot":
            self.book.balance_changed(event.user_id, event.account.balance)

    async def reload_user(self, user_id: str) -> None:
        """Bring one user's part of the book back in line with the database."""
        uid = uuid.UUID(user_id)
        try:
            balance = await self.store.balance(uid)
        except NotFound:
            return
        positions = await self.store.open_positions(uid)
        self.book.balance_changed(user_id, balance)
        held = {p.id for p in positions}
        for position_id in self.book.positions_of(user_id):
            if position_id not in held:
                self.book.position_closed(position_id)
        for position in positions:
            self.book.position_opened(open_position(user_id, position))

    async def on_tick(self, message: Message) -> None:
        quote = self.quotes.on_tick(message)
        if quote is None:
            return
        started = time.perf_counter()
        triggers = self.book.on_quote(quote)
        self.check_seconds += time.perf_counter() - started
        self.ticks += 1
        if self._pending_since:
            self._rearm()
        for trigger in triggers:
            self.triggers += 1
            try:
                await self._act(trigger)
            except BackendDown as exc:  # the trigger re-arms and fires again once the bus is back
                self.commands_lost.failed(f"{trigger.kind} of {trigger.user_id}: {exc.details.get('reason', exc)}")
            except Exception:
                log.exception("could not act on %s for %s", trigger.kind, trigger.user_id)

    def _rearm(self, after: float = REARM_SECONDS) -> None:
        """A trigger whose command changed nothing (it failed, or the state had moved on) fires again."""
        now = time.monotonic()
        for key, since in list(self._pending_since.items()):
            if now - since >= after:
                del self._pending_since[key]
                kind, ident = key
                if kind == "position":
                    self.book.release(ident)
                else:
                    self.book.release_user(ident)

    async def _act(self, trigger: Trigger) -> None:
        if trigger.kind in ("stop_loss", "take_profit", "stop_out"):
            key = ("user", trigger.user_id) if trigger.kind == "stop_out" else ("position", trigger.position_id)
            self._pending_since[key] = time.monotonic()
        if trigger.kind in ("stop_loss", "take_profit"):
            assert trigger.position_id is not None
            body = RiskCloseCommand(user_id=trigger.user_id, position_id=trigger.position_id, reason=trigger.kind,
                                    price=trigger.price, quote=trigger.quote)
            await send(self.bus, self.topics.routes(), ops.RISK_CLOSE, body, key=trigger.user_id,
                       command_id=f"risk:{trigger.position_id}:{trigger.quote.ts}")
        elif trigger.kind == "stop_out":
            body = StopOutCommand(user_id=trigger.user_id, quotes=list(self.quotes.fresh().values()),
                                  order=self.book.worst_first(trigger.user_id))
            await send(self.bus, self.topics.routes(), ops.STOP_OUT, body, key=trigger.user_id,
                       command_id=f"stop-out:{trigger.user_id}:{trigger.quote.symbol}:{trigger.quote.ts}")
        else:
            event = AccountEvent(event=trigger.kind, user_id=trigger.user_id, margin_level=trigger.margin_level)
            await self.bus.publish(self.topics.events, encode(event), key=trigger.user_id.encode(), wait=False)
