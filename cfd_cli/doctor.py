"""`cfd doctor`: each configured backend and the running API, checked, with what to do when one fails.

It only looks: it creates no file or folder (not the data directory, not the SQLite file, not the outbox),
reads no cache snapshot, and its advice names the backend that is configured (an SQLite file is not a
PostgreSQL server). The in-process bus and cache live inside the platform's own process, so there is
nothing to reach; the running API (`/health`, then `/ready`) is where they show.
"""

from __future__ import annotations

import asyncio
import os
import re
import sqlite3
import time
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import httpx
from rich.console import Console
from rich.table import Table

from cfd_cli.output import print_json
from cfd_dbproc.db import Database, piccolo_migrations, sqlite_path
from shared.bus import create_bus
from shared.cache import create_cache
from shared.cache.redis import RedisCache
from shared.errors import CfdError
from shared.mail import create_mailer
from shared.settings import BusSettings, CacheSettings, DatabaseSettings, MailSettings, Settings

TIMEOUT = 8.0
MIGRATIONS = Path(piccolo_migrations.__file__).parent


class Failed(Exception):
    """A check failed: the message says what is wrong, `hint` what to do."""

    def __init__(self, message: str, hint: str) -> None:
        super().__init__(message)
        self.hint = hint


@dataclass
class Check:
    """One row of the report."""

    concern: str
    backend: str
    state: str  # ok | down | skipped
    detail: str
    hint: str | None = None


Probe = Callable[[], Awaitable[str | None]]  # returns a detail for the row (or None for the time taken)


async def _run(concern: str, backend: str, probe: Probe, hint: str) -> Check:
    started = time.perf_counter()
    try:
        detail = await asyncio.wait_for(probe(), TIMEOUT)
    except Failed as exc:
        return Check(concern, backend, "down", str(exc), exc.hint)
    except CfdError as exc:
        reason = exc.details.get("reason") if isinstance(exc.details, dict) else None
        return Check(concern, backend, "down", reason or exc.message, hint)
    except TimeoutError:
        return Check(concern, backend, "down", f"no answer within {TIMEOUT:.0f} s", hint)
    except Exception as exc:
        return Check(concern, backend, "down", f"{type(exc).__name__}: {exc}", hint)
    return Check(concern, backend, "ok", detail or f"{(time.perf_counter() - started) * 1000:.1f} ms")


def committed_migrations() -> set[str]:
    """The ids of the migrations in the source tree (what `cfd db migrate` would apply)."""
    found = set()
    for path in MIGRATIONS.glob("*.py"):
        match = re.search(r'^ID = "([^"]+)"', path.read_text(encoding="utf-8"), re.MULTILINE)
        if match:
            found.add(match.group(1))
    return found


def _pending(applied: set[str]) -> str | None:
    missing = committed_migrations() - applied
    if not missing:
        return None
    return f"connected, but {len(missing)} migration(s) have not run: {', '.join(sorted(missing))}"


# --- the checks ------------------------------------------------------------------------------------------


def bus_check(settings: BusSettings, instance_id: str) -> tuple[Probe, str] | None:
    if not settings.bootstrap:
        return None

    async def probe() -> None:
        bus = create_bus(settings, instance_id)
        await bus.start()
        try:
            await bus.ping()
        finally:
            await bus.stop()

    return probe, "start Kafka (scripts/services.sh up kafka) or unset CFD_KAFKA_BOOTSTRAP for the in-process bus"


def cache_check(settings: CacheSettings) -> tuple[Probe, str] | None:
    if not settings.url:
        return None

    async def probe() -> None:
        cache = create_cache(settings)
        try:
            await cache.ping()
            policy = await cache.eviction_policy() if isinstance(cache, RedisCache) else None
            if policy is not None and policy.startswith("allkeys"):
                raise Failed(f"maxmemory-policy is {policy}: it may evict sign-in credentials",
                             "set Redis's maxmemory-policy to volatile-lru or noeviction")
        finally:
            await cache.close()

    return probe, "start Redis (scripts/services.sh up redis) or unset CFD_REDIS_URL for the in-process cache"


def database_check(settings: DatabaseSettings, data_dir: Path) -> tuple[Probe, str]:
    if settings.uses_sqlite:
        return _sqlite_probe(settings), "check CFD_DATA_DIR and CFD_DATABASE_URL, then: cfd db migrate"

    async def probe() -> None:
        db = Database(settings, data_dir)
        try:
            await db.start(pool_size=1)
            await db.ping()
            tables = await db.engine.run_ddl(
                "SELECT table_name FROM information_schema.tables WHERE table_name IN ('users', 'migration')")
            if not {row["table_name"] for row in tables} >= {"users", "migration"}:
                raise Failed("connected, but the tables are missing", "create them with: cfd db migrate")
            rows = await db.engine.run_ddl("SELECT name FROM migration WHERE app_name = 'cfd'")
            pending = _pending({row["name"] for row in rows})
            if pending:
                raise Failed(pending, "apply them with: cfd db migrate")
        finally:
            await db.stop()

    return probe, ("start PostgreSQL (scripts/services.sh up postgres), check CFD_DATABASE_URL, "
                   "then: cfd db migrate")


def _sqlite_probe(settings: DatabaseSettings) -> Probe:
    path = sqlite_path(settings.url)

    async def probe() -> None:
        if not path.is_file():
            where = "here" if not path.is_absolute() else f"in {path.parent}"
            raise Failed(f"no database file at {path}",
                         f"run the doctor where the platform keeps its data (its CFD_DATA_DIR, or "
                         f"CFD_DATABASE_URL), or create the database {where} with: cfd db migrate")
        await asyncio.to_thread(_inspect_sqlite, path)

    return probe


def _inspect_sqlite(path: Path) -> None:
    # Read-only, so a missing file is not created. A database with no write-ahead log (no platform has it
    # open) is read as immutable, which leaves no -wal and -shm files behind; one being written is read with
    # the usual locking, so its latest commits count.
    live = path.with_name(path.name + "-wal").exists()
    try:
        connection = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro{'' if live else '&immutable=1'}",
                                     uri=True, timeout=5)
    except sqlite3.Error as exc:
        raise Failed(f"cannot open {path}: {exc}", "check the file's permissions, or CFD_DATABASE_URL") from exc
    try:
        tables = {row[0] for row in connection.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        if not {"users", "migration"} <= tables:
            raise Failed(f"{path} has no tables", "create them with: cfd db migrate")
        applied = {row[0] for row in connection.execute("SELECT name FROM migration WHERE app_name = 'cfd'")}
    except sqlite3.Error as exc:
        raise Failed(f"cannot read {path}: {exc}", "check the file, or restore it from a backup") from exc
    finally:
        connection.close()
    pending = _pending(applied)
    if pending:
        raise Failed(pending, "apply them with: cfd db migrate")


def mail_check(settings: MailSettings) -> tuple[Probe, str]:
    if settings.host:
        async def smtp() -> None:
            await create_mailer(settings).ping()

        return smtp, ("check CFD_SMTP_HOST/PORT/USER/PASSWORD/SECURITY, or unset CFD_SMTP_HOST to write mail to "
                      "the outbox")
    folder = settings.outbox_dir

    async def outbox() -> str | None:
        if folder.is_dir():
            if not os.access(folder, os.W_OK | os.X_OK):
                raise Failed(f"{folder} is not writable", f"let the platform's user write to {folder}")
            return f"{sum(1 for _ in folder.glob('*.eml'))} mail(s)"
        existing = next((p for p in folder.parents if p.exists()), Path("."))
        if not existing.is_dir() or not os.access(existing, os.W_OK | os.X_OK):
            raise Failed(f"{folder} cannot be created: {existing} is not a writable folder",
                         "set CFD_DATA_DIR to a folder the platform's user can write")
        return "no mail yet (the first one creates the folder)"

    return outbox, "check CFD_DATA_DIR"


def api_check(url: str) -> tuple[Probe, str]:
    base = url.rstrip("/")

    async def probe() -> str:
        async with httpx.AsyncClient(timeout=5) as client:
            try:
                health = await client.get(f"{base}/health")
            except httpx.HTTPError as exc:
                raise Failed(f"nothing answers at {base} ({type(exc).__name__}: {exc})".replace(" ()", ""),
                             "start the platform with `cfd up` (or `cfd server`), or name the running one with "
                             "--api URL or CFD_API_URL") from exc
            if health.status_code != 200:
                raise Failed(f"{base}/health answered {health.status_code}",
                             "is that a CFD Broker server? name the right one with --api URL")
            ready = await client.get(f"{base}/ready")
        try:
            report = ready.json()
            backends = report["backends"]
        except (ValueError, KeyError, TypeError):
            raise Failed(f"{base}/ready answered {ready.status_code} without a report",
                         "is that a CFD Broker server? name the right one with --api URL") from None
        down = {name: b.get("error", "down") for name, b in backends.items() if not b.get("ok")}
        if ready.status_code != 200 or down:
            listed = "; ".join(f"{name}: {error}" for name, error in down.items()) or f"status {ready.status_code}"
            raise Failed(f"the server answers but is not ready ({listed})",
                         "the server reaches its backends through its own settings: fix what it names (a "
                         "database check failing there means no dbproc answers: is `cfd dbproc` running?), "
                         "and see the server's log")
        return f"ready ({health.elapsed.total_seconds() * 1000:.1f} ms)"

    return probe, "start the platform with `cfd up`, or name the running one with --api URL or CFD_API_URL"


# --- the report ------------------------------------------------------------------------------------------


async def run_doctor(settings: Settings, console: Console, *, api_url: str | None, as_json: bool = False) -> bool:
    """Run every check, print the report (a table, or JSON), and return whether everything that was checked
    answers."""
    described = settings.describe_backends()
    planned: list[tuple[str, str, tuple[Probe, str] | None, str]] = [
        ("bus", described["bus"], bus_check(settings.bus, settings.instance_id),
         "inside the platform's process: nothing to reach"),
        ("cache", described["cache"], cache_check(settings.cache), "inside the platform's process: nothing to reach"),
        ("database", described["database"], database_check(settings.database, settings.data_dir), ""),
        ("mail", described["mail"], mail_check(settings.mail), ""),
        ("api", api_url or "—", api_check(api_url) if api_url else None, "not checked (--no-api)"),
    ]

    async def one(concern: str, backend: str, check: tuple[Probe, str] | None, skipped: str) -> Check:
        if check is None:
            return Check(concern, backend, "skipped", skipped)
        probe, hint = check
        return await _run(concern, backend, probe, hint)

    if as_json:
        checks = await asyncio.gather(*(one(*p) for p in planned))
    else:
        with console.status("checking …"):
            checks = await asyncio.gather(*(one(*p) for p in planned))
    checks.append(Check("prices", described["prices"], "skipped", "checked by the poller at start-up"))
    ok = all(c.state != "down" for c in checks)
    if as_json:
        print_json({"ok": ok, "checks": [asdict(c) for c in checks]})
        return ok

    table = Table(title="CFD Broker backends")
    for column in ("concern", "backend", "state", "detail"):
        table.add_column(column, style="cyan" if column == "concern" else None)
    looks = {"ok": "[green]ok[/]", "down": "[bold red]down[/]", "skipped": "[dim]—[/]"}
    for c in checks:
        table.add_row(c.concern, c.backend, looks[c.state], c.detail)
    console.print(table)
    for c in checks:
        if c.state == "down":
            console.print(f"[red]✗ {c.concern}:[/] {c.hint}")
    if ok:
        console.print("[green]✓ everything checked answers[/]")
    return ok
