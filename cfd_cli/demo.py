"""`cfd demo`: the whole platform in this process and the trader's terminal on top of it.

The platform (dbproc, server, poller on the embedded backends, data under `.cfd/`) runs in a background
thread with its own event loop; the TUI runs in the foreground in the same terminal. The platform's log
goes to `.cfd/demo.log`, so it does not draw over the TUI. Quitting the TUI stops the platform.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import threading
from typing import Annotated

import typer

from cfd_cli.common import err, fail, settings_or_fail
from cfd_cli.platform import Platform, StartupError
from shared.settings import Settings, private_dir, private_file

READY_TIMEOUT_S = 60.0


def _free(host: str, port: int) -> bool:
    with socket.socket() as s:
        # as the servers themselves bind: connections of a previous run still in TIME_WAIT do not count
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError:
            return False
    return True


def _pick_port(host: str, preferred: int) -> int:
    """`preferred` when it is free (so the API keeps its usual address), else any free port."""
    if preferred and _free(host, preferred):
        return preferred
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


class EmbeddedPlatform:
    """A `Platform` with every service, run in a daemon thread's event loop until `stop()`."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.base_url = ""
        self.error: BaseException | None = None
        self._ready = threading.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._thread = threading.Thread(target=self._main, name="cfd-platform", daemon=True)

    def start(self, timeout: float = READY_TIMEOUT_S) -> None:
        """Start the platform and wait until it serves (raises what stopped it from starting)."""
        self._thread.start()
        if not self._ready.wait(timeout):
            raise TimeoutError(f"the platform did not start within {timeout:.0f} s (see {self.log_path})")
        if self.error is not None:
            raise self.error

    @property
    def log_path(self) -> str:
        return str(self.settings.data_dir / "demo.log")

    def stop(self, timeout: float = 15.0) -> None:
        """Stop the services gracefully and wait for the thread."""
        if self._loop is not None and self._stop is not None:
            with contextlib.suppress(RuntimeError):
                self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(timeout)

    def _main(self) -> None:
        try:
            asyncio.run(self._serve())
        except BaseException as exc:  # reported to the foreground thread by start()
            self.error = exc
        finally:
            self._ready.set()

    async def _serve(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        platform = Platform(self.settings, ("dbproc", "server", "poller"), migrate_db=True)
        try:
            await platform.start()
            self.base_url = platform.base_url
            self._ready.set()
            await self._stop.wait()
        finally:
            await platform.stop()


def _log_to_file(settings: Settings) -> None:
    private_dir(settings.data_dir)
    handler = logging.FileHandler(private_file(settings.data_dir / "demo.log"), encoding="utf-8")
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    logging.basicConfig(level=logging.INFO, handlers=[handler], force=True)
    for noisy in ("aiokafka", "asyncio", "httpx", "httpcore", "piccolo", "websockets", "uvicorn.error"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


def demo_command(
    no_session: Annotated[bool, typer.Option("--no-session", help="Do not keep the TUI session between runs.")]
    = False,
) -> None:
    """Run the whole platform (simulated prices) and the trader's terminal on it, in this terminal."""
    base = settings_or_fail().http
    settings = settings_or_fail(http={"port": _pick_port(base.host, base.port),
                                      "ws_port": _pick_port(base.host, base.ws_port)})
    _log_to_file(settings)
    platform = EmbeddedPlatform(settings)
    with err.status(f"starting the platform (log: {platform.log_path}) …"):
        try:
            platform.start()
        except StartupError as exc:
            fail(str(exc), exc.hint)
        except Exception as exc:
            fail(f"the platform did not start: {exc}", f"see {platform.log_path}")
    from cfd_tui.app import create_app

    try:
        # the code screen says how to read this data directory's outbox; screenshots are saved in it too
        create_app(platform.base_url, session_store=not no_session, data_dir=settings.data_dir).run()
    finally:
        with err.status("stopping the platform …"):
            platform.stop()
