"""The `account` WebSocket channel: position and account events as they happen, and marks while watched.

Events come from the dbproc over the broadcast account-events topic and go to the user's connections on
`account` unchanged, each once and in `seq` order (the hub sees to it, filling a gap from the database through
`AccountHistory`). Marks (`{"type":"account","event":"mark",...}`: equity, margin level and each position's
close price and unrealised PnL at the current broker quotes) are made by the dbproc that owns the account
(`cfd_dbproc.trading.marks`), for the users someone is watching: while a user has a connection on `account`
here, this server asks for them with `account.watch`, renewed every `WATCH_RENEW` seconds, and relays what
comes back on the marks topic.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections.abc import Callable, Iterable

import msgspec

from cfd_server.context import ServerContext
from shared import operations as ops
from shared.bus import Message, Subscription
from shared.bus.rpc import send
from shared.contracts.bus import AccountEventsPage, AccountEventsQuery, AccountStateQuery, WatchAccount
from shared.contracts.events import AccountEvent, AccountState, AlertEvent, Event

log = logging.getLogger(__name__)
_event_decoder = msgspec.json.Decoder(Event)

WATCH_RENEW = 5.0
"""Seconds between two watches of one user."""
WATCH_LEASE = 3 * WATCH_RENEW
"""How long one watch lasts: two renewals may be lost before the marks stop."""


Publish = Callable[[str, bytes, int | None], None]
"""Sends a frame to a user's connections on `account`: the user id, the frame, and its `seq` (None for a mark)."""


class AccountHistory:
    """The account events the dbproc stored, and the state to start again from (`cfd_server.ws.replay`)."""

    def __init__(self, ctx: ServerContext) -> None:
        self.ctx = ctx

    async def events(self, user_id: str, since: int, limit: int) -> AccountEventsPage:
        return await self.ctx.rpc.call(ops.ACCOUNT_EVENTS, AccountEventsQuery(user_id=user_id, since=since,
                                                                              limit=limit), key=user_id)

    async def state(self, user_id: str) -> AccountState:
        return await self.ctx.rpc.call(ops.ACCOUNT_STATE, AccountStateQuery(user_id=user_id), key=user_id)


class AccountFeed:
    """Relays a user's account events and marks to their connections, and keeps the marks coming."""

    def __init__(self, ctx: ServerContext, publish: Publish, watched: Callable[[], Iterable[str]],
                 recheck: Callable[[str], None] | None = None, check_interval: float = 0.25) -> None:
        """`recheck(user_id)`: some of the user's events may not have been published; look in the database."""
        self.ctx = ctx
        self.publish = publish
        self.watched = watched
        self.recheck = recheck
        self.check_interval = check_interval
        self._routes = ctx.topics.routes()
        self._renewed: dict[str, float] = {}  # user id → when this server last asked for their marks
        self._subscriptions: list[Subscription] = []
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        bus, topics = self.ctx.bus, self.ctx.topics
        self._subscriptions.append(await bus.subscribe([topics.events], self.on_event, group=None))
        self._subscriptions.append(await bus.subscribe([topics.marks], self.on_mark, group=None))
        self._task = asyncio.get_running_loop().create_task(self._watch_loop(), name="account-watch")

    async def stop(self) -> None:
        for subscription in self._subscriptions:
            await subscription.stop()
        self._subscriptions.clear()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def on_event(self, message: Message) -> None:
        if message.key is None:
            return
        user_id = message.key.decode()
        try:
            event = _event_decoder.decode(message.value)
        except msgspec.DecodeError:
            return
        if isinstance(event, AccountEvent) and event.event == "resync":
            # Between services: a command was answered from its stored reply, so its events may never have gone
            # out. Not for clients; their connections get whatever the database has that they were not sent.
            if self.recheck is not None:
                self.recheck(user_id)
            return
        if isinstance(event, AlertEvent) and event.event == "triggered" and event.email:
            await self._mail_alert(event)
        self.publish(user_id, message.value, event.seq)

    async def _mail_alert(self, event: AlertEvent) -> None:
        """Mail a triggered alert that asked for it. Every server sees the event; the first to claim it in the
        cache sends the mail, so it goes once."""
        try:
            claimed = await self.ctx.cache.set(f"{self.ctx.settings.bus.topic_prefix}alert-mail:{event.alert.id}",
                                               b"1", ttl=86400, only_if_absent=True)
        except Exception as exc:  # the account channel still tells the trader
            log.warning("alert %s not mailed: the cache is unavailable (%s)", event.alert.id, exc)
            return
        if claimed and event.email:
            subject, text = alert_mail(event)
            self.ctx.mail.submit(event.email, subject, text)

    async def on_mark(self, message: Message) -> None:
        if message.key is not None:
            self.publish(message.key.decode(), message.value, None)

    async def renew(self) -> None:
        """Ask for the marks of the users watched here whose watch is due, and forget those no longer watched."""
        now = time.monotonic()
        watched = set(self.watched())
        for gone in self._renewed.keys() - watched:
            del self._renewed[gone]
        for user_id in watched:
            if now - self._renewed.get(user_id, -WATCH_RENEW) < WATCH_RENEW:
                continue
            try:
                await send(self.ctx.bus, self._routes, ops.WATCH_ACCOUNT,
                           WatchAccount(user_id=user_id, seconds=WATCH_LEASE), key=user_id,
                           command_id=uuid.uuid4().hex)
            except Exception as exc:  # a bus hiccup delays marks; the next round asks again
                log.debug("could not ask for the marks of %s: %s", user_id, exc)
                return
            self._renewed[user_id] = now

    async def _watch_loop(self) -> None:
        while True:
            await asyncio.sleep(self.check_interval)
            await self.renew()


def alert_mail(event: AlertEvent) -> tuple[str, str]:
    """The subject and text of a triggered alert's mail."""
    alert = event.alert
    if alert.kind == "price":
        what = f"{alert.symbol} is {alert.condition} {alert.price}: the bid was {event.price}"
    else:
        what = f"your margin level fell below {alert.below} %: it was {event.price} %"
    note = f"\n\nYour note: {alert.note}" if alert.note else ""
    return f"CFD Broker alert: {what}", f"Hello,\n\n{what}.{note}\n\nThis alert has fired and is now done.\n"
