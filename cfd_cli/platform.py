"""Running services in one process: `cfd up` runs them all on one bus; `cfd server` etc. run one each."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from collections.abc import Iterable, Iterator

import uvicorn

from cfd_dbproc.service import DbProc
from cfd_server.app import create_app
from shared.bus import Bus, create_bus
from shared.db import Database, migrate
from shared.settings import Settings

log = logging.getLogger(__name__)

SERVICES = ("dbproc", "server", "poller")


class _EmbeddedServer(uvicorn.Server):
    """uvicorn without its own signal handling: the platform owns shutdown."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


class Platform:
    """The chosen services sharing one bus in this process; started and stopped in dependency order."""

    def __init__(self, settings: Settings, services: Iterable[str] = SERVICES, *, migrate_db: bool = False) -> None:
        self.settings = settings
        self.services = tuple(s for s in SERVICES if s in set(services))
        self.migrate_db = migrate_db
        self.bus: Bus = create_bus(settings)
        self.db: Database | None = None
        self.dbproc: DbProc | None = None
        self.http: _EmbeddedServer | None = None
        self._http_task: asyncio.Task[None] | None = None
        self.extras: list = []  # other started parts (the poller), each with an async stop()
        self.http_port: int | None = None
        self.started = asyncio.Event()

    @property
    def base_url(self) -> str:
        return f"http://{self.settings.http_host}:{self.http_port}"

    async def start(self) -> None:
        await self.bus.start()
        try:
            if "dbproc" in self.services:
                self.db = Database(self.settings)
                if self.migrate_db:
                    await migrate(self.db)
                await self.db.start()
                self.dbproc = DbProc(self.settings, self.bus, self.db)
                await self.dbproc.start()
            if "server" in self.services:
                await self._start_http()
            if "poller" in self.services:
                await self._start_poller()
            self.started.set()
        except BaseException:
            await self.stop()
            raise

    async def _start_http(self) -> None:
        app = create_app(self.settings, bus=self.bus)
        config = uvicorn.Config(app, host=self.settings.http_host, port=self.settings.http_port, lifespan="on",
                                log_config=None, access_log=False, timeout_graceful_shutdown=5)
        self.http = _EmbeddedServer(config)
        self._http_task = asyncio.get_running_loop().create_task(self.http.serve())
        while not self.http.started:
            if self._http_task.done():
                exc = self._http_task.exception()
                raise RuntimeError(
                    f"the server did not start on {self.settings.http_host}:{self.settings.http_port}"
                    + (f": {exc}" if exc else " (is the port in use? set CFD_HTTP_PORT)")
                )
            await asyncio.sleep(0.01)
        self.http_port = self.http.servers[0].sockets[0].getsockname()[1]

    async def _start_poller(self) -> None:
        try:
            from cfd_poller.service import start_poller
        except ImportError:
            log.warning("the price poller is not available in this build")
            return
        self.extras.append(await start_poller(self.settings, self.bus))

    async def stop(self) -> None:
        """Stop in reverse order: prices, HTTP (draining requests), the dbproc, then the bus."""
        for part in reversed(self.extras):
            with contextlib.suppress(Exception):
                await part.stop()
        self.extras.clear()
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
        await self.bus.stop()

    async def run_until_signalled(self) -> None:
        """Start, then run until SIGINT/SIGTERM (or the HTTP server exits), then stop gracefully."""
        stop = asyncio.Event()
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
