"""Test fixtures. One pytest run uses one backend set, chosen by `CFD_TEST_BACKENDS`:

- `embedded` (default): in-process bus and cache, a fresh SQLite file, mail to an outbox folder;
- `real`: Kafka, Redis and PostgreSQL named by `CFD_KAFKA_BOOTSTRAP`, `CFD_REDIS_URL`, `CFD_DATABASE_URL`
  (a fresh database is created for the run), and a real SMTP server (aiosmtpd) on loopback.

`scripts/test` runs the suite on the embedded set, then the integration and end-to-end tests on the real
set when `CFD_TEST_REAL_BACKENDS=1`.
"""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
import pytest
from helpers import REAL, RUN_ID, Mailbox, SmtpSink, free_port, merged, postgres_database

from shared.settings import RateLimit, Settings, load_settings

# --- backend sets ----------------------------------------------------------------------------------------


async def _fresh_postgres_database(base_url: str) -> str:
    return await postgres_database(base_url, f"cfd_test_{RUN_ID}")


@pytest.fixture(scope="session")
def mailbox_and_overrides(tmp_path_factory) -> tuple[Mailbox, dict[str, Any]]:
    data_dir = tmp_path_factory.mktemp("cfd-data")
    if not REAL:
        return Mailbox(outbox=data_dir / "outbox"), {"data_dir": data_dir}
    from aiosmtpd.controller import Controller

    missing = [v for v in ("CFD_KAFKA_BOOTSTRAP", "CFD_REDIS_URL", "CFD_DATABASE_URL") if not os.environ.get(v)]
    if missing:
        pytest.exit(f"CFD_TEST_BACKENDS=real needs {', '.join(missing)}; run: eval \"$(scripts/services.sh env)\"")
    mailbox = Mailbox()
    controller = Controller(SmtpSink(mailbox), hostname="127.0.0.1", port=free_port())
    controller.start()
    database_url = asyncio.run(_fresh_postgres_database(os.environ["CFD_DATABASE_URL"]))
    # Database 1 keeps test keys apart from a developer's; it is not flushed, since test runs may overlap
    # and every key a test makes is its own (fresh emails, fresh session ids).
    redis_url = os.environ["CFD_REDIS_URL"].rsplit("/", 1)[0] + "/1"
    overrides = {
        "data_dir": data_dir,
        "bus": {"bootstrap": os.environ["CFD_KAFKA_BOOTSTRAP"], "topic_prefix": f"t{RUN_ID}.", "partitions": 3},
        "cache": {"url": redis_url},
        "database": {"url": database_url},
        "mail": {"host": "127.0.0.1", "port": controller.port, "security": "none"},
    }
    return mailbox, overrides


@pytest.fixture(scope="session")
def backend_overrides(mailbox_and_overrides) -> dict[str, Any]:
    """Settings overrides for the selected backend set."""
    return mailbox_and_overrides[1]


@pytest.fixture(scope="session")
def mailbox(mailbox_and_overrides) -> Mailbox:
    return mailbox_and_overrides[0]


# The whole suite signs up and in from one client address (loopback): the per-address limits get room for
# it. The tests of those limits run servers with the default limits (tests/integration/test_auth_limits.py).
LOOPBACK_ROOM = {limit: RateLimit(1_000_000, 3600)
                 for limit in ("signup_limit_per_ip", "verify_limit_per_ip", "signin_limit_per_ip",
                               "rate_limit_reads", "rate_limit_trading", "rate_limit_subscribe")}

# No price feed runs in the tests (they set every price themselves), so a dbproc takes requests at once
# instead of waiting for a quote of every market; tests/integration/test_dbproc_join.py tests the wait.
TEST_SETTINGS = {"env": "test", "http": {"port": 0, "ws_port": 0}, "auth": {"bcrypt_rounds": 8, **LOOPBACK_ROOM},
                 "bus": {"request_timeout": 5.0}, "trading": {"quote_wait_seconds": 0}}


@pytest.fixture(scope="session")
def make_settings(backend_overrides) -> Callable[..., Settings]:
    """Settings for the selected backend set, on ephemeral ports; keyword overrides win (a group's as a
    mapping, `bus={"partitions": 6}`, over that group's other values)."""

    def make(**overrides: Any) -> Settings:
        return load_settings(environ={}, **merged(TEST_SETTINGS, backend_overrides, overrides))

    return make


@pytest.fixture
async def sandbox_overrides(backend_overrides) -> AsyncIterator[Callable[[], Any]]:
    """Makes settings overrides for a sandbox (`cfd_cli.sandbox.sandbox`) beside the session's platform: the test
    settings on the selected backend set, without the session's data directory (a sandbox makes its own), and on
    the real set a fresh database and topic prefix, since a seeded run needs an empty database. The databases
    are dropped afterwards."""
    made: list[str] = []

    async def make() -> dict[str, Any]:
        layers = {k: v for k, v in backend_overrides.items() if k != "data_dir"}
        if REAL:
            tag = uuid.uuid4().hex[:6]
            made.append(f"cfd_sandbox_{RUN_ID}_{tag}")
            layers["database"] = {"url": await postgres_database(os.environ["CFD_DATABASE_URL"], made[-1])}
            layers["bus"] = {**layers["bus"], "topic_prefix": f"t{RUN_ID}.sb{tag}."}
        return merged(TEST_SETTINGS, layers)

    yield make
    for name in made:
        await postgres_database(os.environ["CFD_DATABASE_URL"], name, drop=True)


# --- the running platform --------------------------------------------------------------------------------


@pytest.fixture(scope="session")
async def platform(make_settings) -> AsyncIterator[Any]:
    """The dbproc and the server, in this process, on the selected backend set (shared by the session)."""
    from cfd_cli.platform import Platform

    running = Platform(make_settings(), ("dbproc", "server"), migrate_db=True)
    await running.start()
    try:
        yield running
    finally:
        await running.stop()


@pytest.fixture
async def api(platform) -> AsyncIterator[httpx.AsyncClient]:
    """An HTTP client for the running platform's REST API (`/api/v1` paths)."""
    async with httpx.AsyncClient(base_url=platform.base_url + "/api/v1", timeout=15) as client:
        yield client


@pytest.fixture
def email() -> str:
    """A fresh address for each test, so tests share one platform without sharing users."""
    return f"trader-{uuid.uuid4().hex[:10]}@example.com"


