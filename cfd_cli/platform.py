"""Running services in one process: `cfd up` runs them all on one bus; `cfd server` etc. run one each."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import socket
from collections.abc import Callable, Iterable, Iterator
from typing import TYPE_CHECKING

import uvicorn
from litestar import Litestar

from cfd_dbproc.db import Database, migrate
from cfd_dbproc.service import DbProc
from cfd_server.app import create_app
from cfd_server.info import ws_url as advertised_ws_url
from shared.bus import Bus, Topics, create_bus
from shared.cache import Cache, create_cache
from shared.clock import now_ms
from shared.ids import Ids
from shared.logs import set_instance as set_log_instance
from shared.settings import Settings
from shared.status import ProcessStatus, StatusBeacon

if TYPE_CHECKING:
    from cfd_poller.service import Poller

log = logging.getLogger(__name__)

SERVICES = ("dbproc", "server", "poller")


class StartupError(Exception):
    """A service could not start; the message says why and `hint` what to do."""

    def __init__(self, message: str, hint: str | None = None) -> None:
        super().__init__(message)
        self.hint = hint


class _EmbeddedServer(uvicorn.Server):
    """uvicorn without its own signal handling: the platform owns shutdown."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield

    async def serve(self, sockets: list[socket.socket] | None = None) -> None:
        try:
            await super().serve(sockets)
        except SystemExit:  # uvicorn exits the process when the app's start-up fails; we report instead
            raise StartupError("the API server's start-up failed (see the log above)") from None


class Platform:
    """The chosen services sharing one bus in this process; started and stopped in dependency order."""

    def __init__(self, settings: Settings, services: Iterable[str] = SERVICES, *, migrate_db: bool = False,
                 bus: Bus | None = None, cache: Cache | None = None, clock: Callable[[], int] = now_ms,
                 seed: int | None = None) -> None:
        """`bus` and `cache`, when given, are another platform's (started and stopped by it): two servers on
        the in-process backends share them as two server processes share Kafka and Redis. `clock` is the
        dbproc's wall clock for market controls and financing (tests move it across rollovers). `seed` makes
        the dbproc's ids the same sequence every run (`shared.ids`); the database must then hold no users."""
        self.settings = settings
        set_log_instance(settings.instance_id)
        self.services = tuple(s for s in SERVICES if s in set(services))
        self.migrate_db = migrate_db
        self.clock = clock
        self.seed = seed
        self._own_bus, self._own_cache = bus is None, cache is None
        self.bus: Bus = bus or create_bus(settings.bus, settings.instance_id)
        # shared, so the in-process cache is one for all services
        self.cache: Cache = cache or create_cache(settings.cache)
        self.db: Database | None = None
        self.dbproc: DbProc | None = None
        self.http: _EmbeddedServer | None = None
        self._http_task: asyncio.Task[None] | None = None
        self.poller: Poller | None = None
        self.http_port: int | None = None
        self.app: Litestar | None = None
        self.started = asyncio.Event()
        self._beacon: StatusBeacon | None = None

    @property
    def base_url(self) -> str:
        return f"http://{self.settings.http.host}:{self.http_port}"

    @property
    def ws_url(self) -> str:
        """The WebSocket feed's URL as `GET /info` advertises it, with the port it really bound (CFD_WS_PORT
        may be 0)."""
        if self.app is None:
            raise RuntimeError("the API server is not started")
        return advertised_ws_url(self.settings.http, self.app.state.market.ws_port)

    async def start(self) -> None:
        if self._own_bus:
            await self.bus.start()
        try:
            if "dbproc" in self.services:
                self.db = Database(self.settings.database, self.settings.data_dir)
                if self.migrate_db:
                    await migrate(self.db)
                await self.db.start()
                if self.seed is not None:
                    await self._check_empty()
                self.dbproc = DbProc(self.settings, self.bus, self.db, self.cache, self.clock, Ids(self.seed))
                await self.dbproc.start()
            if "server" in self.services:
                await self._start_http()
            if "poller" in self.services:
                await self._start_poller()
            self._beacon = StatusBeacon(self.bus, Topics(self.settings.bus).status, self.settings.instance_id,
                                        list(self.services), self._describe)
            self._beacon.start()
            if self.settings.http.metrics_port:
                from shared import metrics

                metrics.serve(self.settings.http.host, self.settings.http.metrics_port)
                log.info("metrics on http://%s:%d/metrics", self.settings.http.host, self.settings.http.metrics_port)
            self.started.set()
        except BaseException:
            await self.stop()
            raise

    async def _check_empty(self) -> None:
        """Seeded ids are the same every run: a database holding an earlier run's would get them twice."""
        from cfd_dbproc.db.tables import Users

        users = await Users.count().run()
        if users:
            database = self.settings.describe_backends()["database"]
            raise StartupError(
                f"a seeded run (--seed) starts from an empty database, and {database} "
                f"holds {users} user{'s' if users != 1 else ''}",
                "leave CFD_DATA_DIR and CFD_DATABASE_URL unset (a seeded cfd up uses a fresh temporary directory), "
                "or point them at an empty one")

    async def _start_http(self) -> None:
        host, port = self.settings.http.host, self.settings.http.port
        try:  # bind here, so a port in use is one clear error instead of uvicorn exiting the process
            sock = socket.create_server((host, port), reuse_port=self.settings.http.reuse_port)
            # asyncio turns Nagle off only for sockets it made itself; accepted sockets inherit this, and
            # without it a response written in two parts waits ~40 ms for the client's delayed ACK
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        except OSError as exc:
            raise StartupError(f"cannot listen on {host}:{port}: {exc.strerror}",
                               "stop what uses the port, or set CFD_HTTP_PORT to a free one") from exc
        app = self.app = create_app(self.settings, bus=self.bus, cache=self.cache)
        # No `server: uvicorn` banner: it only tells a scanner what to try; the Date header stays (HTTP wants it).
        # proxy_headers off: the auth limits read X-Forwarded-For themselves, from CFD_TRUSTED_PROXIES only.
        config = uvicorn.Config(app, lifespan="on", log_config=None, access_log=False, timeout_graceful_shutdown=5,
                                server_header=False, proxy_headers=False)
        self.http = _EmbeddedServer(config)
        self._http_task = asyncio.get_running_loop().create_task(self.http.serve(sockets=[sock]))
        while not self.http.started:
            if self._http_task.done():
                sock.close()
                failure = self._http_task.exception()
                raise StartupError(
                    f"the API server did not start: {failure or 'its start-up failed (see the log above)'}")
            await asyncio.sleep(0.01)
        self.http_port = sock.getsockname()[1]

    async def _start_poller(self) -> None:
        from cfd_poller.service import start_poller

        settings = self.settings
        self.poller = await start_poller(settings.prices, self.bus, Topics(settings.bus),
                                         instance_id=settings.instance_id)

    def _describe(self, status: ProcessStatus) -> None:
        """What this process runs now, for its status announcements (`cfd status`)."""
        books = []
        if self.dbproc is not None:
            status.partitions = sorted(self.dbproc.risk.owned)
            books.append(self.dbproc.quotes)
            if self.dbproc.requests is not None:
                waiting: dict[str, int] = {}
                for (topic, _), lag in self.dbproc.requests.lag().items():
                    name = topic.removeprefix(self.settings.bus.topic_prefix)
                    waiting[name] = waiting.get(name, 0) + lag
                status.lag = waiting
        if self.app is not None and hasattr(self.app.state, "market"):
            market = self.app.state.market
            status.ws_clients = len(market.hub.clients)
            books.append(market.quotes)
        if books:
            status.tick_ages = {q.symbol: round(age, 1) for q, _ in books[0].all()
                                if (age := books[0].age(q.symbol)) is not None}

    async def stop(self) -> None:
        """Stop in reverse order: prices, HTTP (draining requests), the dbproc, then the bus."""
        if self._beacon is not None:
            with contextlib.suppress(Exception):
                await self._beacon.stop()
            self._beacon = None
        if self.poller is not None:
            with contextlib.suppress(Exception):
                await self.poller.stop()
            self.poller = None
        if self.http is not None and self._http_task is not None:
            self.http.should_exit = True
            with contextlib.suppress(Exception):
                await self._http_task
            self.http = None
        if self.dbproc is not None:
            await self.dbproc.stop()
            self.dbproc = None
        if self.db is not None:
            await self.db.stop()
            self.db = None
        if self._own_bus:
            await self.bus.stop()
        if self._own_cache:
            await self.cache.close()

    async def run_until_signalled(self, stop: asyncio.Event | None = None) -> None:
        """Start, then run until SIGINT/SIGTERM (or the HTTP server exits, or `stop` is set), then stop
        gracefully."""
        stop = stop or asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(NotImplementedError):
                loop.add_signal_handler(sig, stop.set)
        await self.start()
        waiters = [asyncio.ensure_future(stop.wait())]
        if self._http_task is not None:
            waiters.append(self._http_task)  # type: ignore[arg-type]
        try:
            await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
        finally:
            await self.stop()
