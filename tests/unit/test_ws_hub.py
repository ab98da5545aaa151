"""The hub's subscription index: who gets which frame."""

from __future__ import annotations

from decimal import Decimal

import pytest

from cfd_server.ws.client import Client
from cfd_server.ws.hub import Hub
from cfd_server.ws.protocol import parse_channel, text_frame
from shared.contracts import Candle


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
    hub.authenticate(a1, "alice")
    hub.authenticate(a2, "alice")
    hub.authenticate(b, "bob")
    hub.subscribe(a1, channels("account"))
    hub.subscribe(b, channels("account"))
    assert hub.connections_of("alice") == {a1, a2}
    hub.publish_account("alice", b"event")
    assert frames(a1) == [text_frame(b"event")] and frames(a2) == [] and frames(b) == []
    hub.authenticate(a1, "bob")  # signing in as someone else drops alice's account channel
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
