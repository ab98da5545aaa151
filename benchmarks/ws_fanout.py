"""Benchmark the WebSocket fan-out: tick-to-client latency, sustained deliveries per second, memory per client.

    python benchmarks/ws_fanout.py                       # 1, 100, 1,000 and 10,000 clients on the memory bus
    python benchmarks/ws_fanout.py --clients 1,100 --quick --out /tmp/ws.json
    python benchmarks/ws_fanout.py --pin                 # server on the first CPU, clients on the others
    CFD_KAFKA_BOOTSTRAP=127.0.0.1:9092 python benchmarks/ws_fanout.py   # the same on Kafka as well
    python benchmarks/ws_fanout.py --clients 1000 --throughput-clients 0 --floor --out /tmp/floor.json

The server (bus → quote book → hub → `websockets` server) runs in this process, exactly as `cfd server` wires
it (`start_market`). The clients run in other processes. By default they are `benchmarks/wsload`, a Go load
generator built at start-up (like wrk for HTTP: one process, epoll, one read per message); without Go they
are minimal raw asyncio WebSocket clients in Python worker processes. Both timestamp every `price` frame with
the same clock (`time.time_ns()`), once per read. The results record which kind ran (`client_kind`).

- latency: ticks are published at a steady rate; a tick's `ts` carries its sequence number, so every client
  frame is matched to the instant its tick was published: p50/p99 from publish to a client's receive, and
  per tick the latency of its last delivery (the median over ticks: how long one fan-out takes).
- sustained deliveries/s: 1,000 clients, the tick rate doubled step by step while every client still
  receives every frame (no conflation) with p99 under 100 ms; the last such step is the result.
- server CPU per delivery: the server process's CPU time over the deliveries it made; clients' CPU the same
  for the client processes (on loopback both pay the kernel's TCP path).
- memory per connection: the server's RSS growth over the connected, subscribed clients (first backend only:
  memory freed by one run is kept by the allocator and reused by the next).
- floor (`--floor`): the latency phase at 1,000 clients against `benchmarks/wsfloor` instead, a Go server that
  does nothing per tick but one write system call per client of one prebuilt frame, from one thread and then
  from two: what any server can do on this machine.

Writes `benchmarks/results/ws_fanout.json` (or `--out`) and prints a table. Each run is bounded (a few seconds
a phase).
"""

from __future__ import annotations

import argparse
import array
import asyncio
import atexit
import base64
import gc
import json
import logging
import multiprocessing as mp
import os
import platform
import re
import resource
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from decimal import Decimal
from multiprocessing.connection import Connection
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from rich.console import Console  # noqa: E402
from rich.table import Table  # noqa: E402

from cfd_server.context import ServerContext  # noqa: E402
from cfd_server.market import MarketRuntime, start_market  # noqa: E402
from cfd_server.ws import Limits  # noqa: E402
from shared.bus import Bus, Topics  # noqa: E402
from shared.bus.memory import MemoryBus  # noqa: E402
from shared.bus.rpc import RequestClient  # noqa: E402
from shared.cache.memory import MemoryCache  # noqa: E402
from shared.contracts import encode  # noqa: E402
from shared.contracts.bus import PriceTick  # noqa: E402
from shared.settings import Settings, load_settings  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results" / "ws_fanout.json"
WSLOAD = ROOT / "benchmarks" / "wsload"
WSFLOOR = ROOT / "benchmarks" / "wsfloor"
FLOOR_CLIENTS = 1000
SYMBOL = "SOL_USDC"
CONNECT_BATCH = 250
console = Console(width=120)


# --- the client side (runs in worker processes) -------------------------------------------------------------

_TS = re.compile(rb'"ts":(\d+)}')


class FeedClient(asyncio.Protocol):
    """A minimal WebSocket client: handshake, one subscribe, then timestamps of every `price` frame."""

    def __init__(self, port: int, channel: str, sink: Sink) -> None:
        self.port = port
        self.channel = channel
        self.sink = sink
        self.transport: asyncio.Transport | None = None
        self.handshaken = False
        self.subscribed = False
        self.tail = b""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        key = base64.b64encode(os.urandom(16)).decode()
        self.transport.write(  # type: ignore[union-attr]
            f"GET /ws HTTP/1.1\r\nHost: 127.0.0.1:{self.port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n".encode())

    def data_received(self, data: bytes) -> None:
        now = time.time_ns()
        if not self.handshaken:
            self.tail += data
            end = self.tail.find(b"\r\n\r\n")
            if end < 0:
                return
            if b" 101 " not in self.tail[:end]:
                raise RuntimeError(self.tail[:end].decode(errors="replace"))
            self.handshaken = True
            data, self.tail = self.tail[end + 4:], b""
            self.transport.write(masked_text(json.dumps(  # type: ignore[union-attr]
                {"op": "subscribe", "channels": [self.channel]}).encode()))
        buf = self.tail + data
        if not self.subscribed and b'"type":"subscribed"' in buf:
            self.subscribed = True
            self.sink.ready += 1
        last = 0
        for match in _TS.finditer(buf):
            self.sink.seqs.append(int(match.group(1)))
            self.sink.times.append(now)
            last = match.end()
        rest = buf[last:]
        self.tail = rest[-64:] if len(rest) > 64 else rest


class Sink:
    """What one worker's clients received: (tick ts, receive time in ns) pairs."""

    def __init__(self) -> None:
        self.ready = 0
        self.seqs = array.array("q")
        self.times = array.array("q")


def masked_text(payload: bytes) -> bytes:
    mask = os.urandom(4)
    body = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
    assert len(payload) < 126
    return bytes([0x81, 0x80 | len(payload)]) + mask + body


def worker_main(port: int, count: int, channel: str, pipe: Connection, cpus: set[int] | None) -> None:
    if cpus:
        os.sched_setaffinity(0, cpus)
    raise_fd_limit()
    asyncio.run(_worker(port, count, channel, pipe))


async def _worker(port: int, count: int, channel: str, pipe: Connection) -> None:
    loop = asyncio.get_running_loop()
    sink = Sink()
    transports = []
    for start in range(0, count, CONNECT_BATCH):
        batch = min(CONNECT_BATCH, count - start)
        made = await asyncio.gather(*(loop.create_connection(lambda: FeedClient(port, channel, sink), "127.0.0.1",
                                                             port) for _ in range(batch)))
        transports.extend(t for t, _ in made)
    await until(lambda: sink.ready >= count, 60)
    pipe.send(("ready", count))
    while True:
        command = await asyncio.to_thread(pipe.recv)
        if command == "collect":
            await asyncio.sleep(0)
            pipe.send((sink.seqs.tobytes(), sink.times.tobytes()))
            sink.seqs, sink.times = array.array("q"), array.array("q")
        elif command == "quit":
            for transport in transports:
                transport.close()
            await asyncio.sleep(0.05)
            pipe.send("bye")
            return


async def until(condition, timeout: float) -> None:
    """Wait (polling) until `condition()` holds; `TimeoutError` after `timeout` seconds."""
    for _ in range(int(timeout / 0.01)):
        if condition():
            return
        await asyncio.sleep(0.01)
    raise TimeoutError(f"still waiting after {timeout:g} s")


class PythonClients:
    """A worker process of `FeedClient`s, driven over a pipe."""

    def __init__(self, port: int, count: int, channel: str, cpus: set[int] | None) -> None:
        self.pipe, theirs = mp.get_context("spawn").Pipe()
        self.process = mp.get_context("spawn").Process(target=worker_main, args=(port, count, channel, theirs, cpus),
                                                       daemon=True)
        self.process.start()

    def cpu_seconds(self) -> float:
        return process_cpu_seconds(self.process.pid)  # type: ignore[arg-type]

    async def ready(self) -> None:
        message = await asyncio.wait_for(asyncio.to_thread(self.pipe.recv), 120)
        assert message[0] == "ready", message

    async def collect(self) -> tuple[array.array, array.array]:
        """(tick ts, receive time in ns) of every price frame received since the last collect."""
        self.pipe.send("collect")
        raw_seqs, raw_times = await asyncio.wait_for(asyncio.to_thread(self.pipe.recv), 60)
        seqs, times = array.array("q"), array.array("q")
        seqs.frombytes(raw_seqs)
        times.frombytes(raw_times)
        return seqs, times

    async def stop(self) -> None:
        self.pipe.send("quit")
        await asyncio.wait_for(asyncio.to_thread(self.pipe.recv), 30)
        self.process.join(10)


class GoClients:
    """The Go load generator (`benchmarks/wsload`): all clients in one process, driven over stdin/stdout."""

    def __init__(self, process: asyncio.subprocess.Process) -> None:
        self.process = process

    @classmethod
    async def start(cls, binary: Path, port: int, count: int, channel: str, cpus: set[int] | None,
                    spin_us: int) -> GoClients:
        process = await asyncio.create_subprocess_exec(
            str(binary), "-addr", f"127.0.0.1:{port}", "-n", str(count), "-channel", channel,
            "-spin", f"{spin_us}us",
            stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
            preexec_fn=(lambda: os.sched_setaffinity(0, cpus)) if cpus else None)
        line = await asyncio.wait_for(process.stdout.readline(), 120)  # type: ignore[union-attr]
        if not line.startswith(b"ready"):
            await process.wait()
            raise RuntimeError(f"wsload did not start (exit code {process.returncode})")
        return cls(process)

    def cpu_seconds(self) -> float:
        return process_cpu_seconds(self.process.pid)

    async def _command(self, command: bytes) -> bytes:
        self.process.stdin.write(command + b"\n")  # type: ignore[union-attr]
        await self.process.stdin.drain()  # type: ignore[union-attr]
        return await asyncio.wait_for(self.process.stdout.readline(), 60)  # type: ignore[union-attr]

    async def collect(self) -> tuple[array.array, array.array]:
        """(tick ts, receive time in ns) of every price frame received since the last collect."""
        count = int((await self._command(b"collect")).split()[1])
        pairs = array.array("q")
        pairs.frombytes(await self.process.stdout.readexactly(count * 16))  # type: ignore[union-attr]
        if sys.byteorder != "little":
            pairs.byteswap()
        return pairs[0::2], pairs[1::2]

    async def stop(self) -> None:
        await self._command(b"quit")
        await asyncio.wait_for(self.process.wait(), 30)


def build_go(package: Path = WSLOAD) -> Path | None:
    """Build a Go program (the load generator) into a temporary directory; None when Go is missing or it fails."""
    go = shutil.which("go") or next((p for p in ("/usr/local/go/bin/go",) if os.access(p, os.X_OK)), None)
    if go is None:
        return None
    target = Path(tempfile.mkdtemp(prefix=f"cfd-{package.name}-")) / package.name  # one per run: runs may overlap
    atexit.register(shutil.rmtree, target.parent, ignore_errors=True)
    built = subprocess.run([go, "build", "-o", str(target), "."], cwd=package, capture_output=True, text=True)
    if built.returncode != 0:
        console.print(f"[yellow]could not build {package.relative_to(ROOT)}:[/] {built.stderr.strip()}")
        return None
    return target


async def start_clients(wsload: Path | None, port: int, count: int, processes: int, cpus: set[int] | None,
                        spin_us: int) -> list[PythonClients | GoClients]:
    """`count` subscribed clients: one wsload process, or `processes` Python worker processes without it."""
    channel = f"prices.{SYMBOL}"
    if wsload is not None:
        return [await GoClients.start(wsload, port, count, channel, cpus, spin_us)]
    shares = [count // processes + (1 if i < count % processes else 0) for i in range(processes)]
    started = [PythonClients(port, share, channel, cpus) for share in shares if share]
    for workers in started:
        await workers.ready()
    return started


async def match_latencies(workers: list[PythonClients | GoClients],
                          published: dict[int, int]) -> tuple[list[float], list[float]]:
    """Latencies (ms) of the frames received since the last collect, and per tick its last delivery's.

    Only frames whose ts is in `published` (ts -> publish time in ns) count.
    """
    latencies: list[float] = []
    spans: dict[int, float] = {}
    for each in workers:
        seqs, times = await each.collect()
        for seq, received_ns in zip(seqs, times, strict=True):
            if seq in published:
                latency = (received_ns - published[seq]) / 1e6
                latencies.append(latency)
                if latency > spans.get(seq, 0.0):
                    spans[seq] = latency
    return latencies, list(spans.values())


# --- the server side (this process) --------------------------------------------------------------------------


def raise_fd_limit() -> int:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def process_cpu_seconds(pid: int) -> float:
    """User + system CPU time of another process (Linux; 0 elsewhere)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except OSError:
        return 0.0


def rss_bytes() -> int:
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except OSError:  # not Linux: the peak is the best there is
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


class Server:
    """The market runtime on a bus, plus the clients' worker processes."""

    def __init__(self, bus: Bus, settings: Settings, runtime: MarketRuntime, rpc: RequestClient) -> None:
        self.bus = bus
        self.settings = settings
        self.runtime = runtime
        self.rpc = rpc
        self.topic = Topics(settings.bus).prices
        self.wsload: Path | None = None  # the Go load generator; None: Python clients
        self.client_cpus: set[int] | None = None  # the CPUs the clients are pinned to; None: not pinned
        self.client_spin_us = 0
        self.workers: list[PythonClients | GoClients] = []
        self.base_ms = time.time_ns() // 1_000_000 - 86_400_000  # a day ago: each tick's ts is base + seq
        self.seq = 0
        self.published: dict[int, int] = {}  # ts -> publish time in ns
        self.last_spans: list[float] = []

    @classmethod
    async def start(cls, bus: Bus, settings: Settings) -> Server:
        topics = Topics(settings.bus)
        await bus.start()
        await bus.ensure_topics(topics.all())
        rpc = RequestClient(bus, topics.routes(), topics.replies, settings.instance_id, 5.0)
        await rpc.start()
        ctx = ServerContext(settings=settings, bus=bus, cache=MemoryCache(), mailer=None, rpc=rpc,  # type: ignore[arg-type]
                            mail=None, topics=topics)  # type: ignore[arg-type]
        limits = Limits(max_connections=50_000, ping_interval=None, ping_timeout=None)
        return cls(bus, settings, await start_market(ctx, limits=limits), rpc)

    async def stop(self) -> None:
        await self.disconnect()
        await self.runtime.stop()
        await self.rpc.stop()
        await self.bus.stop()

    async def connect(self, count: int, processes: int) -> None:
        """Start `count` clients (in `processes` worker processes for the Python kind) and wait until subscribed."""
        self.workers.extend(await start_clients(self.wsload, self.runtime.ws_port, count, processes, self.client_cpus,
                                                self.client_spin_us))
        await until(lambda: len(self.runtime.hub.clients) >= count, 60)

    async def disconnect(self) -> None:
        for workers in self.workers:
            await workers.stop()
        self.workers.clear()
        await until(lambda: not self.runtime.hub.clients, 30)

    def clients_cpu(self) -> float:
        """CPU seconds the client processes used so far."""
        return sum(workers.cpu_seconds() for workers in self.workers)

    async def publish(self, rate: float, seconds: float) -> int:
        """Publish ticks at `rate` per second for `seconds`; returns how many."""
        interval = 1.0 / rate
        count = max(1, int(rate * seconds))
        loop = asyncio.get_running_loop()
        start = loop.time()
        for i in range(count):
            self.seq += 1
            ts = self.base_ms + self.seq
            price = Decimal(185) + Decimal(self.seq % 1000) / 100
            tick = PriceTick(symbol=SYMBOL, bid=price, ask=price + Decimal("0.02"), exchange_time_us=ts * 1000,
                             ingest_time_us=ts * 1000)
            value = encode(tick)
            self.published[ts] = time.time_ns()
            await self.bus.publish(self.topic, value, key=SYMBOL.encode(), wait=False)
            delay = start + (i + 1) * interval - loop.time()
            await asyncio.sleep(max(0.0, delay))
        return count

    async def collect(self) -> tuple[list[float], int]:
        """Latencies (ms) of every frame the clients received since the last collect, and their count.

        Also keeps `last_spans`: per tick, the latency of its last delivery (how long the fan-out took).
        """
        await asyncio.sleep(0.3)  # the last ticks' frames arrive
        # frames of other phases (a new subscriber's snapshot) do not count
        latencies, self.last_spans = await match_latencies(self.workers, self.published)
        self.published.clear()
        return latencies, len(latencies)


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def latency_run(server: Server, clients: int, ticks: int, rate: float, processes: int,
                      measure_memory: bool) -> dict:
    rss_before = rss_bytes()
    connect_started = time.perf_counter()
    await server.connect(clients, processes)
    connect_seconds = time.perf_counter() - connect_started
    gc.collect()
    rss_after = rss_bytes()
    await server.publish(rate, 0.5)  # warm up
    await server.collect()
    stats = server.runtime.hub.stats
    deliveries_before, cpu_before, clients_cpu_before = stats.deliveries, time.process_time(), server.clients_cpu()
    published = await server.publish(rate, ticks / rate)
    cpu = time.process_time() - cpu_before
    clients_cpu = server.clients_cpu() - clients_cpu_before
    deliveries = stats.deliveries - deliveries_before
    latencies, received = await server.collect()
    await server.disconnect()
    return {
        "clients": clients,
        "ticks": published,
        "tick_rate": rate,
        "deliveries": deliveries,
        "received": received,
        "received_ratio": round(received / max(1, published * clients), 4),
        "latency_ms_p50": round(percentile(latencies, 0.50), 3),
        "latency_ms_p99": round(percentile(latencies, 0.99), 3),
        "latency_ms_max": round(max(latencies), 3) if latencies else None,
        "last_delivery_ms_p50": round(percentile(server.last_spans, 0.50), 3),
        "server_cpu_us_per_delivery": round(cpu / max(1, deliveries) * 1e6, 2),
        "client_cpu_us_per_delivery": round(clients_cpu / max(1, deliveries) * 1e6, 2),
        "rss_per_connection_kib": round((rss_after - rss_before) / clients / 1024, 1)
        if measure_memory and clients >= 100 else None,
        "connect_seconds": round(connect_seconds, 2),
    }


async def throughput_run(server: Server, clients: int, rates: list[float], seconds: float, processes: int) -> dict:
    """Double the tick rate until clients stop getting every frame in time; the last good step wins."""
    await server.connect(clients, processes)
    steps = []
    best = None
    stats = server.runtime.hub.stats
    for rate in rates:
        deliveries_before, cpu_before, started = stats.deliveries, time.process_time(), time.perf_counter()
        clients_cpu_before = server.clients_cpu()
        published = await server.publish(rate, seconds)
        elapsed = time.perf_counter() - started
        cpu = time.process_time() - cpu_before
        clients_cpu = server.clients_cpu() - clients_cpu_before
        latencies, received = await server.collect()
        expected = published * clients
        step = {
            "tick_rate": rate,
            "achieved_tick_rate": round(published / elapsed, 1),
            "deliveries_per_second": round(received / elapsed),
            "received_ratio": round(received / expected, 4),
            "latency_ms_p50": round(percentile(latencies, 0.5), 2),
            "latency_ms_p99": round(percentile(latencies, 0.99), 2),
            "server_cpu_share": round(cpu / elapsed, 2),
            "server_cpu_us_per_delivery": round(cpu / max(1, stats.deliveries - deliveries_before) * 1e6, 2),
            "client_cpu_share": round(clients_cpu / elapsed, 2),
        }
        steps.append(step)
        console.print(f"  {clients} clients × {rate:g} ticks/s: {step}")
        if step["received_ratio"] < 0.999 or step["latency_ms_p99"] >= 100:
            break
        if best is None or step["deliveries_per_second"] > best["deliveries_per_second"]:
            best = step
        if elapsed > seconds * 1.25:
            break  # the publisher could not keep the rate: the server is saturated
    await server.disconnect()
    return {"clients": clients, "steps": steps,
            "sustained_deliveries_per_second": best["deliveries_per_second"] if best else 0}


async def run_backend(name: str, make_bus, args, measure_memory: bool) -> dict:
    settings = load_settings(env="test", http={"host": "127.0.0.1", "ws_port": 0},
                             bus={"topic_prefix": f"bench-{uuid.uuid4().hex[:8]}-"})
    server = await Server.start(make_bus(settings), settings)
    server.wsload, server.client_cpus, server.client_spin_us = args.wsload, args.client_cpus, args.spin_us
    results: dict = {"backend": name, "latency": [], "throughput": None}
    try:
        for clients in args.clients:
            processes = 1 if clients < 2000 else args.processes  # Go: always one process
            rate = args.rate if clients < 5000 else args.rate / 4
            console.print(f"[bold]{name}[/]: {clients} clients, {args.ticks} ticks at {rate:g}/s ...")
            run = await latency_run(server, clients, args.ticks, rate, processes, measure_memory)
            console.print(f"  {run}")
            results["latency"].append(run)
        if args.throughput_clients:
            console.print(f"[bold]{name}[/]: sustained deliveries at {args.throughput_clients} clients ...")
            results["throughput"] = await throughput_run(server, args.throughput_clients, args.steps, args.step_seconds,
                                                         1)
    finally:
        await server.stop()
    return results


class FloorServer:
    """`benchmarks/wsfloor`, the cheapest possible fan-out, driven over stdin/stdout."""

    def __init__(self, process: asyncio.subprocess.Process, port: int) -> None:
        self.process = process
        self.port = port
        self.seq = 0
        self.base_ms = time.time_ns() // 1_000_000 - 86_400_000

    @classmethod
    async def start(cls, binary: Path) -> FloorServer:
        process = await asyncio.create_subprocess_exec(str(binary), stdin=asyncio.subprocess.PIPE,
                                                       stdout=asyncio.subprocess.PIPE)
        line = await asyncio.wait_for(process.stdout.readline(), 30)  # type: ignore[union-attr]
        if not line.startswith(b"listening"):
            await process.wait()
            raise RuntimeError(f"wsfloor did not start (exit code {process.returncode})")
        return cls(process, int(line.split()[1]))

    def cpu_seconds(self) -> float:
        return process_cpu_seconds(self.process.pid)

    async def publish(self, rate: float, seconds: float, writers: int) -> tuple[dict[int, int], list[float], int]:
        """Publish ticks for `seconds`: (ts -> publish time in ns, per tick the ms its writes took, writes done)."""
        count = max(1, int(rate * seconds))
        self.process.stdin.write(  # type: ignore[union-attr]
            f"run {rate:g} {count} {self.base_ms + self.seq + 1} {writers}\n".encode())
        self.seq += count
        done = (await asyncio.wait_for(self.process.stdout.readline(), seconds + 60)).split()  # type: ignore[union-attr]
        published, write_ms = {}, []
        for _ in range(int(done[1])):
            ts, began, ended = map(int, (await self.process.stdout.readline()).split())  # type: ignore[union-attr]
            published[ts] = began
            write_ms.append((ended - began) / 1e6)
        return published, write_ms, int(done[2])

    async def stop(self) -> None:
        self.process.stdin.write(b"quit\n")  # type: ignore[union-attr]
        await asyncio.wait_for(self.process.wait(), 30)


async def floor_runs(args, binary: Path) -> list[dict]:
    """The latency phase at 1,000 clients against wsfloor: one writer thread, then two (one per core here)."""
    server = await FloorServer.start(binary)
    workers = await start_clients(args.wsload, server.port, FLOOR_CLIENTS, 1, args.client_cpus, args.spin_us)
    runs = []
    try:
        await server.publish(args.rate, 0.5, 1)  # warm up
        await asyncio.sleep(0.3)
        await match_latencies(workers, {})
        for writers in (1, 2):
            console.print(f"[bold]floor[/]: {FLOOR_CLIENTS} clients, {args.ticks} ticks at {args.rate:g}/s, "
                          f"{writers} writer thread(s) ...")
            cpu_before, clients_cpu_before = server.cpu_seconds(), sum(w.cpu_seconds() for w in workers)
            published, write_ms, deliveries = await server.publish(args.rate, args.ticks / args.rate, writers)
            cpu = server.cpu_seconds() - cpu_before
            clients_cpu = sum(w.cpu_seconds() for w in workers) - clients_cpu_before
            await asyncio.sleep(0.3)  # the last ticks' frames arrive
            latencies, spans = await match_latencies(workers, published)
            run = {
                "clients": FLOOR_CLIENTS,
                "writers": writers,
                "ticks": len(published),
                "tick_rate": args.rate,
                "deliveries": deliveries,
                "received_ratio": round(len(latencies) / max(1, len(published) * FLOOR_CLIENTS), 4),
                "latency_ms_p50": round(percentile(latencies, 0.50), 3),
                "latency_ms_p99": round(percentile(latencies, 0.99), 3),
                "latency_ms_max": round(max(latencies), 3) if latencies else None,
                "last_delivery_ms_p50": round(percentile(spans, 0.50), 3),
                "server_writes_ms_p50": round(percentile(write_ms, 0.50), 3),  # the write loop alone
                "server_cpu_us_per_delivery": round(cpu / max(1, deliveries) * 1e6, 2),
                "client_cpu_us_per_delivery": round(clients_cpu / max(1, deliveries) * 1e6, 2),
            }
            console.print(f"  {run}")
            runs.append(run)
    finally:
        for each in workers:
            await each.stop()
        await server.stop()
    return runs


def print_table(report: dict) -> None:
    for backend in report["backends"]:
        table = Table(title=f"WebSocket fan-out — {backend['backend']} bus")
        for column in ("clients", "ticks/s", "p50 ms", "p99 ms", "max ms", "last delivery p50 ms", "received",
                       "server CPU µs/delivery",
                       "clients' CPU µs/delivery", "RSS KiB/conn"):
            table.add_column(column, justify="right")
        for run in backend["latency"]:
            table.add_row(f"{run['clients']:,}", f"{run['tick_rate']:g}", f"{run['latency_ms_p50']:.2f}",
                          f"{run['latency_ms_p99']:.2f}", f"{run['latency_ms_max']:.2f}",
                          f"{run['last_delivery_ms_p50']:.2f}", f"{run['received_ratio']:.1%}",
                          f"{run['server_cpu_us_per_delivery']:.2f}", f"{run['client_cpu_us_per_delivery']:.2f}",
                          "" if run["rss_per_connection_kib"] is None else f"{run['rss_per_connection_kib']:.1f}")
        console.print(table)
        if backend["throughput"]:
            t = backend["throughput"]
            console.print(f"sustained: [bold]{t['sustained_deliveries_per_second']:,}[/] deliveries/s to "
                          f"{t['clients']:,} clients (every frame delivered, p99 < 100 ms)")
    if report.get("floor"):
        table = Table(title="WebSocket fan-out — floor (benchmarks/wsfloor: one write per client, nothing else)")
        for column in ("clients", "writer threads", "ticks/s", "p50 ms", "p99 ms", "max ms", "last delivery p50 ms",
                       "write loop p50 ms", "received", "server CPU µs/delivery", "clients' CPU µs/delivery"):
            table.add_column(column, justify="right")
        for run in report["floor"]:
            table.add_row(f"{run['clients']:,}", str(run["writers"]), f"{run['tick_rate']:g}",
                          f"{run['latency_ms_p50']:.2f}", f"{run['latency_ms_p99']:.2f}",
                          f"{run['latency_ms_max']:.2f}", f"{run['last_delivery_ms_p50']:.2f}",
                          f"{run['server_writes_ms_p50']:.2f}", f"{run['received_ratio']:.1%}",
                          f"{run['server_cpu_us_per_delivery']:.2f}", f"{run['client_cpu_us_per_delivery']:.2f}")
        console.print(table)


async def main(args) -> None:
    logging.basicConfig(level=logging.WARNING)
    fd_limit = raise_fd_limit()
    needed = max(args.clients) + 200
    if fd_limit < needed:
        console.print(f"[yellow]fd limit {fd_limit} < {needed}: dropping the runs that do not fit[/]")
        args.clients = [c for c in args.clients if c + 200 <= fd_limit]
    args.wsload = build_go(WSLOAD) if args.client in ("auto", "go") else None
    if args.client == "go" and args.wsload is None:
        raise SystemExit("--client go: cannot build benchmarks/wsload (is Go installed?)")
    client_kind = "go" if args.wsload else "python"
    args.client_cpus = None
    if args.pin:
        cpus = sorted(os.sched_getaffinity(0))
        if len(cpus) < 2:
            raise SystemExit("--pin needs at least 2 CPUs")
        os.sched_setaffinity(0, {cpus[0]})  # before any thread starts: threads inherit it
        args.client_cpus = set(cpus[1:])
    console.print(f"clients: {client_kind}" + (f"; server on CPU {cpus[0]}, clients on {cpus[1:]}" if args.pin else ""))
    backends = [("memory", lambda s: MemoryBus(partitions=s.bus.partitions))]
    if os.environ.get("CFD_KAFKA_BOOTSTRAP"):
        def kafka(settings: Settings) -> Bus:
            from shared.bus.kafka import KafkaBus

            return KafkaBus(settings.bus, settings.instance_id)

        backends.append(("kafka", kafka))
    report: dict = {
        "benchmark": "ws_fanout",
        "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform(),
                    "load_average_before": [round(x, 2) for x in os.getloadavg()]},
        "settings": {"ticks": args.ticks, "rate": args.rate, "clients": args.clients,
                     "throughput_clients": args.throughput_clients, "steps": args.steps,
                     "client_kind": client_kind, "pinned": args.pin,
                     "client_spin_us": args.spin_us if client_kind == "go" else None},
        "backends": [],
    }
    floor_binary = None
    if args.floor:
        floor_binary = build_go(WSFLOOR)
        if floor_binary is None:
            console.print("[yellow]--floor: skipped, cannot build benchmarks/wsfloor (is Go installed?)[/]")
    for index, (name, make_bus) in enumerate(backends):
        try:
            # RSS growth means something only in the first run: the allocator keeps what later runs reuse
            report["backends"].append(await run_backend(name, make_bus, args, measure_memory=index == 0))
        except Exception as exc:  # one backend failing (Kafka down) still reports the others
            console.print(f"[red]{name} run failed:[/] {type(exc).__name__}: {exc}")
            report["backends"].append({"backend": name, "error": f"{type(exc).__name__}: {exc}", "latency": [],
                                       "throughput": None})
    if floor_binary is not None:
        try:
            report["floor"] = await floor_runs(args, floor_binary)
        except Exception as exc:
            console.print(f"[red]floor run failed:[/] {type(exc).__name__}: {exc}")
            report["floor"] = {"error": f"{type(exc).__name__}: {exc}"}
    report["machine"]["load_average_after"] = [round(x, 2) for x in os.getloadavg()]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print_table({"backends": [b for b in report["backends"] if "error" not in b],
                 "floor": report.get("floor") if isinstance(report.get("floor"), list) else None})
    console.print(f"written to {args.out}")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--clients", default="1,100,1000,10000", help="client counts for the latency runs")
    parser.add_argument("--ticks", type=int, default=100, help="ticks per latency run")
    parser.add_argument("--rate", type=float, default=20.0, help="ticks per second in the latency runs")
    parser.add_argument("--processes", type=int, default=max(1, min(4, (os.cpu_count() or 2))),
                        help="Python client processes for the runs from 2,000 clients (Go: always one)")
    parser.add_argument("--throughput-clients", type=int, default=1000, help="clients for the sustained run (0: skip)")
    parser.add_argument("--steps", default="50,100,200,400,800,1600", help="tick rates tried in the sustained run")
    parser.add_argument("--step-seconds", type=float, default=2.0)
    parser.add_argument("--quick", action="store_true", help="fewer ticks and steps: a smoke run")
    parser.add_argument("--client", choices=("auto", "go", "python"), default="auto",
                        help="the load generator: Go (benchmarks/wsload, needs Go) or Python clients; auto: Go if it "
                             "builds")
    parser.add_argument("--spin-us", type=int, default=200,
                        help="Go clients keep polling this long after a message before they sleep (0: never poll)")
    parser.add_argument("--pin", action="store_true",
                        help="pin the server to the first CPU and the clients to the others")
    parser.add_argument("--floor", action="store_true",
                        help="also run the latency phase at 1,000 clients against benchmarks/wsfloor (needs Go), the "
                             "cheapest possible fan-out")
    parser.add_argument("--out", type=Path, default=RESULTS, help="where the results go (default: %(default)s)")
    args = parser.parse_args(argv)
    args.clients = [int(c) for c in args.clients.split(",") if c]
    args.steps = [float(s) for s in args.steps.split(",") if s]
    if args.quick:
        args.ticks, args.step_seconds, args.steps = 20, 1.0, args.steps[:3]
    return args


if __name__ == "__main__":
    asyncio.run(main(parse_args()))
