"""The risk engine on the tick path: quotes in, stop-loss / take-profit / stop-out commands out.

Each dbproc checks the accounts of the users whose `requests.trading` partition it owns in the request group:
the same partitions whose commands it applies. When the group gives it partitions (`on_assigned`, before the
first command of them is consumed) it loads those users' open positions and balances from the database; when
the group takes them away (`on_revoked`) it forgets those users. The account events, a broadcast, keep the
accounts it owns current; the events of other users are ignored. Every tick is checked against the owned
accounts only, and each trigger becomes a command on the user's request partition (a margin call too, so its
event is numbered and stored like any other), sent by the one owner. The command ids are derived from what
triggered, so a command sent twice (a re-arm, or an old and a new owner around a handover) is still applied
once.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from decimal import Decimal

import msgspec

from cfd_dbproc.risk.alerts import ActiveAlerts
from cfd_dbproc.risk.book import OpenPosition, RiskBook, Trigger
from cfd_dbproc.risk.orders import WorkingOrders
from cfd_dbproc.trading.quotes import QuoteCache
from cfd_dbproc.trading.store import TradingStore
from shared import operations as ops
from shared.bus import Bus, Message, Partition, Subscription, Topics
from shared.bus.rpc import send
from shared.clock import now_ms
from shared.contracts.bus import (
    ExpireOrderCommand,
    FillOrderCommand,
    FireAlertCommand,
    MarginCallCommand,
    RiskCloseCommand,
    StopOutCommand,
    TrailCommand,
    TrailLevel,
)
from shared.contracts.events import AccountEvent, AlertEvent, Event, OrderEvent, PositionEvent
from shared.contracts.quote import Quote
from shared.contracts.rest import Alert, Position
from shared.errors import BackendDown, NotFound
from shared.outage import Outage
from shared.trading import further_stop
from shared.watermarks import Watermarks

log = logging.getLogger(__name__)

_event_decoder = msgspec.json.Decoder(Event)
REARM_SECONDS = 5.0
RELOAD_SECONDS = 2.0
"""How often the accounts of assigned partitions are loaded again while the database cannot be read."""


HOUSEKEEPING_SECONDS = 0.5
"""How often ratcheted trailing stops are stored and expired orders are looked for."""


def open_position(user_id: str, p: Position) -> OpenPosition:
    return OpenPosition(id=p.id, user_id=user_id, symbol=p.symbol, side=p.side, qty=p.qty,
                        entry_price=p.entry_price, margin=p.margin, stop_loss=p.stop_loss, take_profit=p.take_profit,
                        trailing_distance=p.trailing_distance)


class RiskRunner:
    def __init__(self, bus: Bus, topics: Topics, quotes: QuoteCache, store: TradingStore,
                 book: RiskBook | None = None) -> None:
        self.bus = bus
        self.store = store
        self._routes = topics.routes()  # where the internal commands go
        self.topics = topics
        self.quotes = quotes
        self.book = book or RiskBook()
        self.orders = WorkingOrders()
        self.alerts = ActiveAlerts()
        self._housekeeping: asyncio.Task[None] | None = None
        self._subscriptions: list[Subscription] = []
        self.owned: set[int] = set()
        """The partitions of `requests.trading` whose users' accounts the book holds and checks."""
        self._loading: dict[int, list[Event]] = {}  # assigned, accounts not loaded yet: their events, held
        self._reloads: set[asyncio.Task[None]] = set()
        self._pending_since: dict[tuple[str, str], float] = {}  # (kind, id) of triggers acted on
        self.commands_lost = Outage("risk commands (stops, stop-outs, margin calls) cannot be published", log)
        self.loads_failed = Outage("the risk engine cannot load the accounts of its partitions", log)
        self.ticks = 0
        self.triggers = 0
        self.check_seconds = 0.0
        self.checked = Watermarks()
        """Per market, the exchange time of the latest tick checked, with what it triggered already sent."""
        self.applied = Watermarks()
        """Per user, the `seq` of the latest account event the book holds. A lockstep replay's step waits on both
        (`cfd_dbproc.trading.replay`)."""

    async def start(self) -> None:
        """Follow the account events and the prices. The book stays empty until the request group assigns
        partitions (`on_assigned`): a dbproc that owns nothing checks nothing."""
        self._subscriptions.append(await self.bus.subscribe([self.topics.events], self.on_event, group=None))
        self._subscriptions.append(await self.bus.subscribe([self.topics.prices], self.on_tick, group=None))
        self._housekeeping = asyncio.get_running_loop().create_task(self._housekeep(), name="risk-housekeeping")

    async def stop(self) -> None:
        for subscription in self._subscriptions:
            await subscription.stop()
        self._subscriptions.clear()
        if self._housekeeping is not None:
            self._housekeeping.cancel()
            await asyncio.gather(self._housekeeping, return_exceptions=True)
        for task in list(self._reloads):
            task.cancel()
        await asyncio.gather(*self._reloads, return_exceptions=True)

    def partition_of(self, user_id: str) -> int:
        """The partition of `requests.trading` that carries the user's commands."""
        return self.bus.partition_for(self.topics.trading_requests, user_id.encode())

    def owns(self, user_id: str) -> bool:
        """Whether this dbproc holds and checks the user's account now (its partition is loaded)."""
        return self.partition_of(user_id) in self.owned

    def _mine(self, user_id: str) -> bool:
        partition = self.partition_of(user_id)
        return partition in self.owned or partition in self._loading

    # --- partitions come and go ---------------------------------------------------------------------------

    async def on_assigned(self, partitions: set[Partition]) -> None:
        """The request group gave this dbproc `partitions`: load the accounts of the users of those of
        `requests.trading` (the bus hands over none of their commands before this returns). The events that
        arrive meanwhile are held and applied on top, so nothing committed in between is missed. If the
        database cannot be read, the load is tried again in the background until it can."""
        mine = {p for topic, p in partitions if topic == self.topics.trading_requests}
        mine -= self.owned | self._loading.keys()
        if not mine:
            return
        for partition in mine:
            self._loading[partition] = []
        if not await self._load(mine):
            task = asyncio.get_running_loop().create_task(self._load_until_done(mine), name="risk-reload")
            self._reloads.add(task)
            task.add_done_callback(self._reloads.discard)

    async def _load_until_done(self, partitions: set[int]) -> None:
        while True:
            await asyncio.sleep(RELOAD_SECONDS)
            if await self._load(partitions):
                return

    async def _load(self, partitions: set[int]) -> bool:
        """Load the accounts of `partitions` (those still being loaded), then apply their held events; False
        when the database could not be read."""
        wanted = partitions & self._loading.keys()
        if not wanted:
            return True
        started = time.monotonic()
        seen: dict[str, int] = {}

        def in_wanted(user_id: str) -> bool:
            partition = seen.get(user_id)
            if partition is None:
                partition = seen[user_id] = self.partition_of(user_id)
            return partition in wanted

        try:
            held, balances = await self.store.open_accounts(in_wanted)
            working = await self.store.working_orders(in_wanted)
            alerts = await self.store.active_alerts(in_wanted)
            called = await self.store.margin_called(in_wanted)
        except Exception as exc:
            self.loads_failed.failed(exc.details.get("reason", exc) if isinstance(exc, BackendDown) else exc)
            return False
        self.loads_failed.recovered()
        wanted &= self._loading.keys()  # a partition revoked during the load is left out
        held = [(user_id, p) for user_id, p in held if seen[user_id] in wanted and user_id in balances]
        self.book.add_accounts([open_position(user_id, p) for user_id, p in held],
                               {user_id: balances[user_id] for user_id, _ in held})
        for user_id, order in working:
            if seen[user_id] in wanted:
                self.orders.put(user_id, order)
        for user_id, alert in alerts:
            if seen[user_id] in wanted:
                self._put_alert(user_id, alert)
        for user_id in called:
            if seen[user_id] in wanted and not self.book.margin_call_out(user_id):
                await self._clear_margin_call(user_id)  # out, with nothing open any more: nothing to check
        for partition in sorted(wanted):
            while events := self._loading.get(partition):  # events that arrive meanwhile are held too
                await self._apply(events.pop(0))
            if partition in self._loading:  # not revoked meanwhile
                del self._loading[partition]
                self.owned.add(partition)
        log.info("risk engine checks %s partitions %s now (loaded %d accounts, %d open positions, %d working orders "
                 "in %.2f s); owns %s", self.topics.trading_requests, _listed(wanted), len({u for u, _ in held}),
                 len(held), len(working), time.monotonic() - started, _listed(self.owned))
        return True

    async def on_revoked(self, partitions: set[Partition]) -> None:
        """The request group took `partitions` away (their last command is applied and committed): forget the
        users of those of `requests.trading`; their new owner loads them."""
        gone = {p for topic, p in partitions if topic == self.topics.trading_requests}
        gone &= self.owned | self._loading.keys()
        if not gone:
            return
        self.owned -= gone
        for partition in gone:
            self._loading.pop(partition, None)
        dropped = 0
        for user_id in self.book.user_ids():
            if self.partition_of(user_id) in gone:
                for position_id in self.book.positions_of(user_id):
                    self._pending_since.pop(("position", position_id), None)
                self._pending_since.pop(("user", user_id), None)
                self.book.drop_user(user_id)
                dropped += 1
        for order_user in {u for u in self.orders.user_ids() if self.partition_of(u) in gone}:
            self.orders.drop_users({order_user})
        leaving = {u for u in self.alerts.user_ids() if self.partition_of(u) in gone}
        self.alerts.drop_users(leaving)
        for user_id in leaving:
            self.book.set_alert_levels(user_id, ())
        log.info("risk engine lets go of %s partitions %s (%d accounts); owns %s", self.topics.trading_requests,
                 _listed(gone), dropped, _listed(self.owned))

    # --- the account events -------------------------------------------------------------------------------

    async def on_event(self, message: Message) -> None:
        try:
            event = _event_decoder.decode(message.value)
        except msgspec.DecodeError:
            log.warning("undecodable account event at %s@%d", message.topic, message.offset)
            return
        if not self.owned and not self._loading:
            return
        partition = self.partition_of(event.user_id)
        held = self._loading.get(partition)
        if held is not None:
            held.append(event)
        elif partition in self.owned:
            await self._apply(event)

    def _put_alert(self, user_id: str, alert: Alert) -> None:
        self.alerts.put(user_id, alert)
        if alert.kind == "margin_level":
            self.book.set_alert_levels(user_id, self.alerts.margin_levels(user_id))

    async def _apply(self, event: Event) -> None:
        await self._take(event)
        if event.seq is not None:
            self.applied.advance(event.user_id, event.seq)

    async def _take(self, event: Event) -> None:
        if isinstance(event, AlertEvent):
            if event.event == "created":
                self._put_alert(event.user_id, event.alert)
            else:
                self.alerts.remove(event.alert.id)
                self.book.set_alert_levels(event.user_id, self.alerts.margin_levels(event.user_id))
            self._pending_since.pop(("alert", event.alert.id), None)
        elif isinstance(event, OrderEvent):
            self.orders.put(event.user_id, event.order)  # a working order is indexed, any other status removed
            self._pending_since.pop(("order", event.order.id), None)
        elif isinstance(event, PositionEvent):
            self.book.balance_changed(event.user_id, event.balance)  # the book knows the account before its positions
            if event.event == "opened":
                self.book.position_opened(open_position(event.user_id, event.position))
            elif event.event == "updated":
                position = open_position(event.user_id, event.position)
                if event.trailed:  # stored a moment after the book ratcheted it: the book may be further on
                    further = further_stop(position.side, self.book.stop_loss_of(position.id), position.stop_loss)
                    position = msgspec.structs.replace(position, stop_loss=further)
                self.book.position_updated(position, event.balance)
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
        if not self._mine(user_id):  # the partition was revoked while reading
            return
        self.book.balance_changed(user_id, balance)
        held = {p.id for p in positions}
        for position_id in self.book.positions_of(user_id):
            if position_id not in held:
                self.book.position_closed(position_id)
        for position in positions:
            self.book.position_opened(open_position(user_id, position))

    # --- the tick -----------------------------------------------------------------------------------------

    async def on_tick(self, message: Message) -> None:
        quote = self.quotes.on_tick(message)
        if quote is None:
            return
        try:
            await self._check(quote)
        finally:
            assert quote.source is not None  # every quote of the cache came from a tick
            self.checked.advance(quote.symbol, quote.source.exchange_time_us)

    async def _check(self, quote: Quote) -> None:
        """Run the book, the alerts and the working orders over one quote; send what it triggers."""
        started = time.perf_counter()
        triggers = self.book.on_quote(quote)
        self.check_seconds += time.perf_counter() - started
        self.ticks += 1
        if self._pending_since:
            self._rearm()
        for trigger in triggers:
            if trigger.position_id is not None and self._halted(quote.symbol):
                self.book.release(trigger.position_id)  # a halted market's stops wait: they fire once it reopens
                continue
            self.triggers += 1
            try:
                await self._act(trigger)
            except BackendDown as exc:  # the trigger re-arms and fires again once the bus is back
                self.commands_lost.failed(f"{trigger.kind} of {trigger.user_id}: {exc.details.get('reason', exc)}")
            except Exception:
                log.exception("could not act on %s for %s", trigger.kind, trigger.user_id)
        for user_id, alert in self.alerts.on_quote(quote):
            await self._fire_alert(user_id, alert, quote.bid)
        for user_id, order in [] if self._halted(quote.symbol) else self.orders.on_quote(quote):  # orders wait too
            self.triggers += 1
            self._pending_since[("order", order.id)] = time.monotonic()
            fill = FillOrderCommand(user_id=user_id, order_id=order.id, quote=quote)
            try:
                await send(self.bus, self._routes, ops.ORDER_FILL, fill, key=user_id,
                           command_id=f"fill:{order.id}:{quote.ts}")
            except BackendDown as exc:  # re-armed, and triggered again by a later tick
                self.commands_lost.failed(f"fill of order {order.id}: {exc.details.get('reason', exc)}")

    def _halted(self, symbol: str) -> bool:
        market = self.quotes.markets.get(symbol)
        return market is not None and market.status == "halted"

    def _rearm(self, after: float = REARM_SECONDS) -> None:
        """A trigger whose command changed nothing (it failed, or the state had moved on) fires again."""
        now = time.monotonic()
        for key, since in list(self._pending_since.items()):
            if now - since >= after:
                del self._pending_since[key]
                kind, ident = key
                if kind == "position":
                    self.book.release(ident)
                elif kind == "order":
                    self.orders.release(ident)
                elif kind == "alert":
                    owner = self.alerts.release(ident)
                    if owner is not None:
                        self.book.set_alert_levels(owner, self.alerts.margin_levels(owner))
                else:
                    self.book.release_user(ident)

    async def _act(self, trigger: Trigger) -> None:
        match trigger.kind:
            case "stop_loss" | "take_profit" | "trailing_stop" as reason:
                assert trigger.position_id is not None and trigger.price is not None  # a stop's trigger has both
                self._pending_since[("position", trigger.position_id)] = time.monotonic()
                close = RiskCloseCommand(user_id=trigger.user_id, position_id=trigger.position_id, reason=reason,
                                         price=trigger.price, quote=trigger.quote, stop_loss=trigger.stop_loss)
                await send(self.bus, self._routes, ops.RISK_CLOSE, close, key=trigger.user_id,
                           command_id=f"risk:{trigger.position_id}:{trigger.quote.ts}")
            case "stop_out":
                self._pending_since[("user", trigger.user_id)] = time.monotonic()
                stop_out = StopOutCommand(user_id=trigger.user_id, quotes=list(self.quotes.fresh().values()),
                                          order=self.book.worst_first(trigger.user_id))
                await send(self.bus, self._routes, ops.STOP_OUT, stop_out, key=trigger.user_id,
                           command_id=f"stop-out:{trigger.user_id}:{trigger.quote.symbol}:{trigger.quote.ts}")
            case "margin_alert":
                assert trigger.margin_level is not None  # an account trigger has its level
                for alert in self.alerts.margin_fired(trigger.user_id, trigger.margin_level):
                    await self._fire_alert(trigger.user_id, alert, trigger.margin_level)
            case "margin_call" | "margin_call_cleared" as call:
                command = MarginCallCommand(user_id=trigger.user_id, event=call, margin_level=trigger.margin_level)
                await send(self.bus, self._routes, ops.MARGIN_CALL, command, key=trigger.user_id,
                           command_id=f"margin:{trigger.user_id}:{call}:{trigger.quote.symbol}:{trigger.quote.ts}")

    async def _clear_margin_call(self, user_id: str) -> None:
        try:
            await send(self.bus, self._routes, ops.MARGIN_CALL,
                       MarginCallCommand(user_id=user_id, event="margin_call_cleared"), key=user_id,
                       command_id=f"margin:{user_id}:margin_call_cleared:{uuid.uuid4().hex}")
        except BackendDown as exc:  # told at the next load; the margin call stays out meanwhile
            self.commands_lost.failed(f"margin call clearing of {user_id}: {exc.details.get('reason', exc)}")


    async def _fire_alert(self, user_id: str, alert: Alert, value: Decimal) -> None:
        """Tell the dbproc an alert's condition was met (applied once; pending until its event)."""
        self._pending_since[("alert", alert.id)] = time.monotonic()
        try:
            await send(self.bus, self._routes, ops.ALERT_FIRE,
                       FireAlertCommand(user_id=user_id, alert_id=alert.id, value=value), key=user_id,
                       command_id=f"alert:{alert.id}")
        except BackendDown as exc:  # re-armed after a while, and fired again
            self.commands_lost.failed(f"alert {alert.id}: {exc.details.get('reason', exc)}")

    # --- housekeeping: trailing stops stored, orders expired ------------------------------------------------

    async def _housekeep(self) -> None:
        while True:
            await asyncio.sleep(HOUSEKEEPING_SECONDS)
            try:
                await self.store_trailed()
                await self.expire_orders()
            except BackendDown as exc:  # tried again at the next round
                self.commands_lost.failed(exc.details.get("reason", exc))
            except Exception:
                log.exception("risk housekeeping failed; trying again")

    async def store_trailed(self) -> None:
        """Send the trailing stop-losses the book ratcheted since the last round, one command per user. Until
        it is applied, the book's level is the one that closes the position (the close command carries it)."""
        by_user: dict[str, list[TrailLevel]] = {}
        for position_id, (user_id, level) in self.book.take_trailed().items():
            by_user.setdefault(user_id, []).append(TrailLevel(position_id=position_id, stop_loss=level))
        for user_id, levels in by_user.items():
            await send(self.bus, self._routes, ops.TRAIL, TrailCommand(user_id=user_id, levels=levels), key=user_id,
                       command_id=f"trail:{uuid.uuid4().hex}")

    async def expire_orders(self, now: int | None = None) -> None:
        """Send an expiry for each working order whose `expires_at` has passed."""
        for user_id, order in self.orders.expired(now_ms() if now is None else now):
            try:
                await send(self.bus, self._routes, ops.ORDER_EXPIRE,
                           ExpireOrderCommand(user_id=user_id, order_id=order.id), key=user_id,
                           command_id=f"expire:{order.id}:{order.expires_at}")
            except BackendDown:
                self.orders.put(user_id, order)  # indexed again, so the next round tries again
                raise



def _listed(partitions: set[int]) -> str:
    return ",".join(str(p) for p in sorted(partitions)) or "none"
