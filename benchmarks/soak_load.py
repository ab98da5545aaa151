"""The soak's parts, shared by `benchmarks/soak.py` and the test suite's short soak (`tests/soak/`): the
platform as `cfd up` in a process of its own, the REST traders and WebSocket clients that load it, and the
least-squares growth of a sampled measure.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import random
import signal
import socket
import sqlite3
import statistics
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
import websockets
from _support import Codes, create_postgres_database, drop_postgres_database, percentiles

TABLES = ("users", "positions", "ledger_entries", "processed_commands", "candles")
MARKETS_TRADED = (("DOGE_USDC", "100"), ("SOL_USDC", "0.1"))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# --- the platform under test -----------------------------------------------------------------------------


class PlatformProcess:
    """`cfd up` in a child process with an explicit environment (nothing inherited from ours but PATH)."""

    def __init__(self, real: bool, data_dir: Path, extra_env: dict[str, str] | None = None) -> None:
        self.real = real
        self.extra_env = extra_env or {}
        self.data_dir = data_dir
        self.http_port = free_port()
        self.ws_port = free_port()
        self.database_url: str | None = None
        self.process: asyncio.subprocess.Process | None = None
        self.log = data_dir / "platform.log"

    @property
    def api(self) -> str:
        return f"http://127.0.0.1:{self.http_port}/api/v1"

    @property
    def feed(self) -> str:
        return f"ws://127.0.0.1:{self.ws_port}/ws"

    async def start(self) -> None:
        env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": os.environ.get("HOME", "/tmp"),
               "CFD_ENV": "test", "CFD_DATA_DIR": str(self.data_dir), "CFD_HTTP_PORT": str(self.http_port),
               "CFD_WS_PORT": str(self.ws_port), "CFD_BCRYPT_ROUNDS": "4", "CFD_LOG_LEVEL": "warning"}
        if self.real:
            self.database_url = await create_postgres_database(os.environ["CFD_DATABASE_URL"], "cfd_soak")
            env |= {"CFD_KAFKA_BOOTSTRAP": os.environ["CFD_KAFKA_BOOTSTRAP"],
                    "CFD_REDIS_URL": os.environ["CFD_REDIS_URL"], "CFD_DATABASE_URL": self.database_url,
                    "CFD_TOPIC_PREFIX": f"soak{uuid.uuid4().hex[:6]}."}
        env |= self.extra_env
        self.process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "cfd_cli.main", "up", env=env, cwd=self.data_dir,
            stdout=self.log.open("wb"), stderr=asyncio.subprocess.STDOUT)
        async with httpx.AsyncClient(timeout=1) as client:
            for _ in range(600):
                if self.process.returncode is not None:
                    raise RuntimeError(f"the platform exited with {self.process.returncode}; see {self.log}")
                with contextlib.suppress(httpx.HTTPError):
                    if (await client.get(f"http://127.0.0.1:{self.http_port}/ready")).status_code == 200:
                        return
                await asyncio.sleep(0.1)
        raise RuntimeError(f"the platform did not become ready in 60 s; see {self.log}")

    async def stop(self) -> None:
        """Stop the platform; on the real backends, drop the database it was given."""
        if self.process is not None and self.process.returncode is None:
            self.process.send_signal(signal.SIGINT)
            try:
                await asyncio.wait_for(self.process.wait(), 20)
            except TimeoutError:
                self.process.kill()
                await self.process.wait()
        if self.database_url is not None:
            await drop_postgres_database(os.environ["CFD_DATABASE_URL"], self.database_url)
            self.database_url = None

    def sample_process(self) -> dict[str, float]:
        assert self.process is not None
        pid = self.process.pid
        status = Path(f"/proc/{pid}/status").read_text()
        fields = dict(line.split(":", 1) for line in status.splitlines() if ":" in line)
        return {"rss_mb": round(int(fields["VmRSS"].split()[0]) / 1024, 1),
                "fds": len(os.listdir(f"/proc/{pid}/fd")),
                "threads": int(fields["Threads"].strip())}

    async def sample_database(self) -> dict[str, Any]:
        if self.database_url is None:
            path = self.data_dir / "cfd.sqlite3"
            size = sum(p.stat().st_size for p in self.data_dir.glob("cfd.sqlite3*"))
            with contextlib.closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=5)) as db:
                rows = {t: db.execute(f"SELECT COUNT(*) FROM {t}").fetchone()[0] for t in TABLES}
            return {"db_mb": round(size / 2**20, 2), "rows": rows}
        import asyncpg

        conn = await asyncpg.connect(self.database_url)
        try:
            size = await conn.fetchval("SELECT pg_database_size(current_database())")
            rows = {t: await conn.fetchval(f"SELECT COUNT(*) FROM {t}") for t in TABLES}
        finally:
            await conn.close()
        return {"db_mb": round(size / 2**20, 2), "rows": rows}


# --- the load ---------------------------------------------------------------------------------------------


class Window:
    """REST latencies and outcomes since the last sample."""

    def __init__(self) -> None:
        self.latencies: list[float] = []
        self.statuses: dict[int, int] = {}

    def record(self, started: float, status: int) -> None:
        self.latencies.append(time.perf_counter() - started)
        self.statuses[status] = self.statuses.get(status, 0) + 1

    def take(self) -> dict[str, Any]:
        taken = {"requests": len(self.latencies), "statuses": dict(sorted(self.statuses.items()))}
        if self.latencies:
            p = percentiles(self.latencies)
            taken |= {"p50_ms": p["p50_ms"], "p99_ms": p["p99_ms"]}
        self.latencies, self.statuses = [], {}
        return taken


async def sign_up(api: httpx.AsyncClient, codes: Codes) -> tuple[dict[str, str], str]:
    email = f"soak-{uuid.uuid4().hex[:12]}@example.com"
    assert (await api.post("/auth/signup", json={"email": email})).status_code == 202
    answer = await api.post("/auth/verify", json={"email": email, "otp": await codes.code(email),
                                                  "password": f"soak {uuid.uuid4().hex}", "name": "Soak"})
    assert answer.status_code == 201, answer.text
    token = answer.json()["access_token"]
    return {"Authorization": f"Bearer {token}"}, token


async def trader(api: httpx.AsyncClient, headers: dict[str, str], window: Window, period: float,
                 stop: asyncio.Event) -> None:
    """Open, read the account and open positions, close: four requests per `period` seconds."""
    rng = random.Random()
    await asyncio.sleep(rng.uniform(0, period))
    while not stop.is_set():
        began = time.perf_counter()
        symbol, qty = rng.choice(MARKETS_TRADED)
        started = time.perf_counter()
        opened = await api.post("/positions", headers=headers,
                                json={"symbol": symbol, "side": rng.choice(("long", "short")), "qty": qty,
                                      "leverage": 2})
        window.record(started, opened.status_code)
        for path in ("/account", "/positions?status=open"):
            started = time.perf_counter()
            window.record(started, (await api.get(path, headers=headers)).status_code)
        if opened.status_code == 201:
            started = time.perf_counter()
            closed = await api.post(f"/positions/{opened.json()['id']}/close", headers=headers, json={})
            window.record(started, closed.status_code)
        await asyncio.sleep(max(0.0, period - (time.perf_counter() - began)))  # 0: at once, but yields


async def listener(url: str, first: list[str], frames: list[int], stop: asyncio.Event,
                   lifetime: float | None) -> None:
    """One WebSocket client: subscribes, reads everything; with a `lifetime`, reconnects after it."""
    while not stop.is_set():
        try:
            async with websockets.connect(url, max_queue=None, ping_interval=None) as ws:
                for op in first:
                    await ws.send(op)
                deadline = time.monotonic() + lifetime if lifetime else None
                while not stop.is_set():
                    timeout = None if deadline is None else max(0.01, deadline - time.monotonic())
                    try:
                        await asyncio.wait_for(ws.recv(), timeout=timeout if timeout is not None else 1.0)
                        frames[0] += 1
                    except TimeoutError:
                        if deadline is not None and time.monotonic() >= deadline:
                            break
        except (OSError, websockets.WebSocketException):
            await asyncio.sleep(0.5)


# --- the run ----------------------------------------------------------------------------------------------


def start_load(platform: PlatformProcess, api: httpx.AsyncClient, accounts: list[tuple[dict[str, str], str]],
               window: Window, frames: list[int], stop: asyncio.Event, *, rps: float | None, clients: int,
               churn: float) -> list[asyncio.Task]:
    """Start the load until `stop`: one REST trader per account (all together about `rps` requests per second,
    or each as fast as it can with `rps` None), each with an `account` subscription, and `clients` WebSocket
    clients on `prices.*`, `churn` of which reconnect each second on average."""
    tasks: list[asyncio.Task] = []
    period = 4 * len(accounts) / rps if rps else 0.0  # four requests per cycle
    for headers, token in accounts:
        tasks.append(asyncio.ensure_future(trader(api, headers, window, period, stop)))
        auth = [json.dumps({"op": "auth", "token": token}), json.dumps({"op": "subscribe", "channels": ["account"]})]
        tasks.append(asyncio.ensure_future(listener(platform.feed, auth, frames, stop, None)))
    subscribe = [json.dumps({"op": "subscribe", "channels": ["prices.*"]})]
    for _ in range(clients):
        # `churn` clients reconnect each second on average: each lives clients / churn seconds
        lifetime = clients / churn * random.uniform(0.5, 1.5) if churn else None
        tasks.append(asyncio.ensure_future(listener(platform.feed, subscribe, frames, stop, lifetime)))
    return tasks


def slope(points: list[tuple[float, float]]) -> float:
    """Least-squares slope of (x, y) points."""
    return statistics.linear_regression([p[0] for p in points], [p[1] for p in points]).slope


def growth_per_hour(samples: list[dict[str, Any]], key: str, after_s: float) -> float | None:
    """Least-squares slope of `key` against time (per hour), over the samples after the warm-up."""
    points = [(s["t_s"], s[key]) for s in samples if s["phase"] == "load" and s["t_s"] >= after_s]
    if len(points) < 3:
        return None
    return round(slope(points) * 3600, 2)
