"""`cfd doctor`: each configured backend, checked, with what to do when it fails."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

from rich.console import Console
from rich.table import Table

from shared.bus import create_bus
from shared.cache import create_cache
from shared.cache.redis import RedisCache
from shared.db import Database
from shared.errors import CfdError
from shared.mail import create_mailer
from shared.settings import Settings

HINTS = {
    "bus": "start Kafka (scripts/services.sh up kafka) or unset CFD_KAFKA_BOOTSTRAP for the in-process bus",
    "cache": "start Redis (scripts/services.sh up redis) or unset CFD_REDIS_URL for the in-process cache",
    "database": "start PostgreSQL (scripts/services.sh up postgres), check CFD_DATABASE_URL, then: cfd db migrate",
    "mail": "check CFD_SMTP_HOST/PORT/USER/PASSWORD/SECURITY, or unset CFD_SMTP_HOST to write mail to the outbox",
}


async def _timed(probe: Callable[[], Awaitable[None]]) -> tuple[bool, str]:
    started = time.perf_counter()
    try:
        await asyncio.wait_for(probe(), 8)
    except CfdError as exc:
        reason = exc.details.get("reason") if isinstance(exc.details, dict) else None
        return False, reason or exc.message
    except TimeoutError:
        return False, "no answer within 8 s"
    except Exception as exc:
        return False, f"{type(exc).__name__}: {exc}"
    return True, f"{(time.perf_counter() - started) * 1000:.1f} ms"


async def run_doctor(settings: Settings, console: Console) -> bool:
    described = settings.describe_backends()

    async def bus() -> None:
        the_bus = create_bus(settings)
        await the_bus.start()
        try:
            await the_bus.ping()
        finally:
            await the_bus.stop()

    async def cache() -> None:
        the_cache = create_cache(settings)
        try:
            await the_cache.ping()
            policy = await the_cache.eviction_policy() if isinstance(the_cache, RedisCache) else None
            if policy is not None and policy.startswith("allkeys"):
                raise RuntimeError(f"maxmemory-policy is {policy}: it may evict sign-in credentials; "
                                   "set it to volatile-lru or noeviction")
        finally:
            await the_cache.close()

    async def database() -> None:
        db = Database(settings)
        try:
            await db.start(pool_size=1)
            await db.ping()
            from shared.db.tables import Users

            if not await Users.table_exists().run():
                raise RuntimeError("connected, but the tables are missing: run cfd db migrate")
        finally:
            await db.stop()

    async def mail() -> None:
        await create_mailer(settings).ping()

    probes = {"bus": bus, "cache": cache, "database": database, "mail": mail}
    with console.status("checking backends …"):
        results = dict(zip(probes, await asyncio.gather(*(_timed(p) for p in probes.values())), strict=True))

    table = Table(title="CFD Broker backends", show_lines=False)
    table.add_column("concern", style="cyan")
    table.add_column("backend")
    table.add_column("state")
    table.add_column("detail")
    for name, (ok, detail) in results.items():
        state = "[green]ok[/]" if ok else "[bold red]down[/]"
        table.add_row(name, described[name], state, detail)
    table.add_row("prices", described["prices"], "[dim]—[/]", "checked by the poller at start-up")
    console.print(table)
    failed = [name for name, (ok, _) in results.items() if not ok]
    for name in failed:
        console.print(f"[red]✗ {name}:[/] {HINTS[name]}")
    if not failed:
        console.print("[green]✓ every backend answers[/]")
    return not failed
