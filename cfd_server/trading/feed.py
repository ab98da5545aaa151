"""The `account` WebSocket channel: position and account events as they happen, plus mark-to-market.

Events come from the dbproc over the broadcast account-events topic and go to the user's connections on
`account` unchanged. For users with such a connection the server also keeps their open positions and
balance (fetched once, then maintained from the same events) and, at most once per `mark_interval`,
pushes `{"type":"account","event":"mark",...}` with equity, margin level and each position's unrealised
PnL at the current broker quotes, when something changed.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Iterable
from decimal import Decimal

import msgspec

from cfd_server.context import ServerContext
from shared import operations as ops
from shared.bus import Message, Subscription
from shared.contracts import encode
from shared.contracts.bus import AccountQuery, PositionsQuery
from shared.contracts.events import AccountEvent, Event, PositionEvent, PositionMark
from shared.contracts.quote import Quote
from shared.contracts.rest import Position
from shared.trading import account_state, close_price, exposure_of, money, unrealized_pnl

log = logging.getLogger(__name__)
_event_decoder = msgspec.json.Decoder(Event)


class _Held:
    """One watched user's open positions and balance."""

    def __init__(self, balance: Decimal, positions: Iterable[Position]) -> None:
        self.balance = balance
        self.positions = {p.id: p for p in positions}
        self.last: bytes | None = None


class AccountFeed:
    def __init__(self, ctx: ServerContext, publish: Callable[[str, bytes], None], watched: Callable[[], Iterable[str]],
                 quote: Callable[[str], Quote | None], mark_interval: float = 1.0) -> None:
        self.ctx = ctx
        self.publish = publish
        self.watched = watched
        self.quote = quote
        self.mark_interval = mark_interval
        self._held: dict[str, _Held] = {}
        self._margin_called: set[str] = set()
        self._subscription: Subscription | None = None
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self._subscription = await self.ctx.bus.subscribe([self.ctx.topics.events], self.on_event, group=None)
        self._task = asyncio.get_running_loop().create_task(self._mark_loop())

    async def stop(self) -> None:
        if self._subscription is not None:
            await self._subscription.stop()
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
            self._held.pop(user_id, None)  # fetched again for the next mark
            return
        if isinstance(event, AccountEvent) and event.event in ("margin_call", "margin_call_cleared"):
            # Every dbproc instance watches every account, so each reports the same margin call: pass on
            # only the changes of state, so a trader hears it once.
            called = event.event == "margin_call"
            if (user_id in self._margin_called) == called:
                return
            if called:
                self._margin_called.add(user_id)
            else:
                self._margin_called.discard(user_id)
        self.publish(user_id, message.value)
        held = self._held.get(user_id)
        if held is None:
            return
        if isinstance(event, PositionEvent):
            held.balance = event.balance
            if event.event == "closed":
                held.positions.pop(event.position.id, None)
            else:
                held.positions[event.position.id] = event.position
        elif isinstance(event, AccountEvent) and event.account is not None:
            held.balance = event.account.balance

    async def _watch(self, user_id: str) -> _Held:
        rpc = self.ctx.rpc
        account = await rpc.call(ops.ACCOUNT, AccountQuery(user_id=user_id), key=user_id)
        positions = await rpc.call(ops.POSITIONS, PositionsQuery(user_id=user_id, status="open", limit=1000),
                                   key=user_id)
        held = self._held.setdefault(user_id, _Held(account.balance, positions))
        return held

    def mark(self, user_id: str, held: _Held) -> bytes | None:
        """The mark-to-market frame for one user, or None when it is what was last sent."""
        quotes: dict[str, Quote] = {}
        marks = []
        for p in held.positions.values():
            quote = self.quote(p.symbol)
            if quote is None:
                continue
            quotes[p.symbol] = quote
            marks.append(PositionMark(id=p.id, price=close_price(p.side, quote),
                                      unrealized_pnl=money(unrealized_pnl(p.side, p.qty, p.entry_price, quote))))
        account = account_state(held.balance, [exposure_of(p) for p in held.positions.values()], quotes)
        frame = encode(AccountEvent(event="mark", user_id=user_id, account=account, marks=marks))
        if frame == held.last:
            return None
        held.last = frame
        return frame

    async def _mark_loop(self) -> None:
        while True:
            await asyncio.sleep(self.mark_interval)
            watched = set(self.watched())
            for gone in set(self._held) - watched:
                del self._held[gone]
            for user_id in watched:
                try:
                    held = self._held.get(user_id) or await self._watch(user_id)
                    frame = self.mark(user_id, held)
                except Exception as exc:  # a dbproc hiccup delays marks; it never stops them
                    log.debug("no mark for %s this time: %s", user_id, exc)
                    continue
                if frame is not None:
                    self.publish(user_id, frame)
