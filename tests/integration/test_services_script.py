"""`scripts/services.sh` as an operator uses it: the ports it is given, a restart that keeps Kafka's controller
port, and `groups` showing who owns which partition and how far behind each group is.

The Kafka tests start a Kafka of their own (in a temporary state directory, on free ports), never the one the
other tests use."""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from helpers import ROOT, child_env, free_port, real_only

SCRIPT = ROOT / "scripts" / "services.sh"


def services(env: dict[str, str], *args: str, timeout: float = 240) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["bash", str(SCRIPT), *args], env=env, capture_output=True, text=True, timeout=timeout,
                          stdin=subprocess.DEVNULL)


def test_env_names_the_ports_it_is_given() -> None:
    env = child_env(CFD_PG_PORT="15433", CFD_REDIS_PORT="16380", CFD_KAFKA_PORT="19094")
    printed = services(env, "env")
    assert printed.returncode == 0, printed.stderr
    assert printed.stdout.splitlines() == [
        "export CFD_DATABASE_URL=postgresql://cfd:cfd@127.0.0.1:15433/cfd",
        "export CFD_REDIS_URL=redis://127.0.0.1:16380/0",
        "export CFD_KAFKA_BOOTSTRAP=127.0.0.1:19094",
    ]


@pytest.mark.parametrize("no_color", ["1", None])
def test_status_is_plain_text_with_no_color(tmp_path: Path, no_color: str | None) -> None:
    env = child_env(CFD_SERVICES_DIR=str(tmp_path), CFD_PG_PORT=str(free_port()), CFD_REDIS_PORT=str(free_port()),
                    CFD_KAFKA_PORT=str(free_port()), CI="true")
    env.pop("NO_COLOR", None)
    if no_color:
        env["NO_COLOR"] = no_color
    status = services(env, "status")
    assert status.returncode == 1  # nothing runs on those ports
    assert "down" in status.stderr and "scripts/services.sh up" in status.stderr
    assert ("\x1b[" in status.stderr) is (no_color is None)


# --- a Kafka of the tests' own ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def sandbox_kafka(tmp_path_factory) -> Iterator[dict[str, str]]:
    """A Kafka started by the script in a temporary state directory; yields the script's environment."""
    if shutil.which("java") is None and not os.environ.get("JAVA_HOME"):
        pytest.skip("needs java")
    state = tmp_path_factory.mktemp("services")
    env = child_env(CFD_SERVICES_DIR=str(state), CFD_KAFKA_PORT=str(free_port()),
                    CFD_KAFKA_CONTROLLER_PORT=str(free_port()), NO_COLOR="1")
    started = services(env, "up", "kafka")
    try:
        assert started.returncode == 0, started.stdout + started.stderr
        yield env
    finally:
        services(env, "down", "kafka")


def controller_port(env: dict[str, str]) -> str:
    config = (Path(env["CFD_SERVICES_DIR"]) / "kafka" / "server.properties").read_text()
    return re.search(r"^controller\.quorum\.voters=1@[\d.]+:(\d+)$", config, re.M).group(1)


@real_only
def test_a_restart_without_the_controller_port_keeps_it(sandbox_kafka: dict[str, str]) -> None:
    port = sandbox_kafka["CFD_KAFKA_CONTROLLER_PORT"]
    assert services(sandbox_kafka, "down", "kafka").returncode == 0
    forgetful = {k: v for k, v in sandbox_kafka.items() if k != "CFD_KAFKA_CONTROLLER_PORT"}
    restarted = services(forgetful, "up", "kafka")
    assert restarted.returncode == 0, restarted.stdout + restarted.stderr
    assert f"controller on :{port}" in restarted.stdout
    assert controller_port(sandbox_kafka) == port


@real_only
def test_groups_shows_partition_owners_and_lag(sandbox_kafka: dict[str, str]) -> None:
    from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

    bootstrap = f"127.0.0.1:{sandbox_kafka['CFD_KAFKA_PORT']}"

    async def group_with_lag() -> subprocess.CompletedProcess[str]:
        producer = AIOKafkaProducer(bootstrap_servers=bootstrap)
        await producer.start()
        try:
            for n in range(5):
                await producer.send_and_wait("orders", f"{n}".encode(), partition=0)
        finally:
            await producer.stop()
        consumer = AIOKafkaConsumer("orders", bootstrap_servers=bootstrap, group_id="pricing",
                                    client_id="cfd-instance42", enable_auto_commit=False,
                                    auto_offset_reset="earliest")
        await consumer.start()
        try:
            for _ in range(300):
                if consumer.assignment():
                    break
                await asyncio.sleep(0.1)
            await consumer.commit({TopicPartition("orders", 0): 2})  # read 2 of 5: 3 behind
            return await asyncio.to_thread(services, sandbox_kafka, "groups", "pricing")
        finally:
            await consumer.stop()

    shown = asyncio.run(group_with_lag())
    assert shown.returncode == 0, shown.stdout + shown.stderr
    row = next(line.split() for line in shown.stdout.splitlines() if line.startswith("pricing"))
    # GROUP TOPIC PARTITION CURRENT-OFFSET LOG-END-OFFSET LAG CONSUMER-ID HOST CLIENT-ID
    assert row[:6] == ["pricing", "orders", "0", "2", "5", "3"]
    assert row[-1] == "cfd-instance42"
    listed = services(sandbox_kafka, "groups", "--list")
    assert "pricing" in listed.stdout.split()
