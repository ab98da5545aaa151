"""Kafka topics carry the retention the platform configures for them, on creation and after a change."""

from __future__ import annotations

import asyncio
import uuid

from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType
from helpers import real_only

from shared.bus import Topics
from shared.bus.kafka import KafkaBus, describe_topic_configs

pytestmark = real_only


async def retention_ms(bootstrap: str, topics: list[str]) -> dict[str, str]:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        configs = await describe_topic_configs(admin, topics)
    finally:
        await admin.close()
    return {t: configs[t]["retention.ms"] for t in topics}


async def test_created_topics_carry_their_retention_and_a_changed_one_is_set_back(make_settings):
    settings = make_settings(bus={"topic_prefix": f"ret{uuid.uuid4().hex[:6]}.", "kafka_retention_prices_seconds": 600})
    topics = Topics(settings.bus)
    bus = KafkaBus(settings.bus, settings.instance_id)
    await bus.ensure_topics(topics.all())

    found = await retention_ms(bus.bootstrap, topics.all())
    assert found[topics.prices] == "600000"
    assert found[topics.trading_requests] == found[topics.replies] == "3600000"
    assert found[topics.events] == found[topics.sessions] == "86400000"

    admin = AIOKafkaAdminClient(bootstrap_servers=bus.bootstrap)  # an operator changed one by hand, and set another
    await admin.start()
    try:
        await admin.alter_configs([ConfigResource(ConfigResourceType.TOPIC, topics.events,
                                                  {"retention.ms": "1000", "max.message.bytes": "2000000",
                                                   "segment.ms": "86400000"})])
    finally:
        await admin.close()
    assert await settled_retention(bus.bootstrap, topics.events, "1000") == "1000"

    await bus.ensure_topics(topics.all())  # the next start converges ours and keeps the operator's own
    assert await settled_retention(bus.bootstrap, topics.events, "86400000") == "86400000"
    admin = AIOKafkaAdminClient(bootstrap_servers=bus.bootstrap)
    await admin.start()
    try:
        configs = (await describe_topic_configs(admin, [topics.events]))[topics.events]
    finally:
        await admin.close()
    assert configs["max.message.bytes"] == "2000000"
    assert configs["segment.ms"] == str(86400 // 4 * 1000)


async def settled_retention(bootstrap: str, topic: str, expected: str) -> str:
    """The topic's retention once a change has reached the broker that answers (configs spread in a moment)."""
    for _ in range(50):
        found = (await retention_ms(bootstrap, [topic]))[topic]
        if found == expected:
            break
        await asyncio.sleep(0.1)
    return found
