"""`cfd server --workers N` and `cfd up --workers N`: N API-server processes sharing the REST and WebSocket ports.

Each worker is `cfd server --worker I`, a process of its own with its own instance id (`<id>-wI`: the bus
replies come back keyed by it) and its own subscriptions to the broadcast topics, so every price, account
event and session end reaches every connection of every worker. The workers bind both ports with
SO_REUSEPORT and the kernel spreads new connections among them.

The command's own process supervises: it checks the ports first (one clear error when one is taken), starts
worker 1, then the others once it is up, restarts a worker that exits (after a pause that doubles while it
keeps failing), and stops them all with SIGTERM on SIGINT or SIGTERM. The workers are in a process group of
their own, so a Ctrl-C reaches them only through it; each watches its stdin, a pipe from the supervisor,
and stops when that closes (the supervisor died).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import socket
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from cfd_cli import allocator
from cfd_cli.common import banner, console
from cfd_cli.platform import Platform, StartupError
from cfd_server.info import ws_url
from shared.settings import Settings

log = logging.getLogger(__name__)

READY = "cfd-worker-ready"
"""What a worker writes on its stdout once it listens."""
FIRST_RESTART_DELAY = 0.5
MAX_RESTART_DELAY = 30.0
HEALTHY_AFTER = 60.0
"""A worker that ran this many seconds before it exited is restarted after the first delay again."""
STOP_GRACE = 20.0
"""Seconds a worker has to stop after SIGTERM (it drains requests for up to 5 s) before it is killed."""


def embedded_backends(settings: Settings) -> list[str]:
    """The variables a group of workers needs and `settings` lack: several processes cannot share the
    in-process bus or cache."""
    return [name for name, real in (("CFD_KAFKA_BOOTSTRAP", settings.bus.bootstrap),
                                    ("CFD_REDIS_URL", settings.cache.url)) if not real]


def worker_settings(settings: Settings, number: int) -> Settings:
    """The settings of worker `number` (from 1) of a group whose settings are `settings`: its own instance id
    and metrics port (`CFD_METRICS_PORT` + number − 1), both ports bound with SO_REUSEPORT."""
    metrics_port = settings.http.metrics_port + number - 1 if settings.http.metrics_port else 0
    return settings.replace(instance_id=f"{settings.instance_id}-w{number}",
                            http={"reuse_port": True, "metrics_port": metrics_port})


def check_ports(settings: Settings, workers: int, *, extra_metrics_ports: int = 0) -> Settings:
    """Bind, once and without SO_REUSEPORT, every port the workers will take: a port anything listens on (another
    group of workers too) fails here as one `StartupError` with a hint. A port of 0 is chosen here, so that
    every worker takes the same one. Returns `settings` with the chosen ports."""
    http = settings.http
    wanted = [(http.port, "CFD_HTTP_PORT"), (http.ws_port, "CFD_WS_PORT")]
    if http.metrics_port:
        last = http.metrics_port + workers + extra_metrics_ports - 1
        if last > 65535:
            raise StartupError(f"{workers} workers need the metrics ports {http.metrics_port}–{last}, beyond 65535",
                               "set CFD_METRICS_PORT lower")
        wanted += [(port, "CFD_METRICS_PORT") for port in range(http.metrics_port, last + 1)]
    probes: list[socket.socket] = []
    try:
        for port, variable in wanted:
            probe = socket.socket(socket.AF_INET6 if ":" in http.host else socket.AF_INET, socket.SOCK_STREAM)
            probes.append(probe)
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                probe.bind((http.host, port))
            except OSError as exc:
                raise StartupError(f"cannot listen on {http.host}:{port}: {exc.strerror}",
                                   f"stop what uses the port, or set {variable} to a free one") from exc
        return settings.replace(http={"port": probes[0].getsockname()[1], "ws_port": probes[1].getsockname()[1]})
    finally:
        for probe in probes:
            probe.close()


def _how_it_ended(code: int) -> str:
    if code < 0:
        with contextlib.suppress(ValueError):
            return f"was killed by {signal.Signals(-code).name}"
        return f"was killed by signal {-code}"
    return f"exited with status {code}"


@dataclass
class _Worker:
    number: int
    process: asyncio.subprocess.Process | None = None
    started: float = 0.0
    delay: float = FIRST_RESTART_DELAY
    relay: asyncio.Task[None] | None = field(default=None, repr=False)


class Workers:
    """Starts `count` API-server workers with `settings` (their ports already checked: `check_ports`), keeps
    them running, and stops them."""

    def __init__(self, settings: Settings, count: int) -> None:
        self.settings = settings
        self.count = count
        self.workers = [_Worker(n) for n in range(1, count + 1)]
        self._stopping = False
        self._wake = asyncio.Event()
        self._watchers: list[asyncio.Task[None]] = []

    @property
    def pids(self) -> list[int]:
        return [w.process.pid for w in self.workers if w.process is not None and w.process.returncode is None]

    def _environment(self) -> dict[str, str]:
        """The workers' environment: this process's, with what this process worked out and a worker must share
        (the instance id it extends, the chosen ports, the JWT secret: in test mode each process would draw
        its own)."""
        http = self.settings.http
        return {**os.environ, "CFD_INSTANCE_ID": self.settings.instance_id, "CFD_HTTP_PORT": str(http.port),
                "CFD_WS_PORT": str(http.ws_port), "CFD_METRICS_PORT": str(http.metrics_port),
                "CFD_JWT_SECRET": self.settings.auth.jwt_secret, "CFD_SERVER_WORKERS": "1"}

    async def start(self) -> None:
        """Start worker 1, then the others together; `StartupError` if one of them does not come up."""
        try:
            await self._launch(self.workers[0])
            await asyncio.gather(*(self._launch(w) for w in self.workers[1:]))
        except BaseException:
            await self.stop()
            raise
        self._watchers = [asyncio.ensure_future(self._watch(w)) for w in self.workers]

    async def _launch(self, worker: _Worker) -> None:
        """Start `worker`'s process and wait until it listens; `StartupError` if it exits first."""
        worker.process = process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "cfd_cli.main", "server", "--worker", str(worker.number),
            stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, env=self._environment(),
            process_group=0)  # a Ctrl-C on the terminal reaches the workers through the supervisor only
        worker.started = time.monotonic()
        assert process.stdout is not None
        while line := await process.stdout.readline():
            if line.decode(errors="replace").strip() == READY:
                worker.relay = asyncio.ensure_future(_relay(process.stdout))
                return
            sys.stdout.write(line.decode(errors="replace"))
        code = await process.wait()
        raise StartupError(f"API server worker {worker.number} did not start: it {_how_it_ended(code)} "
                           "(its error is above)")

    async def _watch(self, worker: _Worker) -> None:
        """Restart `worker` whenever it exits, until the group stops; the pause doubles while it keeps failing."""
        while not self._stopping:
            assert worker.process is not None
            code = await worker.process.wait()
            if self._stopping:
                return
            if time.monotonic() - worker.started >= HEALTHY_AFTER:
                worker.delay = FIRST_RESTART_DELAY
            log.warning("API server worker %d (pid %d) %s; starting it again in %.1f s", worker.number,
                        worker.process.pid, _how_it_ended(code), worker.delay)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), worker.delay)
            if self._stopping:
                return
            worker.delay = min(worker.delay * 2, MAX_RESTART_DELAY)
            try:
                await self._launch(worker)
            except StartupError:
                continue  # it exited again: said at the top of the loop
            log.info("API server worker %d is back (pid %d)", worker.number, worker.process.pid)

    async def stop(self) -> None:
        """SIGTERM every worker and wait for each to stop (SIGKILL after `STOP_GRACE` seconds)."""
        self._stopping = True
        self._wake.set()
        live = [w.process for w in self.workers if w.process is not None and w.process.returncode is None]
        if live:
            log.info("stopping %d API server worker%s", len(live), "s" if len(live) != 1 else "")
        for process in live:
            with contextlib.suppress(ProcessLookupError):
                process.send_signal(signal.SIGTERM)
        for process in live:
            try:
                await asyncio.wait_for(process.wait(), STOP_GRACE)
            except TimeoutError:
                log.warning("API server worker (pid %d) did not stop in %.0f s; killing it", process.pid, STOP_GRACE)
                with contextlib.suppress(ProcessLookupError):
                    process.kill()
                await process.wait()
        for task in self._watchers:
            task.cancel()
        relays = [w.relay for w in self.workers if w.relay is not None]
        await asyncio.gather(*self._watchers, *relays, return_exceptions=True)
        for worker in self.workers:
            if worker.process is not None and worker.process.stdin is not None:
                worker.process.stdin.close()


async def _relay(stream: asyncio.StreamReader) -> None:
    """Copy what a worker prints to this process's stdout (and keep its pipe from filling)."""
    while line := await stream.readline():
        sys.stdout.write(line.decode(errors="replace"))
        sys.stdout.flush()


async def run_group(settings: Settings, count: int, others: Sequence[str] = (), *, migrate_db: bool = False,
                    then: Callable[[Workers], None] | None = None) -> None:
    """Run `count` API-server workers, with the `others` services (`cfd up`: dbproc and poller) in this process,
    until SIGINT or SIGTERM, calling `then` once all have started; then stop the workers, then the others.
    `settings` come from `check_ports`."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(sig, stop.set)
    platform = None
    if others:  # this process's own metrics come after the workers' ports
        metrics_port = settings.http.metrics_port + count if settings.http.metrics_port else 0
        platform = Platform(settings.replace(http={"metrics_port": metrics_port}), others, migrate_db=migrate_db)
    workers = Workers(settings, count)

    async def start() -> None:
        if platform is not None:
            await platform.start()
        await workers.start()

    starting = asyncio.ensure_future(start())
    stopped = asyncio.ensure_future(stop.wait())
    try:
        await asyncio.wait([starting, stopped], return_when=asyncio.FIRST_COMPLETED)
        if starting.done():
            starting.result()  # a StartupError ends the command here
            if then is not None:
                then(workers)
            await stopped
        else:
            starting.cancel()
            with contextlib.suppress(asyncio.CancelledError, StartupError):
                await starting
    finally:
        stopped.cancel()
        await workers.stop()
        if platform is not None and platform.started.is_set():  # one that failed to start has stopped itself
            await platform.stop()


async def serve_group(settings: Settings, count: int, others: Sequence[str] = (), *, migrate_db: bool = False) -> None:
    """`cfd server --workers N`, `cfd up --workers N`: check the ports, run the group, print a banner once it
    has started."""
    allocator.report()
    settings = check_ports(settings, count, extra_metrics_ports=1 if others else 0)
    http = settings.http

    def announce(workers: Workers) -> None:
        banner(settings, (*others, f"server ×{count}"), http.port, ws_url(http, http.ws_port), quiet=True)
        instances = ", ".join(worker_settings(settings, n).instance_id for n in range(1, count + 1))
        console.print(f"  [cyan]{'workers':<9}[/] {count} processes sharing both ports: "
                      f"pids {' '.join(map(str, workers.pids))} (instances {instances})")
        if http.metrics_port:
            last = http.metrics_port + count - 1
            console.print(f"  [cyan]{'metrics':<9}[/] http://{http.host}:{http.metrics_port}/metrics to :{last} "
                          "(worker i on CFD_METRICS_PORT + i − 1"
                          + (f"; dbproc and poller on :{last + 1})" if others else ")"))
        console.print("[dim]Ctrl-C stops everything gracefully.[/]")

    await run_group(settings, count, others, migrate_db=migrate_db, then=announce)


def _tag_logs(tag: str) -> None:
    """Name the worker in this process's plain log lines (JSON lines carry the instance id already)."""

    def tagged(record: logging.LogRecord) -> bool:
        record.name = f"{tag} {record.name}"
        return True

    if os.environ.get("CFD_LOG_FORMAT", "").lower() != "json":
        for handler in logging.getLogger().handlers:
            handler.addFilter(tagged)


async def run_worker(settings: Settings, number: int) -> None:
    """Be worker `number` of a group (`cfd server --worker N`): the API server on the shared ports, saying
    `READY` on stdout once it listens, until SIGTERM or until stdin (the supervisor's pipe) closes."""
    _tag_logs(f"[worker {number}]")
    platform = Platform(worker_settings(settings, number), ("server",))
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    stdin = sys.stdin.fileno()

    def supervisor_gone() -> None:
        try:
            data = os.read(stdin, 4096)
        except OSError:
            data = b""
        if not data:
            loop.remove_reader(stdin)
            log.warning("the supervising process is gone; stopping")
            stop.set()

    loop.add_reader(stdin, supervisor_gone)

    async def announce() -> None:
        await platform.started.wait()
        sys.stdout.write(READY + "\n")
        sys.stdout.flush()

    task = asyncio.ensure_future(announce())
    try:
        await platform.run_until_signalled(stop)
    finally:
        task.cancel()
        loop.remove_reader(stdin)
