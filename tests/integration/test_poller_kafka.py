"""Local exchange → backpack source → poller → Kafka → a subscriber.

Runs when `CFD_TEST_BACKENDS=real` and `CFD_KAFKA_BOOTSTRAP` are set (`eval "$(scripts/services.sh env)"`);
each run uses its own topic prefix, so runs never see each other's prices.
"""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import AsyncIterator
from decimal import Decimal

import msgspec
import pytest
from helpers import start_poller_of

from cfd_poller.local_exchange import LocalExchange
from shared.bus import Message, Topics
from shared.contracts.bus import PriceTick
from shared.settings import Settings, load_settings

REAL = os.environ.get("CFD_TEST_BACKENDS") == "real" and bool(os.environ.get("CFD_KAFKA_BOOTSTRAP"))

pytestmark = [
    pytest.mark.real,
    pytest.mark.skipif(not REAL, reason="needs Kafka (CFD_TEST_BACKENDS=real and CFD_KAFKA_BOOTSTRAP)"),
]

WAIT = 10.0  # Kafka delivery is quick, but a first fetch after subscribing can take a moment


@pytest.fixture
async def exchange() -> AsyncIterator[LocalExchange]:
    async with LocalExchange() as running:
        yield running


@pytest.fixture
def settings(exchange: LocalExchange) -> Settings:
    return load_settings({}, bus={"bootstrap": os.environ.get("CFD_KAFKA_BOOTSTRAP"), "partitions": 3,
                                  "topic_prefix": f"test-poller-{uuid.uuid4().hex[:8]}."},
                         prices={"source": "backpack", "backpack_ws_url": exchange.url})


async def test_exchange_prices_reach_a_kafka_subscriber_exactly_and_survive_a_drop(
        exchange: LocalExchange, settings: Settings) -> None:
    from shared.bus.kafka import KafkaBus

    bus = KafkaBus(settings.bus, settings.instance_id)
    await bus.start()
    received: asyncio.Queue[Message] = asyncio.Queue()

    async def handler(message: Message) -> None:
        await received.put(message)

    async def next_tick(symbol: str) -> tuple[Message, PriceTick]:
        while True:
            message = await asyncio.wait_for(received.get(), WAIT)
            tick = msgspec.json.decode(message.value, type=PriceTick)
            if tick.symbol == symbol:
                return message, tick

    topic = Topics(settings.bus).prices
    try:
        await bus.ensure_topics([topic])
        await bus.subscribe([topic], handler, group=None)
        poller = await start_poller_of(settings, bus)
        try:
            await exchange.wait_for_subscribers("SOL_USDC", timeout=WAIT)
            await exchange.quote("SOL_USDC", "185.05", "185.10")
            message, tick = await next_tick("SOL_USDC")
            assert (tick.bid, tick.ask) == (Decimal("185.05"), Decimal("185.10"))
            assert message.topic == topic and message.key == b"SOL_USDC"
            assert b'"185.10"' in message.value

            exchange.drop_connections()
            await exchange.wait_until(lambda: exchange.subscribe_count == 2, WAIT)
            await exchange.wait_for_subscribers("SOL_USDC", timeout=WAIT)
            await exchange.quote("SOL_USDC", "185.20", "185.30")
            _, tick = await next_tick("SOL_USDC")
            assert (tick.bid, tick.ask) == (Decimal("185.20"), Decimal("185.30"))
            assert poller.metrics.reconnects == 1
            assert poller.metrics.publish_failures == 0
        finally:
            await poller.stop()
    finally:
        await bus.stop()
