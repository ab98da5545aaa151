"""`cfd server --workers 2` on Kafka and Redis, as an operator runs it: both workers answer on the one REST port
and the one WebSocket port, each relays its own connections' account events and session ends, a killed worker
comes back, and SIGTERM stops them all."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
import websockets
from helpers import child_env, free_port, real_only, sign_up
from prometheus_client.parser import text_string_to_metric_families

from cfd_cli.platform import Platform

pytestmark = real_only

ADMIN_TOKEN = "workers-" + uuid.uuid4().hex


def _free_pair() -> int:
    """A port whose next one is free too (the metrics ports of workers 1 and 2)."""
    for _ in range(50):
        port = free_port()
        with socket.socket() as probe:
            try:
                probe.bind(("127.0.0.1", port + 1))
            except OSError:
                continue
            return port
    raise AssertionError("no two free ports in a row")


def _metrics(text: str) -> dict[str, list]:
    return {family.name: family.samples for family in text_string_to_metric_families(text)}


class Group:
    """The `cfd server --workers 2` process of a test, its ports and its output."""

    def __init__(self, process: subprocess.Popen, output: Path, *, port: int, ws_port: int, metrics_port: int,
                 instance: str) -> None:
        self.process = process
        self.output = output
        self.api = f"http://127.0.0.1:{port}/api/v1"
        self.port = port
        self.ws_url = f"ws://127.0.0.1:{ws_port}/ws"
        self.ws_port = ws_port
        self.metrics_ports = (metrics_port, metrics_port + 1)
        self.instances = (f"{instance}-w1", f"{instance}-w2")

    def log(self) -> str:
        return self.output.read_text(errors="replace")

    async def wait_for_log(self, text: str, timeout: float = 60) -> None:
        async with asyncio.timeout(timeout):
            while text not in self.log():
                assert self.process.poll() is None, f"cfd server --workers stopped:\n{self.log()}"
                await asyncio.sleep(0.1)

    async def worker_metrics(self, number: int) -> dict[str, list]:
        async with httpx.AsyncClient(timeout=5) as client:
            response = await client.get(f"http://127.0.0.1:{self.metrics_ports[number - 1]}/metrics")
        assert response.status_code == 200
        return _metrics(response.text)

    async def ws_clients(self) -> tuple[float, float]:
        """WebSocket connections open on worker 1 and on worker 2, from each one's own metrics port."""
        counts = []
        for number in (1, 2):
            samples = (await self.worker_metrics(number))["cfd_ws_clients"]
            counts.append(sum(s.value for s in samples))
        return counts[0], counts[1]

    async def status(self) -> dict[str, dict]:
        async with httpx.AsyncClient(timeout=10) as client:
            response = await client.get(self.api + "/admin/status", headers=OPERATOR)
        assert response.status_code == 200, response.text
        return {p["instance"]: p for p in response.json()}


OPERATOR = {"Authorization": f"Bearer {ADMIN_TOKEN}"}


def _spawn(output: Path, env: dict[str, str], command: str = "server") -> subprocess.Popen:
    with output.open("wb") as sink:
        return subprocess.Popen([sys.executable, "-m", "cfd_cli.main", command, "--workers", "2"], env=env,
                                stdout=sink, stderr=subprocess.STDOUT)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


async def _status_until(group: Group, done, timeout: float = 30) -> dict[str, dict]:
    """`GET /admin/status` (from whichever worker answers) until `done(processes)`."""
    async with asyncio.timeout(timeout):
        while not done(processes := await group.status()):  # noqa: ASYNC110 - polling another process
            await asyncio.sleep(0.5)
    return processes


@pytest.fixture
async def group(make_settings, tmp_path) -> AsyncIterator[Group]:
    """A dbproc in this process and `cfd server --workers 2` in another, on topics of their own."""
    port, ws_port, metrics_port = free_port(), free_port(), _free_pair()
    settings = make_settings(bus={"topic_prefix": f"wk{uuid.uuid4().hex[:6]}."}, auth={"admin_token": ADMIN_TOKEN},
                             http={"port": port, "ws_port": ws_port, "metrics_port": metrics_port})
    dbproc = Platform(settings.replace(http={"metrics_port": 0}), ("dbproc",), migrate_db=True)
    await dbproc.start()
    instance = f"wk-{uuid.uuid4().hex[:6]}"
    output = tmp_path / "server.log"
    process = _spawn(output, child_env(settings, CFD_INSTANCE_ID=instance, NO_COLOR="1"))
    running = Group(process, output, port=port, ws_port=ws_port, metrics_port=metrics_port, instance=instance)
    try:
        await running.wait_for_log("Ctrl-C stops everything")
        yield running
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(30)
            except subprocess.TimeoutExpired:
                process.kill()  # its workers stop when their pipe from it closes
        await dbproc.stop()


async def test_both_workers_answer_on_the_one_port_and_both_show_in_the_status(group):
    seen: set[str] = set()
    for _ in range(60):  # each on a fresh connection, as many clients would
        async with httpx.AsyncClient(timeout=10) as client:
            health = await client.get(f"http://127.0.0.1:{group.port}/health")
            metrics = await client.get(f"http://127.0.0.1:{group.port}/metrics", headers=OPERATOR)
        assert health.status_code == 200 and metrics.status_code == 200
        seen |= {s.labels["instance"] for s in _metrics(metrics.text)["cfd_ws_clients"]}  # whoever answered
    assert seen == set(group.instances)
    for number in (1, 2):
        answered = (await group.worker_metrics(number))["cfd_http_requests"]
        assert sum(s.value for s in answered if s.name == "cfd_http_requests_total") > 0  # both took requests
    processes = await _status_until(group, lambda found: set(group.instances) <= set(found))
    pids = {processes[i]["pid"] for i in group.instances}
    assert len(pids) == 2 and group.process.pid not in pids
    assert all(processes[i]["services"] == ["server"] for i in group.instances)


async def _on_account(ws_url: str, token: str) -> websockets.ClientConnection:
    ws = await websockets.connect(ws_url)
    await _frame(ws, "welcome")
    await ws.send(json.dumps({"op": "auth", "token": token}))
    await _frame(ws, "authenticated")
    await ws.send(json.dumps({"op": "subscribe", "channels": ["account"]}))
    await _frame(ws, "subscribed")
    return ws


async def _frame(ws, kind: str, check=lambda frame: True, timeout: float = 15) -> dict:
    async with asyncio.timeout(timeout):
        while True:
            frame = json.loads(await ws.recv())
            if frame["type"] == kind and check(frame):
                return frame


async def test_account_events_and_the_end_of_every_session_reach_connections_on_both_workers(group, mailbox):
    email = f"workers-{uuid.uuid4().hex[:8]}@example.com"
    async with httpx.AsyncClient(base_url=group.api, timeout=15) as api:
        token = (await sign_up(api, mailbox, email))["access_token"]
        user_id = (await api.get("/auth/me", headers={"Authorization": f"Bearer {token}"})).json()["user"]["id"]
        connections = []
        try:
            while min(await group.ws_clients()) < 2:  # the kernel picks the worker: connect until both have two
                assert len(connections) < 40, await group.ws_clients()
                connections.append(await _on_account(group.ws_url, token))
            deposit = await api.post(f"/admin/users/{user_id}/deposit", headers=OPERATOR, json={"amount": "7.25"})
            assert deposit.status_code == 200, deposit.text
            for ws in connections:
                await _frame(ws, "account",
                             lambda f: f["event"] == "snapshot" and f["account"]["balance"] == "10007.25")

            assert (await api.post("/auth/logout-all", headers={"Authorization": f"Bearer {token}"})).status_code == 204
            for ws in connections:
                assert (await _frame(ws, "error"))["code"] == "session_ended"
        finally:
            for ws in connections:
                await ws.close()


async def test_a_killed_worker_comes_back_and_sigterm_stops_them_all(group):
    processes = await _status_until(group, lambda found: set(group.instances) <= set(found))
    victim = processes[group.instances[1]]["pid"]
    survivor = processes[group.instances[0]]["pid"]
    os.kill(victim, signal.SIGKILL)
    await group.wait_for_log(f"API server worker 2 (pid {victim}) was killed by SIGKILL; starting it again")
    for _ in range(20):  # the other worker answers meanwhile
        async with httpx.AsyncClient(timeout=10) as client:
            assert (await client.get(f"http://127.0.0.1:{group.port}/health")).status_code == 200
    await group.wait_for_log("API server worker 2 is back")
    # (a worker that has just started lists the others once they next announce themselves, within 5 s)
    processes = await _status_until(group, lambda found: set(group.instances) <= set(found)
                                    and found[group.instances[1]]["pid"] != victim)
    back = processes[group.instances[1]]["pid"]
    assert back != victim and processes[group.instances[0]]["pid"] == survivor
    assert group.log().count("starting it again") == 1  # said once

    group.process.send_signal(signal.SIGTERM)
    assert await asyncio.to_thread(group.process.wait, 30) == 0
    for pid in (survivor, back):
        assert not _alive(pid)
    for port in (group.port, group.ws_port):  # both ports are free again
        with socket.socket() as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            probe.bind(("127.0.0.1", port))


async def test_cfd_up_runs_the_dbproc_and_poller_here_and_two_server_workers(make_settings, tmp_path):
    port, ws_port, metrics_port = free_port(), free_port(), _free_pair()
    settings = make_settings(bus={"topic_prefix": f"wu{uuid.uuid4().hex[:6]}."}, auth={"admin_token": ADMIN_TOKEN},
                             http={"port": port, "ws_port": ws_port, "metrics_port": 0})
    instance = f"wu-{uuid.uuid4().hex[:6]}"
    output = tmp_path / "up.log"
    process = _spawn(output, child_env(settings, CFD_INSTANCE_ID=instance, NO_COLOR="1"), "up")
    group = Group(process, output, port=port, ws_port=ws_port, metrics_port=metrics_port, instance=instance)
    try:
        await group.wait_for_log("Ctrl-C stops everything")
        assert "running: dbproc, poller, server ×2" in group.log()
        processes = await _status_until(group, lambda found: {instance, *group.instances} <= set(found))
        assert processes[instance]["services"] == ["dbproc", "poller"] and processes[instance]["partitions"]
        assert [processes[i]["services"] for i in group.instances] == [["server"], ["server"]]
        async with httpx.AsyncClient(timeout=10) as client:  # a dbproc answers the workers
            assert (await client.get(f"http://127.0.0.1:{port}/ready")).status_code == 200
    finally:
        process.send_signal(signal.SIGTERM)
        code = await asyncio.to_thread(process.wait, 60)
    assert code == 0, group.log()
