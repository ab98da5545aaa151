"""Soak: the platform under steady REST, WebSocket and churn load for a chosen time, sampled as it runs.

    .venv/bin/python benchmarks/soak.py --minutes 30                  # embedded backends
    eval "$(scripts/services.sh env)"; .venv/bin/python benchmarks/soak.py --real --minutes 30

The platform runs as `cfd up` in a process of its own (its memory is what is measured), on a fresh data
directory (embedded) or a fresh PostgreSQL database and topic prefix (real). The load, from this process:
- REST traders, each opening a position, reading its account and open positions, and closing it, paced so
  that all of them together make about `--rps` requests per second;
- WebSocket clients on `prices.*`, of which `--churn` per second disconnect and connect again;
- each trader also keeps an `account` subscription open.

Every `--sample` seconds it records the platform process's RSS, open file descriptors and threads, the
database's size and row counts, and the REST latency (p50/p99) and request count of the window. After the
load it keeps sampling for `--cooldown` seconds, to see whether memory comes back. Writes
`benchmarks/results/soak-<backends>.json` with the samples and the growth per hour (least squares over the
samples after the warm-up).
"""

from __future__ import annotations

import argparse
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
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
import websockets
from _support import RESULTS, Codes, percentiles
from rich.console import Console
from rich.table import Table

console = Console()
ROOT = Path(__file__).resolve().parent.parent
TABLES = ("users", "positions", "ledger_entries", "processed_commands", "candles")
MARKETS_TRADED = (("DOGE_USDC", "100"), ("SOL_USDC", "0.1"))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# --- the platform under test -----------------------------------------------------------------------------


class PlatformProcess:
    """`cfd up` in a child process with an explicit environment (nothing inherited from ours but PATH)."""

    def __init__(self, real: bool, data_dir: Path) -> None:
        self.real = real
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
            self.database_url = await _fresh_postgres_database(os.environ["CFD_DATABASE_URL"])
            env |= {"CFD_KAFKA_BOOTSTRAP": os.environ["CFD_KAFKA_BOOTSTRAP"],
                    "CFD_REDIS_URL": os.environ["CFD_REDIS_URL"], "CFD_DATABASE_URL": self.database_url,
                    "CFD_TOPIC_PREFIX": f"soak{uuid.uuid4().hex[:6]}."}
        self.process = await asyncio.create_subprocess_exec(
            str(ROOT / ".venv" / "bin" / "cfd"), "up", env=env, cwd=self.data_dir,
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
        if self.process is not None and self.process.returncode is None:
            self.process.send_signal(signal.SIGINT)
            try:
                await asyncio.wait_for(self.process.wait(), 20)
            except TimeoutError:
                self.process.kill()
                await self.process.wait()

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


async def _fresh_postgres_database(base_url: str) -> str:
    from urllib.parse import urlsplit, urlunsplit

    import asyncpg

    name = f"cfd_soak_{uuid.uuid4().hex[:8]}"
    conn = await asyncpg.connect(base_url)
    try:
        await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()
    return urlunsplit(urlsplit(base_url)._replace(path=f"/{name}"))


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
        await asyncio.sleep(max(0.0, period - (time.perf_counter() - began)))


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


def growth_per_hour(samples: list[dict[str, Any]], key: str, after_s: float) -> float | None:
    """Least-squares slope of `key` against time (per hour), over the samples after the warm-up."""
    points = [(s["t_s"], s[key]) for s in samples if s["phase"] == "load" and s["t_s"] >= after_s]
    if len(points) < 3:
        return None
    return round(statistics.linear_regression([p[0] for p in points], [p[1] for p in points]).slope * 3600, 2)


async def soak(args: argparse.Namespace) -> dict[str, Any]:
    data_dir = Path(tempfile.mkdtemp(prefix="cfd-soak-"))
    platform = PlatformProcess(args.real, data_dir)
    await platform.start()
    codes = Codes(outbox=data_dir / "outbox")
    stop = asyncio.Event()
    window = Window()
    frames = [0]
    tasks: list[asyncio.Task] = []
    samples: list[dict[str, Any]] = []
    started = time.monotonic()

    async def sample(phase: str) -> None:
        row = {"t_s": round(time.monotonic() - started, 1), "phase": phase, **platform.sample_process(),
               **await platform.sample_database(), **window.take(), "ws_frames": frames[0]}
        frames[0] = 0
        samples.append(row)
        console.print(f"[dim]{row['t_s']:>7.0f} s[/] {phase:<8} rss {row['rss_mb']:>7.1f} MB  fds {row['fds']:>4}  "
                      f"thr {row['threads']:>3}  db {row['db_mb']:>7.2f} MB  "
                      f"req {row['requests']:>6}  p99 {row.get('p99_ms', 0):>7.1f} ms  "
                      f"rows {sum(row['rows'].values()):>8}", soft_wrap=True)

    limits = httpx.Limits(max_connections=args.traders + 8)
    try:
        async with httpx.AsyncClient(base_url=platform.api, timeout=30, limits=limits) as api:
            await sample("baseline")
            with console.status(f"signing up {args.traders} traders …"):
                accounts = [await sign_up(api, codes) for _ in range(args.traders)]
            period = 4 * args.traders / args.rps  # four requests per cycle
            for headers, token in accounts:
                tasks.append(asyncio.ensure_future(trader(api, headers, window, period, stop)))
                auth = [json.dumps({"op": "auth", "token": token}),
                        json.dumps({"op": "subscribe", "channels": ["account"]})]
                tasks.append(asyncio.ensure_future(listener(platform.feed, auth, frames, stop, None)))
            subscribe = [json.dumps({"op": "subscribe", "channels": ["prices.*"]})]
            for _ in range(args.clients):
                # `churn` clients reconnect each second on average: each lives clients / churn seconds
                lifetime = args.clients / args.churn * random.uniform(0.5, 1.5) if args.churn else None
                tasks.append(asyncio.ensure_future(listener(platform.feed, subscribe, frames, stop, lifetime)))
            load_until = time.monotonic() + args.minutes * 60
            while time.monotonic() < load_until:
                await asyncio.sleep(min(args.sample, max(0.0, load_until - time.monotonic())))
                await sample("load")
            stop.set()
            await asyncio.gather(*tasks, return_exceptions=True)
            cool_until = time.monotonic() + args.cooldown
            while time.monotonic() < cool_until:
                await asyncio.sleep(min(args.sample, max(0.0, cool_until - time.monotonic())))
                await sample("cooldown")
    finally:
        stop.set()
        for task in tasks:
            task.cancel()
        await platform.stop()

    warm_up = args.warm_up * 60
    load = [s for s in samples if s["phase"] == "load"]
    return {
        "backends": "real" if args.real else "embedded",
        "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "cpus": os.cpu_count(),
        "load_average_at_start": os.getloadavg(),
        "load": {"minutes": args.minutes, "traders": args.traders, "target_rps": args.rps,
                 "ws_clients": args.clients, "churn_per_s": args.churn},
        "results": {
            "rss_mb_baseline": samples[0]["rss_mb"],
            "rss_mb_after_warm_up": next((s["rss_mb"] for s in load if s["t_s"] >= warm_up), None),
            "rss_mb_end_of_load": load[-1]["rss_mb"] if load else None,
            "rss_mb_after_cooldown": samples[-1]["rss_mb"],
            "rss_mb_growth_per_hour": growth_per_hour(samples, "rss_mb", warm_up),
            "fds_growth_per_hour": growth_per_hour(samples, "fds", warm_up),
            "db_mb_growth_per_hour": growth_per_hour(samples, "db_mb", warm_up),
            "requests_per_s": round(sum(s["requests"] for s in load) / max(1.0, load[-1]["t_s"] - samples[0]["t_s"]),
                                    1) if load else 0,
            "row_growth_per_hour": {
                t: round(statistics.linear_regression([s["t_s"] for s in load], [s["rows"][t] for s in load]).slope
                         * 3600) for t in TABLES} if len(load) >= 3 else {},
        },
        "samples": samples,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--real", action="store_true", help="Kafka, Redis, PostgreSQL (from CFD_* variables)")
    parser.add_argument("--minutes", type=float, default=30, help="how long the load runs (default 30)")
    parser.add_argument("--warm-up", type=float, default=3, help="minutes left out of the growth fit (default 3)")
    parser.add_argument("--cooldown", type=float, default=120, help="seconds sampled after the load (default 120)")
    parser.add_argument("--sample", type=float, default=30, help="seconds between samples (default 30)")
    parser.add_argument("--traders", type=int, default=20, help="REST traders (default 20)")
    parser.add_argument("--rps", type=float, default=27, help="REST requests per second, all traders (default 27)")
    parser.add_argument("--clients", type=int, default=300, help="WebSocket clients on prices.* (default 300)")
    parser.add_argument("--churn", type=float, default=2, help="WebSocket reconnects per second (default 2)")
    parser.add_argument("--out", type=Path, help="results file (default benchmarks/results/soak-<backends>.json)")
    args = parser.parse_args()
    if args.real and not all(os.environ.get(v) for v in ("CFD_KAFKA_BOOTSTRAP", "CFD_REDIS_URL", "CFD_DATABASE_URL")):
        sys.exit("--real needs CFD_KAFKA_BOOTSTRAP, CFD_REDIS_URL and CFD_DATABASE_URL: "
                 'eval "$(scripts/services.sh env)"')
    report = asyncio.run(soak(args))
    RESULTS.mkdir(exist_ok=True)
    out = args.out or RESULTS / f"soak-{report['backends']}.json"
    out.write_text(json.dumps(report, indent=2) + "\n")
    r = report["results"]
    table = Table(title=f"soak, {report['backends']} backends, {args.minutes:g} min")
    table.add_column("measure")
    table.add_column("value", justify="right")
    for key, value in r.items():
        table.add_row(key.replace("_", " "), str(value))
    console.print(table)
    console.print(f"written to {out}")


if __name__ == "__main__":
    main()
