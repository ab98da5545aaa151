"""What the benchmarks share: percentiles, reading one-time codes, and a platform on either backend set."""

from __future__ import annotations

import asyncio
import os
import re
import socket
import statistics
import tempfile
import time
import uuid
from contextlib import asynccontextmanager
from email import message_from_bytes, policy
from pathlib import Path
from typing import Any

import httpx

from cfd_cli.platform import Platform
from shared.settings import RateLimit, Settings, load_settings

# Every benchmark client signs up and in from loopback: room for it in the per-address attempt limits.
LOOPBACK_ROOM = {limit: RateLimit(1_000_000, 3600)
                 for limit in ("signup_limit_per_ip", "verify_limit_per_ip", "signin_limit_per_ip",
                               "rate_limit_reads", "rate_limit_trading", "rate_limit_subscribe")}

RESULTS = Path(__file__).parent / "results"


def percentiles(samples: list[float]) -> dict[str, float]:
    ordered = sorted(samples)

    def pick(q: float) -> float:
        return round(ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000, 3)

    return {"n": len(ordered), "p50_ms": pick(0.50), "p90_ms": pick(0.90), "p99_ms": pick(0.99),
            "mean_ms": round(statistics.fmean(ordered) * 1000, 3)}


class Codes:
    """Reads one-time codes from the outbox folder or from a loopback SMTP sink."""

    def __init__(self, outbox: Path | None) -> None:
        self.outbox = outbox
        self.smtp: dict[str, str] = {}

    async def handle_DATA(self, server, session, envelope):  # aiosmtpd's hook name
        self._remember(envelope.original_content or envelope.content)
        return "250 OK"

    def _remember(self, raw: bytes) -> bool:
        mail = message_from_bytes(raw, policy=policy.default)
        body = mail.get_body(preferencelist=("plain",))
        found = re.search(r"\b(\d{6})\b", body.get_content()) if body is not None else None
        if found:
            self.smtp[str(mail["To"]).lower()] = found.group(1)
        return found is not None

    async def code(self, email: str) -> str:
        for _ in range(3000):  # up to 30 s: a busy machine may be slow to send the mail
            if self.outbox is not None:
                for path in self.outbox.glob("*.eml"):
                    if self._remember(path.read_bytes()):  # else caught mid-write: read again next time
                        path.unlink()
            if email in self.smtp:
                return self.smtp.pop(email)
            await asyncio.sleep(0.01)
        raise RuntimeError(f"no code arrived for {email}")


@asynccontextmanager
async def running_platform(real: bool, services=("dbproc", "server"), **overrides: Any):
    """A platform on real sockets, on the embedded backends or on those the CFD_* variables name; yields
    (platform, codes)."""
    data_dir = Path(tempfile.mkdtemp(prefix="cfd-bench-"))
    codes = Codes(outbox=None if real else data_dir / "outbox")
    layers: list[dict[str, Any]] = [{"env": "test", "data_dir": data_dir, "http": {"port": 0, "ws_port": 0},
                                     "auth": LOOPBACK_ROOM}]
    if "poller" not in services:  # no price feed: the benchmark publishes its own ticks once the platform runs
        layers.append({"trading": {"quote_wait_seconds": 0}})
    controller = None
    if real:
        from aiosmtpd.controller import Controller

        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        controller = Controller(codes, hostname="127.0.0.1", port=port)
        controller.start()
        layers.append({"bus": {"bootstrap": os.environ["CFD_KAFKA_BOOTSTRAP"],
                               "topic_prefix": f"bench{uuid.uuid4().hex[:6]}."},
                       "cache": {"url": os.environ["CFD_REDIS_URL"]},
                       "database": {"url": os.environ["CFD_DATABASE_URL"]},
                       "mail": {"host": "127.0.0.1", "port": port, "security": "none"}})
    layers.append(overrides)
    values: dict[str, Any] = {}
    for layer in layers:  # a group's fields merge into the same group's of the layers before
        for key, value in layer.items():
            values[key] = {**values.get(key, {}), **value} if isinstance(value, dict) else value
    platform = Platform(load_settings(environ={}, **values), services, migrate_db=True)
    await platform.start()
    try:
        yield platform, codes
    finally:
        await platform.stop()
        if controller is not None:
            controller.stop()


async def new_trader(api: httpx.AsyncClient, codes: Codes, password: str = "correct horse") -> dict[str, str]:
    """Sign a fresh user up; returns the Authorization header."""
    email = f"bench-{uuid.uuid4().hex[:12]}@example.com"
    assert (await api.post("/auth/signup", json={"email": email})).status_code == 202
    response = await api.post("/auth/verify", json={"email": email, "otp": await codes.code(email),
                                                    "password": password, "name": "Bench"})
    assert response.status_code == 201, response.text
    return {"Authorization": f"Bearer {response.json()['access_token']}"}


def describe(settings: Settings, real: bool) -> dict[str, Any]:
    described = {concern: backend.split(":")[0].split(" ")[0] if backend.startswith(("sqlite", "outbox")) else backend
                 for concern, backend in settings.describe_backends().items()}  # no temporary paths
    return {"backends": "real" if real else "embedded", "described": described,
            "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "cpus": os.cpu_count()}


async def create_postgres_database(base_url: str, prefix: str) -> str:
    """A new, empty database `<prefix>_<random>` on the server of `base_url`; returns its URL."""
    from urllib.parse import urlsplit, urlunsplit

    import asyncpg

    name = f"{prefix}_{uuid.uuid4().hex[:8]}"
    connection = await asyncpg.connect(base_url)
    try:
        await connection.execute(f'CREATE DATABASE "{name}"')
    finally:
        await connection.close()
    return urlunsplit(urlsplit(base_url)._replace(path=f"/{name}"))


async def drop_postgres_database(base_url: str, url: str) -> None:
    """Drop the database of `url` (one `create_postgres_database` made), from the server of `base_url`."""
    from urllib.parse import urlsplit

    import asyncpg

    connection = await asyncpg.connect(base_url)
    try:
        await connection.execute(f'DROP DATABASE IF EXISTS "{urlsplit(url).path.lstrip("/")}" WITH (FORCE)')
    finally:
        await connection.close()
