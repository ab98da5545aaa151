"""The hub: who listens to what, and the fan-out of each frame to its listeners.

Indexes are kept per delivery target, so publishing walks exactly the clients that want a frame: one index
per symbol for prices (a client on `prices.*` sits in every symbol's), one per (interval, symbol) for
candles, one per user for `account`. The price index maps each client to its outbox, so the hot loop goes
straight to the outboxes. A frame is encoded and framed once and the same bytes are queued for
every listener: written at once for the first frame of an event-loop iteration, queued and flushed at the
end of the iteration for the rest of a burst.

Account events reach each connection once and in `seq` order: a connection remembers the last `seq` it was
sent; an event it already has (a resume sent it) is dropped, and one that skips a number (an event lost between
the dbproc's commit and the bus) is held, with those after it, while the missing ones are read from the database
(`refill`, `cfd_server.ws.replay`).

Sign-ins are kept off that path: each authenticated connection holds the session it authenticated with, a
timer ends it at the token's expiry, and `end_sessions` (a logout or a disable on any server, see
`cfd_server.auth.session_ends`) takes the `account` channel and the sign-in from the connections it names.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING

from cfd_server.ws.client import Client
from cfd_server.ws.outbox import Outbox
from cfd_server.ws.protocol import ACCOUNT, ALL_PRICES, CLOSE_TOO_SLOW, Channel, ProtocolError, text_frame
from shared.candles import INTERVALS
from shared.contracts import encode
from shared.contracts.rest import Candle
from shared.contracts.ws import CandleFrame, ErrorFrame
from shared.markets import MARKETS

if TYPE_CHECKING:
    from cfd_server.auth.session import Session

log = logging.getLogger(__name__)

SessionTest = Callable[["Session"], bool]
"""Says whether a session is one of those that ended."""

Refill = Callable[[Client, int], None]
"""Starts sending a connection the account events after a `seq` from the database (`cfd_server.ws.replay`)."""

ENDINGS_KEPT_SECONDS = 60.0
"""How long the hub remembers ended sessions, for a sign-in whose check raced with their end."""

EXPIRED = ("session_expired", "Your session has expired, so the account channel stopped; sign in again and send "
                              "auth with the new token.")


class HubStats:
    """Counters for logs, tests and the benchmark."""

    __slots__ = ("closed_slow", "connections", "deliveries", "frames")

    def __init__(self) -> None:
        self.connections = 0  # accepted since start
        self.frames = 0  # frames published (each fanned out to its listeners)
        self.deliveries = 0  # frames queued to a client
        self.closed_slow = 0


class Hub:
    """Subscriptions and fan-out; one per server, in the server's event loop."""

    def __init__(self) -> None:
        self.clients: set[Client] = set()
        self.stats = HubStats()
        self._prices: dict[str, dict[Client, Outbox]] = {symbol: {} for symbol in MARKETS}
        self._candles: dict[tuple[str, str], set[Client]] = {
            (interval, symbol): set() for interval in INTERVALS for symbol in MARKETS
        }
        self._accounts: dict[str, set[Client]] = {}  # user id -> clients on `account`
        self._users: dict[str, set[Client]] = {}  # user id -> authenticated clients
        self._dirty: list[Outbox] = []
        self._flush_handle: asyncio.Handle | None = None
        self._burst = False  # something was fanned out in this loop iteration already
        self._closing: set[asyncio.Task[None]] = set()
        self._ended: dict[str, list[tuple[float, SessionTest, str, str]]] = {}  # user id -> recent endings
        self._ended_order: deque[tuple[float, str]] = deque()
        self.refill: Refill | None = None

    # --- connections ----------------------------------------------------------------------------------

    def add(self, client: Client) -> None:
        self.clients.add(client)
        self.stats.connections += 1

    def remove(self, client: Client) -> None:
        """Forget `client` everywhere (its connection closed)."""
        client.outbox.close()
        self.clients.discard(client)
        self.unsubscribe(client, list(client.channels))
        if client.user_id is not None:
            _discard(self._users, client.user_id, client)
        if client.expiry is not None:
            client.expiry.cancel()
            client.expiry = None

    def schedule(self, outbox: Outbox) -> None:
        """Flush `outbox` at the end of this loop iteration (an `Outbox` calls this on its first frame)."""
        self._dirty.append(outbox)
        if self._flush_handle is None:
            self._flush_handle = asyncio.get_running_loop().call_soon(self.flush)

    def _first_in_iteration(self) -> bool:
        """True for the first fan-out of this loop iteration: its frames can be written at once."""
        if self._burst:
            return False
        self._burst = True
        if self._flush_handle is None:
            self._flush_handle = asyncio.get_running_loop().call_soon(self.flush)
        return True

    def flush(self) -> None:
        """Write every outbox touched since the last flush (normally called by the event loop)."""
        self._burst = False
        if self._flush_handle is not None:
            self._flush_handle.cancel()
            self._flush_handle = None
        dirty, self._dirty = self._dirty, []
        for outbox in dirty:
            outbox.flush()

    def stuck(self, client: Client, reason: str) -> None:
        """Close a client that stopped reading (its outbox gave up on it)."""
        self.stats.closed_slow += 1
        log.warning("closing %r: too slow (%s)", client, reason)
        self.remove(client)
        if client.conn is not None:
            task = asyncio.get_running_loop().create_task(client.conn.close(CLOSE_TOO_SLOW, "too slow"))
            self._closing.add(task)  # the loop keeps only a weak reference to a task
            task.add_done_callback(self._closing.discard)

    # --- subscriptions ----------------------------------------------------------------------------------

    def subscribe(self, client: Client, channels: Iterable[Channel]) -> None:
        for channel in channels:
            if channel.name in client.channels:
                continue
            client.channels.add(channel.name)
            if channel.kind == "prices":
                for symbol in self._symbols(channel):
                    self._prices[symbol][client] = client.outbox
            elif channel.kind == "candles":
                self._candles[(channel.interval, channel.symbol)].add(client)  # type: ignore[index]
            elif channel.kind == ACCOUNT and client.user_id is not None:
                self._accounts.setdefault(client.user_id, set()).add(client)

    def unsubscribe(self, client: Client, channels: Iterable[Channel | str]) -> None:
        for channel in channels:
            name = channel if isinstance(channel, str) else channel.name
            if name not in client.channels:
                continue
            client.channels.discard(name)
            if name.startswith("prices."):
                wildcard = ALL_PRICES in client.channels
                for symbol in MARKETS if name == ALL_PRICES else (name.removeprefix("prices."),):
                    if not wildcard and f"prices.{symbol}" not in client.channels:
                        self._prices[symbol].pop(client, None)
            elif name.startswith("candles."):
                _, interval, symbol = name.split(".")
                self._candles[(interval, symbol)].discard(client)
            elif name == ACCOUNT:
                if client.user_id is not None:
                    _discard(self._accounts, client.user_id, client)
                self._leave_account(client)

    def authenticate(self, client: Client, session: Session) -> None:
        """Attach `client` to the user of `session` until the session ends or expires (a re-auth as someone
        else drops the old user's account channel). Raises `ProtocolError` if the session ended already."""
        user_id = session.user.id
        for _, ends, code, message in self._recent_endings(user_id):
            if ends(session):  # its end was announced while its token was being checked
                raise ProtocolError(code, message)
        if client.user_id != user_id:
            if client.user_id is not None:
                self.unsubscribe(client, [ACCOUNT])
                _discard(self._users, client.user_id, client)
            client.user_id = user_id
            self._users.setdefault(user_id, set()).add(client)
        client.session = session
        if client.expiry is not None:
            client.expiry.cancel()
        delay = max(0.0, session.expires_at - time.time())
        client.expiry = asyncio.get_running_loop().call_later(delay, self._expire, client, session)

    def end_sessions(self, user_id: str, ends: SessionTest, code: str, message: str) -> int:
        """Sign out the connections of `user_id` whose session `ends`: each gets an error frame (`code`,
        `message`) and loses `account` and its sign-in; its other channels stay. Returns how many."""
        self._remember_ending(user_id, ends, code, message)
        ended = [c for c in self._users.get(user_id, ()) if c.session is not None and ends(c.session)]
        for client in ended:
            self._sign_out(client, code, message)
        return len(ended)

    def _expire(self, client: Client, session: Session) -> None:
        if client.session is session:
            self._sign_out(client, *EXPIRED)

    def _sign_out(self, client: Client, code: str, message: str) -> None:
        self.unsubscribe(client, [ACCOUNT])
        if client.user_id is not None:
            _discard(self._users, client.user_id, client)
        client.user_id = None
        client.session = None
        if client.expiry is not None:
            client.expiry.cancel()
            client.expiry = None
        self.send(client, encode(ErrorFrame(code=code, message=message)))

    def _remember_ending(self, user_id: str, ends: SessionTest, code: str, message: str) -> None:
        now = time.monotonic()
        self._ended.setdefault(user_id, []).append((now, ends, code, message))
        self._ended_order.append((now, user_id))
        self._recent_endings(user_id)  # forgets what is too old

    def _recent_endings(self, user_id: str) -> list[tuple[float, SessionTest, str, str]]:
        cutoff = time.monotonic() - ENDINGS_KEPT_SECONDS
        order = self._ended_order
        while order and order[0][0] < cutoff:
            _, old_user = order.popleft()
            kept = [e for e in self._ended.get(old_user, ()) if e[0] >= cutoff]
            if kept:
                self._ended[old_user] = kept
            else:
                self._ended.pop(old_user, None)
        return self._ended.get(user_id, [])

    def footprint(self) -> dict[str, int]:
        """What the hub holds now, per index (for tests and diagnostics): all zero with no connection open,
        but for sign-outs of the last `ENDINGS_KEPT_SECONDS`."""
        return {"clients": len(self.clients),
                "price_listeners": sum(len(listeners) for listeners in self._prices.values()),
                "candle_listeners": sum(len(listeners) for listeners in self._candles.values()),
                "account_users": len(self._accounts), "users": len(self._users), "dirty": len(self._dirty),
                "closing": len(self._closing), "endings": len(self._ended_order)}

    def account_users(self) -> list[str]:
        """The users with at least one connection on `account` (whose marks the server asks for)."""
        return list(self._accounts)

    def connections_of(self, user_id: str) -> set[Client]:
        """The authenticated connections of `user_id` (for account and position events)."""
        return self._users.get(user_id, set())

    @staticmethod
    def _symbols(channel: Channel) -> Iterable[str]:
        return MARKETS if channel.symbol == "*" else (channel.symbol,)  # type: ignore[return-value]

    # --- publishing ---------------------------------------------------------------------------------

    def send(self, client: Client, payload: bytes) -> None:
        """Queue one frame (a reply) for one client; never conflated."""
        client.outbox.put(None, text_frame(payload))

    def publish_price(self, symbol: str, payload: bytes) -> None:
        """Fan a `price` frame out to every client on `prices.<symbol>` or `prices.*` (the hot path)."""
        outboxes = self._prices.get(symbol)
        if not outboxes:
            return
        frame = text_frame(payload)
        if self._first_in_iteration():
            for outbox in outboxes.values():
                outbox.put_now(symbol, frame)
        else:
            for outbox in outboxes.values():
                outbox.put(symbol, frame)
        self.stats.frames += 1
        self.stats.deliveries += len(outboxes)

    def publish_candle(self, symbol: str, interval: str, candle: Candle, closed: bool) -> None:
        """Fan a `candle` frame out to `candles.<interval>.<symbol>`; encoded only when someone listens."""
        clients = self._candles.get((interval, symbol))
        if not clients:
            return
        frame = text_frame(encode(CandleFrame(symbol=symbol, interval=interval, t=candle.t, o=candle.o,
                                              h=candle.h, l=candle.l, c=candle.c, n=candle.n, closed=closed)))
        key = (interval, symbol, candle.t)  # updates of one bucket conflate; the next bucket's do not
        for client in clients:
            client.outbox.put(key, frame)
        self.stats.frames += 1
        self.stats.deliveries += len(clients)

    def publish_account(self, user_id: str, payload: bytes, seq: int | None = None) -> None:
        """Send an account frame to the user's connections on `account`; never conflated. An event (with its
        `seq`) goes to each connection once and in order; a mark (no `seq`) goes as it comes."""
        clients = self._accounts.get(user_id)
        if not clients:
            return
        frame = text_frame(payload)
        for client in clients:
            self._to_account(client, seq, frame)
        self.stats.frames += 1
        self.stats.deliveries += len(clients)

    def _to_account(self, client: Client, seq: int | None, frame: bytes) -> None:
        if client.held is not None:  # missed events are being read: this one waits for them
            client.held.append((seq, frame))
            return
        if seq is not None:
            last = client.account_seq
            if last is not None:
                if seq <= last:
                    return  # sent already, by a resume
                if seq > last + 1 and self.refill is not None:  # some went missing: read them first
                    client.held = [(seq, frame)]
                    self.refill(client, last)
                    return
            client.account_seq = seq
        client.outbox.put(None, frame)

    # --- resuming the account channel ---------------------------------------------------------------------

    def hold(self, client: Client) -> None:
        """Keep the live account frames of `client` back (from now until `release`)."""
        if client.held is None:
            client.held = []

    def send_replayed(self, client: Client, seq: int, payload: bytes) -> None:
        """Send a stored account event (a resume), unless the connection has it already."""
        if client.account_seq is not None and seq <= client.account_seq:
            return
        client.account_seq = seq
        self.send(client, payload)

    def release(self, client: Client) -> None:
        """Send the live frames held back during a resume, in order, but for the events it sent already."""
        held, client.held = client.held, None
        for seq, frame in held or ():
            self._to_account(client, seq, frame)

    def recheck(self, user_id: str) -> None:
        """Some of the user's events may never have been published (a command answered from its stored reply):
        send each of the user's connections what the database has after the last event it was sent."""
        if self.refill is None:
            return
        for client in self._accounts.get(user_id, ()):
            if client.account_seq is not None and client.held is None:
                client.held = []
                self.refill(client, client.account_seq)

    def _leave_account(self, client: Client) -> None:
        """The connection left `account`: a resume in progress stops, and its place in the events is forgotten."""
        if client.replay is not None:
            client.replay.cancel()
            client.replay = None
        client.held = None
        client.account_seq = None


def _discard(index: dict[str, set[Client]], key: str, client: Client) -> None:
    members = index.get(key)
    if members is not None:
        members.discard(client)
        if not members:
            del index[key]
