"""The hub's subscription index: who gets which frame."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from decimal import Decimal

import pytest

from cfd_server.auth.session import Session
from cfd_server.auth.session_ends import SessionsEnded, ending
from cfd_server.ws.client import Client
from cfd_server.ws.hub import Hub
from cfd_server.ws.protocol import ProtocolError, parse_channel, text_frame
from shared.contracts.rest import Candle, User


class RecordingOutbox:
    def __init__(self) -> None:
        self.frames: list[tuple[object, bytes]] = []

    def put(self, key, frame: bytes) -> None:
        self.frames.append((key, frame))

    put_now = put

    def close(self) -> None:
        pass


def client() -> Client:
    return Client(None, RecordingOutbox())  # type: ignore[arg-type]


def frames(c: Client) -> list[bytes]:
    return [f for _, f in c.outbox.frames]  # type: ignore[attr-defined]


def channels(*names: str):
    return [parse_channel(n) for n in names]


def session(user_id: str, *, issued_ms: int | None = None, lifetime: float = 3600) -> Session:
    return Session(jti=uuid.uuid4().hex, user=User(id=user_id, email=f"{user_id}@example.com", name=user_id,
                                                    created_at=0),
                   expires_at=int(time.time() + lifetime), issued_ms=issued_ms or time.time_ns() // 1_000_000)


def errors(c: Client) -> list[str]:
    """The codes of the error frames `c` got (unmasked frames: the JSON payload follows the header)."""
    return [json.loads(f[f.index(b"{"):])["code"] for f in frames(c) if b'"type":"error"' in f]


def end(hub: Hub, notice: SessionsEnded) -> int:
    return hub.end_sessions(notice.user_id, notice.ends, *ending(notice.reason))


@pytest.fixture
async def hub() -> Hub:
    return Hub()  # publishing schedules its flush on the running loop


async def test_a_price_reaches_exactly_its_subscribers_once(hub):
    sol, wildcard, both, none = client(), client(), client(), client()
    for c in (sol, wildcard, both, none):
        hub.add(c)
    hub.subscribe(sol, channels("prices.SOL_USDC"))
    hub.subscribe(wildcard, channels("prices.*"))
    hub.subscribe(both, channels("prices.*", "prices.SOL_USDC"))
    hub.publish_price("SOL_USDC", b"sol")
    hub.publish_price("BTC_USDC", b"btc")
    assert frames(sol) == [text_frame(b"sol")]
    assert frames(wildcard) == [text_frame(b"sol"), text_frame(b"btc")]
    assert frames(both) == [text_frame(b"sol"), text_frame(b"btc")]
    assert frames(none) == []
    assert hub.stats.deliveries == 5


async def test_unsubscribing_the_wildcard_keeps_explicit_symbols(hub):
    c = client()
    hub.add(c)
    hub.subscribe(c, channels("prices.*", "prices.ETH_USDC"))
    hub.unsubscribe(c, channels("prices.*"))
    hub.publish_price("ETH_USDC", b"eth")
    hub.publish_price("SOL_USDC", b"sol")
    assert frames(c) == [text_frame(b"eth")]
    hub.subscribe(c, channels("prices.*"))
    hub.unsubscribe(c, channels("prices.ETH_USDC"))
    hub.publish_price("ETH_USDC", b"eth2")  # still covered by the wildcard
    assert frames(c)[-1] == text_frame(b"eth2")


async def test_candle_frames_are_keyed_by_bucket(hub):
    c = client()
    hub.add(c)
    hub.subscribe(c, channels("candles.5m.SOL_USDC"))
    candle = Candle(t=300_000, o=Decimal("1"), h=Decimal("2"), l=Decimal("1"), c=Decimal("2"), n=2)
    hub.publish_candle("SOL_USDC", "1m", candle, False)  # another interval: not sent
    hub.publish_candle("SOL_USDC", "5m", candle, True)
    [(key, frame)] = c.outbox.frames  # type: ignore[attr-defined]
    assert key == ("5m", "SOL_USDC", 300_000)
    assert frame.endswith(b'"t":300000,"o":"1","h":"2","l":"1","c":"2","n":2,"closed":true}')


async def test_account_events_reach_the_users_subscribed_connections_only(hub):
    a1, a2, b = client(), client(), client()
    for c in (a1, a2, b):
        hub.add(c)
    hub.authenticate(a1, session("alice"))
    hub.authenticate(a2, session("alice"))
    hub.authenticate(b, session("bob"))
    hub.subscribe(a1, channels("account"))
    hub.subscribe(b, channels("account"))
    assert hub.connections_of("alice") == {a1, a2}
    hub.publish_account("alice", b"event")
    assert frames(a1) == [text_frame(b"event")] and frames(a2) == [] and frames(b) == []
    hub.authenticate(a1, session("bob"))  # signing in as someone else drops alice's account channel
    assert "account" not in a1.channels and hub.connections_of("alice") == {a2}
    hub.remove(b)
    hub.publish_account("bob", b"e2")
    assert frames(b) == [] and hub.connections_of("bob") == {a1}


async def test_removing_a_client_forgets_it_everywhere(hub):
    c = client()
    hub.add(c)
    hub.subscribe(c, channels("prices.*", "candles.1m.SOL_USDC"))
    hub.remove(c)
    hub.publish_price("SOL_USDC", b"x")
    hub.publish_candle("SOL_USDC", "1m", Candle(t=0, o=Decimal(1), h=Decimal(1), l=Decimal(1), c=Decimal(1), n=1),
                       False)
    assert frames(c) == [] and not hub.clients and hub.stats.deliveries == 0


async def test_a_logout_signs_out_exactly_the_connections_of_that_session(hub):
    first, second = session("alice"), session("alice")
    a1, a1_again, a2, b = client(), client(), client(), client()
    for c, s in ((a1, first), (a1_again, first), (a2, second), (b, session("bob"))):
        hub.add(c)
        hub.authenticate(c, s)
        hub.subscribe(c, channels("account", "prices.SOL_USDC"))
    assert end(hub, SessionsEnded(user_id="alice", reason="logout", jti=first.jti)) == 2
    for c in (a1, a1_again):
        assert errors(c) == ["session_ended"]
        assert c.user_id is None and c.channels == {"prices.SOL_USDC"}  # other channels stay
    hub.publish_account("alice", b"event")
    hub.publish_price("SOL_USDC", b"sol")
    assert frames(a1)[-1] == text_frame(b"sol") and b"event" not in b"".join(frames(a1))
    assert frames(a2)[-2:] == [text_frame(b"event"), text_frame(b"sol")]
    assert hub.connections_of("alice") == {a2} and hub.account_users() == ["alice", "bob"]
    assert errors(b) == [] and errors(a2) == []


async def test_disabling_signs_out_every_session_of_the_user_only(hub):
    a1, a2, b = client(), client(), client()
    for c, s in ((a1, session("alice")), (a2, session("alice")), (b, session("bob"))):
        hub.add(c)
        hub.authenticate(c, s)
        hub.subscribe(c, channels("account"))
    now = time.time_ns() // 1_000_000
    assert end(hub, SessionsEnded(user_id="alice", reason="disabled", before_ms=now + 1)) == 2
    assert errors(a1) == errors(a2) == ["account_disabled"] and errors(b) == []
    assert hub.account_users() == ["bob"]


async def test_signing_out_everywhere_keeps_the_named_session_and_later_ones(hub):
    now = time.time_ns() // 1_000_000
    kept, other, later = session("alice", issued_ms=now - 2), session("alice", issued_ms=now - 1), \
        session("alice", issued_ms=now + 5)
    clients = {s.jti: client() for s in (kept, other, later)}
    for s in (kept, other, later):
        hub.add(clients[s.jti])
        hub.authenticate(clients[s.jti], s)
    assert end(hub, SessionsEnded(user_id="alice", reason="signed_out_everywhere", before_ms=now,
                                  keep_jti=kept.jti)) == 1
    assert [errors(clients[s.jti]) for s in (kept, other, later)] == [[], ["session_ended"], []]


async def test_a_sign_in_whose_session_ended_while_it_was_checked_is_refused(hub):
    ended, live = session("alice"), session("alice")
    end(hub, SessionsEnded(user_id="alice", reason="logout", jti=ended.jti))  # before the sign-in attaches
    c = client()
    hub.add(c)
    with pytest.raises(ProtocolError) as refused:
        hub.authenticate(c, ended)
    assert refused.value.code == "session_ended" and c.user_id is None
    hub.authenticate(c, live)
    assert c.user_id == "alice"


async def test_a_session_expiring_signs_its_connections_out(hub):
    short, long = session("alice", lifetime=0.05), session("alice")
    c, other = client(), client()
    for conn, s in ((c, short), (other, long)):
        hub.add(conn)
        hub.authenticate(conn, s)
        hub.subscribe(conn, channels("account"))
    await asyncio.sleep(0.3)  # `exp` is whole seconds, rounded down: the timer is due within 0.05 s
    assert errors(c) == ["session_expired"] and "account" not in c.channels
    assert errors(other) == [] and hub.connections_of("alice") == {other}


async def test_a_new_sign_in_replaces_the_expiry_of_the_old_one(hub):
    c = client()
    hub.add(c)
    hub.authenticate(c, session("alice", lifetime=-1))
    hub.authenticate(c, session("alice"))  # re-auth before the old timer fired
    await asyncio.sleep(0.05)
    assert errors(c) == [] and c.user_id == "alice"
