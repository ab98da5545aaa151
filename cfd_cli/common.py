"""What every `cfd` command shares: the consoles, the one way to fail, settings, running a coroutine, and
running services in this process.

The command modules (`main`, `demo`, `operate`, `prices`) import this module; it imports none of them, so
`main` can import every command at its top and nothing imports `main`.
"""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import Awaitable, Callable, Coroutine
from typing import Annotated, Any, NoReturn, TypeVar

import typer

import shared
from cfd_cli import allocator
from cfd_cli.output import CliConsole
from cfd_cli.platform import Platform, StartupError
from shared.errors import CfdError, SettingsError
from shared.settings import Settings, load_settings

T = TypeVar("T")

console = CliConsole()
err = CliConsole(stderr=True)

ApiOption = Annotated[str | None, typer.Option("--api", envvar="CFD_API_URL", help="The server's base URL.")]


def fail(message: str, hint: str | None = None) -> NoReturn:
    """An expected failure: one red line (and what to do next), exit 1."""
    err.print(f"[bold red]error:[/] {message}")
    if hint:
        err.print(f"[dim]→ {hint}[/]")
    raise typer.Exit(1)


def settings_or_fail(**overrides: Any) -> Settings:
    try:
        return load_settings(**overrides)
    except SettingsError as exc:
        fail(str(exc), "fix the environment variable and run the command again")


def client_settings_or_fail(**overrides: Any) -> Settings:
    """Settings for a command that runs no service (doctor, operator and mail commands); loading them writes
    nothing. In dev mode a service keeps a generated JWT secret in the data directory, made when settings are
    loaded; these commands never use the secret, so a throwaway one stands in and no `.cfd/` appears."""
    return settings_or_fail(**{"auth": {"jwt_secret": secrets.token_urlsafe(48)}, **overrides})


def run_async(coro: Coroutine[Any, Any, T]) -> T:
    """Run a coroutine; platform errors become a red line instead of a traceback."""
    try:
        return asyncio.run(coro)
    except KeyboardInterrupt:
        raise typer.Exit(130) from None
    except SettingsError as exc:
        fail(str(exc))
    except StartupError as exc:
        fail(str(exc), exc.hint)
    except CfdError as exc:
        reason = exc.details.get("reason") if isinstance(exc.details, dict) else None
        fail(exc.message + (f" ({reason})" if reason else ""), "check the backends with: cfd doctor")


def banner(settings: Settings, services: tuple[str, ...], port: int | None, feed: str | None, *,
            quiet: bool = False) -> None:
    console.print(f"[bold green]CFD Broker[/] {shared.__version__} running: {', '.join(services)}")
    for concern, backend in settings.describe_backends().items():
        console.print(f"  [cyan]{concern:<9}[/] {backend}")
    if port:
        console.print(f"  [cyan]{'api':<9}[/] http://{settings.http.host}:{port}/api/v1  "
                      f"(docs: http://{settings.http.host}:{port}/schema)")
        console.print(f"  [cyan]{'feed':<9}[/] {feed}")
    if not quiet:
        console.print("[dim]Ctrl-C stops everything gracefully.[/]")


async def serve(settings: Settings, services: tuple[str, ...], migrate_db: bool, *, seed: int | None = None,
                then: Callable[[Platform], Awaitable[object]] | None = None) -> None:
    """Run `services` in this process until SIGINT/SIGTERM, with a banner once they have started, then `then`
    (the sandbox's trader). `seed`: the dbproc's ids (`shared.ids`)."""
    allocator.report()
    platform = Platform(settings, services, migrate_db=migrate_db, seed=seed)
    stop = asyncio.Event()
    failed: list[Exception] = []

    async def announce() -> None:
        await platform.started.wait()
        banner(settings, platform.services, platform.http_port, platform.ws_url if platform.http_port else None,
                quiet=then is not None)
        if then is not None:
            try:
                await then(platform)
            except Exception as exc:  # the platform stops, and the command fails with why
                failed.append(exc)
                stop.set()
                return
            console.print("[dim]Ctrl-C stops everything gracefully.[/]")

    task = asyncio.ensure_future(announce())
    try:
        await platform.run_until_signalled(stop)
    finally:
        task.cancel()
    if failed:
        raise StartupError(f"the platform started, but what follows its start failed: {failed[0]}")
