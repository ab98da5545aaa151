"""Helpers shared by the tests: the backend set in use, reading mail, the sign-up journey, the environment of
the processes a test starts, and the backends of `scripts/services.sh`."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import os
import re
import shlex
import socket
import subprocess
import time
import uuid
from collections.abc import AsyncIterator, Mapping
from email import message_from_bytes, policy
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import httpx
import pytest

from shared.settings import environment_variables

BACKENDS = os.environ.get("CFD_TEST_BACKENDS", "embedded")
REAL = BACKENDS == "real"
RUN_ID = uuid.uuid4().hex[:8]

real_only = pytest.mark.skipif(not REAL, reason="needs the real backends (CFD_TEST_BACKENDS=real)")
ROOT = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# --- mail ------------------------------------------------------------------------------------------------


class Mailbox:
    """Reads the mails the platform sent: from the outbox folder, or from the loopback SMTP server."""

    def __init__(self, outbox: Path | None = None) -> None:
        self.outbox = outbox
        self.smtp_messages: list[bytes] = []

    def messages(self, to: str) -> list[Any]:
        raws = self.smtp_messages if self.outbox is None else [
            p.read_bytes() for p in sorted(self.outbox.glob("*.eml"))
        ] if self.outbox.exists() else []
        found = [message_from_bytes(raw, policy=policy.default) for raw in raws]
        return [m for m in found if str(m["To"]).lower() == to.lower()]

    async def wait_for(self, to: str, count: int = 1, timeout: float = 10.0) -> list[Any]:
        deadline = asyncio.get_running_loop().time() + timeout
        while True:
            found = self.messages(to)
            if len(found) >= count:
                return found
            if asyncio.get_running_loop().time() > deadline:
                raise AssertionError(f"expected {count} mail(s) to {to}, found {len(found)}")
            await asyncio.sleep(0.02)

    async def code_for(self, to: str, nth: int = 1) -> str:
        mails = await self.wait_for(to, nth)
        match = re.search(r"\b(\d{6})\b", mails[nth - 1].get_body(preferencelist=("plain",)).get_content())
        assert match, "the mail carries no 6-digit code"
        return match.group(1)


class SmtpSink:
    """An aiosmtpd handler that keeps every message in a Mailbox."""

    def __init__(self, mailbox: Mailbox) -> None:
        self.mailbox = mailbox

    async def handle_DATA(self, server, session, envelope):
        self.mailbox.smtp_messages.append(envelope.original_content or envelope.content)
        return "250 OK"


async def sign_up(api: httpx.AsyncClient, mailbox: Mailbox, email: str, password: str = "correct horse battery",
                  name: str = "Ada Trader") -> dict:
    """The whole sign-up journey; returns the verify response body."""
    assert (await api.post("/auth/signup", json={"email": email})).status_code == 202
    code = await mailbox.code_for(email)
    response = await api.post("/auth/verify", json={"email": email, "otp": code, "password": password,
                                                    "name": name})
    assert response.status_code == 201, response.text
    return response.json()


async def set_price(platform: Any, symbol: str, bid: str, ask: str, timeout: float = 10.0) -> None:
    """Publish an exchange tick and wait until the dbproc trades on it (at the market's spread in force)."""
    from decimal import Decimal

    from shared.contracts import encode
    from shared.contracts.bus import PriceTick
    from shared.markets import broker_quote

    now_us = time.time_ns() // 1000
    tick = PriceTick(symbol=symbol, bid=Decimal(bid), ask=Decimal(ask), exchange_time_us=now_us, ingest_time_us=now_us)
    expected = broker_quote(platform.dbproc.markets.market_of(symbol), tick.bid, tick.ask, now_us // 1000)
    await platform.bus.publish(platform.dbproc.topics.prices, encode(tick), key=symbol.encode())
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        fresh = platform.dbproc.quotes.fresh().get(symbol)
        if fresh is not None and fresh.bid == expected.bid and fresh.ask == expected.ask and fresh.ts == expected.ts:
            return
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"the dbproc never saw the {symbol} tick")
        await asyncio.sleep(0.005)


async def signed_in(api: httpx.AsyncClient, mailbox: Mailbox, email: str) -> dict[str, str]:
    """Sign a new user up; returns the Authorization header to use."""
    body = await sign_up(api, mailbox, email)
    return {"Authorization": f"Bearer {body['access_token']}"}


async def ledger_totals(api: httpx.AsyncClient, auth: dict[str, str]) -> tuple[dict[str, Any], Any]:
    """Walk the user's whole ledger (`GET /ledger`, every page) and check the ledger invariant against `GET
    /account`: balance = deposits − withdrawals + Σ realised PnL − Σ commissions ± Σ financing − Σ fees
    + Σ shortfall credits (commissions are booked as negative amounts, withdrawals as negative deposits), and
    the balance is not negative. Returns (the sum of the entries of each kind, the balance)."""
    from decimal import Decimal

    entries: list[dict[str, Any]] = []
    url = "/ledger?limit=1000"
    while url:
        page = await api.get(url, headers=auth)
        assert page.status_code == 200, page.text
        entries += page.json()
        found = re.match(r'^<([^>]+)>; rel="next"$', page.headers.get("link", ""))
        url = found.group(1).removeprefix(urlsplit(str(api.base_url)).path) if found else ""
    assert len({e["id"] for e in entries}) == len(entries), "an entry is listed twice"
    totals: dict[str, Decimal] = {}
    for entry in entries:
        totals[entry["kind"]] = totals.get(entry["kind"], Decimal(0)) + Decimal(entry["amount"])
    balance = Decimal((await api.get("/account", headers=auth)).json()["balance"])
    assert balance >= 0
    assert totals.get("commission", Decimal(0)) <= 0  # charges
    assert balance == (totals.get("deposit", 0) + totals.get("realized_pnl", 0) + totals.get("commission", 0)
                       + totals.get("financing", 0) - totals.get("fee", 0) + totals.get("shortfall", 0)), totals
    assert set(totals) <= {"deposit", "realized_pnl", "commission", "financing", "fee", "shortfall"}, totals
    return totals, balance


def merged(*layers: Mapping[str, Any]) -> dict[str, Any]:
    """Settings overrides (`load_settings`'s keywords) in layers, the last winning: a group's mapping is merged
    into the same group's of the layers before, field by field."""
    result: dict[str, Any] = {}
    for layer in layers:
        for key, value in layer.items():
            result[key] = {**result[key], **value} if isinstance(value, Mapping) and key in result else value
    return result


async def start_poller_of(settings: Any, bus: Any, **kwargs: Any) -> Any:
    """The poller of `settings` (its prices, topics and instance id) on `bus`, as the platform starts it."""
    from cfd_poller.service import start_poller
    from shared.bus import Topics

    return await start_poller(settings.prices, bus, Topics(settings.bus), instance_id=settings.instance_id, **kwargs)


@contextlib.asynccontextmanager
async def another_server(platform: Any, **overrides: Any) -> AsyncIterator[Any]:
    """A second server instance beside `platform`'s, with settings `overrides`. On Kafka and Redis it has
    connections of its own; on the in-process backends it shares the first one's bus and cache, as a second
    server process shares Kafka and Redis."""
    from cfd_cli.platform import Platform

    settings = platform.settings.replace(instance_id=f"second-{uuid.uuid4().hex[:8]}", **overrides)
    backends = {} if REAL else {"bus": platform.bus, "cache": platform.cache}
    server = Platform(settings, ("server",), **backends)
    await server.start()
    try:
        yield server
    finally:
        await server.stop()


# --- processes a test starts -----------------------------------------------------------------------------


def _environment_value(value: Any) -> str:
    """A settings value written as its environment variable takes it (lists comma-separated)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, tuple | list):
        return ",".join(_environment_value(item) for item in value)
    return str(value)


def child_env(settings: Any = None, /, **variables: str) -> dict[str, str]:
    """The environment of a process a test starts: this process's environment without any variable the
    platform's settings read (every `CFD_*`, and `DATABASE_URL`, `REDIS_URL`, `PORT`... too), then the test's
    own `settings` (except the instance id, which each process picks), then `variables`.

    A child never picks up a backend from the shell that ran pytest (`.ci/run` exports the real ones), so
    an embedded test cannot write into the real backends, and a real one uses only what the test chose.
    """
    fields = environment_variables()
    ignored = {name for names in fields.values() for name in names}
    env = {k: v for k, v in os.environ.items() if not k.startswith("CFD_") and k not in ignored}
    if settings is not None:
        for field, names in fields.items():
            value = functools.reduce(getattr, field.split("."), settings)
            if field != "instance_id" and value is not None and value != "":
                env[names[0]] = _environment_value(value)
    env.update(variables)
    return env


def cli_env(settings: Any = None, /, **variables: str) -> dict[str, str | None]:
    """`child_env` for Typer's `CliRunner`, which runs the command in this process: every variable the
    settings read that is set here and not chosen by the test is unset (None) for the call."""
    chosen = child_env(settings, **variables)
    ignored = {name for names in environment_variables().values() for name in names}
    unset: dict[str, str | None] = {k: None for k in os.environ if (k.startswith("CFD_") or k in ignored)
                                    and k not in chosen}
    return {**unset, **{k: v for k, v in chosen.items() if os.environ.get(k) != v}}


def launch_script(directory: Path, env: Mapping[str, str], command: str) -> str:
    """A shell script in `directory` that runs `command` (a shell command line) with exactly `env`; returns
    the line that runs it. For tmux, whose panes otherwise get the tmux server's environment (whoever
    started that server) rather than the test's."""
    directory.mkdir(parents=True, exist_ok=True)
    script = directory / f"launch-{uuid.uuid4().hex[:8]}.sh"
    assignments = " ".join(shlex.quote(f"{k}={v}") for k, v in sorted(env.items()))
    script.write_text(f"#!/bin/sh\nexec env -i {assignments} {command}\n")
    script.chmod(0o700)
    return f"sh {shlex.quote(str(script))}"


def stop_tmux_server(socket_name: str) -> None:
    """Stop the tmux server started with `tmux -L socket_name` and remove its socket file."""
    subprocess.run(["tmux", "-L", socket_name, "kill-server"], capture_output=True, timeout=10)
    sockets = Path(os.environ.get("TMUX_TMPDIR") or "/tmp") / f"tmux-{os.getuid()}"
    (sockets / socket_name).unlink(missing_ok=True)


# --- the real backends, through scripts/services.sh ------------------------------------------------------


class Services:
    """`scripts/services.sh` pointed at the backends a test uses (their ports come from the test's URLs), to
    stop and start them. It refuses to touch a backend the script did not start, or one on other ports."""

    SCRIPT = ROOT / "scripts" / "services.sh"

    def __init__(self, *, database_url: str | None = None, redis_url: str | None = None,
                 kafka_bootstrap: str | None = None) -> None:
        self.urls = {"postgres": database_url, "redis": redis_url, "kafka": kafka_bootstrap}
        ports = {"postgres": "CFD_PG_PORT", "redis": "CFD_REDIS_PORT", "kafka": "CFD_KAFKA_PORT"}
        self.env = child_env()
        for name in ("CFD_SERVICES_DIR", "CFD_KAFKA_CONTROLLER_PORT", "CFD_SERVICES_TIMEOUT"):  # the script's own
            if os.environ.get(name):
                self.env[name] = os.environ[name]
        for service, url in self.urls.items():
            if url:
                host, port = self._address(url)
                if host not in ("127.0.0.1", "localhost"):
                    raise AssertionError(f"{service} at {host} is not one scripts/services.sh runs (127.0.0.1)")
                self.env[ports[service]] = str(port)

    @staticmethod
    def _address(url: str) -> tuple[str, int]:
        parts = urlsplit(url if "://" in url else f"kafka://{url.split(',')[0]}")
        return parts.hostname or "", parts.port or {"postgresql": 5432, "redis": 6379}.get(parts.scheme, 9092)

    def run(self, *args: str, timeout: float = 180) -> subprocess.CompletedProcess[str]:
        return subprocess.run(["bash", str(self.SCRIPT), *args], env=self.env, capture_output=True, text=True,
                              timeout=timeout, stdin=subprocess.DEVNULL)

    def check_owned(self, service: str) -> None:
        """Fail unless `service` runs on the test's port and was started by scripts/services.sh."""
        status = self.run("status", service, timeout=30)
        if status.returncode != 0 or "not started by this script" in status.stdout:
            raise AssertionError(f"scripts/services.sh does not run {service} on the port the tests use, so it "
                                 f"cannot restart it:\n{status.stdout}{status.stderr}")

    def down(self, service: str) -> None:
        result = self.run("down", service)
        assert result.returncode == 0, result.stdout + result.stderr
        host, port = self._address(self.urls[service] or "")
        with socket.socket() as sock:
            sock.settimeout(1)
            assert sock.connect_ex((host, port)) != 0, f"{service} still answers on {port}: {result.stdout}"

    def up(self, service: str) -> None:
        result = self.run("up", service)
        assert result.returncode == 0, result.stdout + result.stderr


async def postgres_database(base_url: str, name: str, *, drop: bool = False) -> str:
    """Create (or, with `drop`, drop) the database `name` on the PostgreSQL server of `base_url`; returns its URL."""
    import asyncpg

    connection = await asyncpg.connect(base_url)
    try:
        if drop:
            await connection.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        else:
            await connection.execute(f'CREATE DATABASE "{name}"')
    finally:
        await connection.close()
    return urlunsplit(urlsplit(base_url)._replace(path=f"/{name}"))


class Forwarder:
    """A TCP port that forwards to `target_port` and can be cut and restored, like a flaky network."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.port = 0
        self.server: asyncio.Server | None = None
        self.writers: set[asyncio.StreamWriter] = set()

    async def start(self) -> None:
        self.server = await asyncio.start_server(self._handle, "127.0.0.1", self.port)
        self.port = self.server.sockets[0].getsockname()[1]

    async def cut(self) -> None:
        self.server.close()
        for writer in list(self.writers):
            writer.transport.abort()
        await self.server.wait_closed()

    async def _handle(self, reader, writer) -> None:
        upstream_reader, upstream_writer = await asyncio.open_connection("127.0.0.1", self.target_port)
        self.writers.update((writer, upstream_writer))

        async def pipe(src, dst):
            with contextlib.suppress(Exception):
                while data := await src.read(65536):
                    dst.write(data)
                    await dst.drain()
            dst.transport.abort()

        await asyncio.gather(pipe(reader, upstream_writer), pipe(upstream_reader, writer))
